/**
 * `warbler backup FILE` and `warbler restore FILE`: the commands around
 * bridge/archive/backup-files.ts, which does the database work.
 *
 * Backup is online, beside a running service. Restore needs the service
 * stopped: it takes the data dir's locks (shared/data-dir.ts), so it refuses
 * while a `warbler start` or `warbler bridge` runs there and no start can
 * begin while it works.
 */
import { existsSync } from 'node:fs'
import path from 'node:path'
import { DB_FILE } from '../shared/data-dir.js'
import { lockAll, prepareDataDir } from '../shared/data-dir.js'
import { CliError, dataDirOf, parseArgs } from '../shared/args.js'
import { checkDatabase, replaceDatabase, writeBackup } from '../bridge/archive/backup-files.js'
import { BackupError } from '../bridge/archive/archive-errors.js'

const HELP = `Usage:
  warbler backup FILE      Write a consistent copy of the database to FILE, also while
                           the service runs. FILE must not exist.
  warbler restore FILE     Replace the database with FILE (the service must be stopped).
                           The current database is kept as warbler.db.before-restore-TIME.

Options: --data-dir DIR (env WARBLER_DATA_DIR, default ./data)
`

/** A refused backup or restore is a command-line error: its message names the file and the fix. */
async function asCliError<T> (fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    if (err instanceof BackupError) throw new CliError(err.message)
    throw err
  }
}

export async function runBackup (argv: string[]): Promise<number> {
  const p = parseArgs(argv, ['data-dir'], ['help'])
  const [file, ...extra] = p.positional
  if (p.options.has('help')) { process.stdout.write(HELP); return 0 }
  if (file === undefined || extra.length > 0) throw new CliError(`backup needs exactly one FILE\n\n${HELP}`)
  const target = path.resolve(file)
  const { messages, users } = await asCliError(() => writeBackup(path.join(dataDirOf(p), DB_FILE), target))
  process.stdout.write(`backup written to ${target} (${users} users, ${messages} messages)\n`)
  return 0
}

export async function runRestore (argv: string[]): Promise<number> {
  const p = parseArgs(argv, ['data-dir'], ['help'])
  const [file, ...extra] = p.positional
  if (p.options.has('help')) { process.stdout.write(HELP); return 0 }
  if (file === undefined || extra.length > 0) throw new CliError(`restore needs exactly one FILE\n\n${HELP}`)
  const source = path.resolve(file)
  if (!existsSync(source)) throw new CliError(`no file ${source}`)
  const dataDir = dataDirOf(p)
  const target = path.join(dataDir, DB_FILE)
  if (source === target) throw new CliError(`${source} is the database itself`)
  const { messages, users } = await asCliError(() => checkDatabase(source))
  prepareDataDir(dataDir)
  // Held until the new file is in place: a start meanwhile is refused too.
  const unlock = await lockAll(dataDir, ['node', 'service'])
  try {
    const kept = await asCliError(() => replaceDatabase(source, target))
    process.stdout.write(`restored ${source} (${users} users, ${messages} messages) into ${dataDir}${kept !== null ? `; the previous database is kept as ${kept}` : ''}\n`)
    return 0
  } finally {
    await unlock()
  }
}
