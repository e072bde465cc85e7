/**
 * `warbler backup FILE` and `warbler restore FILE`.
 *
 * Backup is online: `VACUUM INTO` copies a consistent snapshot of the
 * database (users, tokens and the whole archive) while the service keeps
 * running (WAL lets it read the last committed state without stopping the
 * writer). Restore needs the service stopped: it checks the file, keeps the
 * current database aside, and puts the backup in its place.
 */
import { copyFileSync, existsSync, readFileSync, renameSync, rmSync } from 'node:fs'
import path from 'node:path'
import { DB_FILE } from '../broker/identity/store.js'
import { Database } from '../broker/sqlite.js'
import { CliError, dataDirOf, parseArgs } from './args.js'

export const PID_FILE = 'warbler.pid'

const HELP = `Usage:
  warbler backup FILE      Write a consistent copy of the database to FILE, also while
                           the service runs. FILE must not exist.
  warbler restore FILE     Replace the database with FILE (the service must be stopped).
                           The current database is kept as warbler.db.before-restore-TIME.

Options: --data-dir DIR (env WARBLER_DATA_DIR, default ./data)
`

/** The pid of a running `warbler start` on this data dir, or null. */
export function runningPid (dataDir: string): number | null {
  const file = path.join(dataDir, PID_FILE)
  if (!existsSync(file)) return null
  const pid = Number(readFileSync(file, 'utf8').trim())
  if (!Number.isInteger(pid) || pid <= 0) return null
  try {
    process.kill(pid, 0)
    return pid
  } catch {
    return null
  }
}

async function check (file: string): Promise<{ messages: number, users: number }> {
  let db: Database
  try {
    db = await Database.open(file, { readonly: true })
  } catch (err) {
    throw new CliError(`cannot open ${file} as a SQLite database: ${(err as Error).message}`)
  }
  try {
    const ok = await db.get<{ integrity_check: string }>('PRAGMA integrity_check').catch((err: Error) => ({ integrity_check: err.message }))
    if (ok?.integrity_check !== 'ok') throw new CliError(`${file} fails the integrity check: ${ok?.integrity_check ?? 'no answer'}`)
    const tables = new Set((await db.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")).map((r) => r.name))
    if (!tables.has('users')) throw new CliError(`${file} is not a Warbler database (no users table)`)
    const users = (await db.get<{ n: number }>('SELECT count(*) AS n FROM users'))?.n ?? 0
    const messages = tables.has('messages') ? ((await db.get<{ n: number }>('SELECT count(*) AS n FROM messages'))?.n ?? 0) : 0
    return { messages, users }
  } finally {
    await db.close()
  }
}

export async function runBackup (argv: string[]): Promise<number> {
  const p = parseArgs(argv, ['data-dir'], ['help'])
  const [file, ...extra] = p.positional
  if (p.options.has('help')) { process.stdout.write(HELP); return 0 }
  if (file === undefined || extra.length > 0) throw new CliError(`backup needs exactly one FILE\n\n${HELP}`)
  const target = path.resolve(file)
  if (existsSync(target)) throw new CliError(`${target} already exists; choose a new file name`)
  const source = path.join(dataDirOf(p), DB_FILE)
  if (!existsSync(source)) throw new CliError(`no database at ${source}`)
  const db = await Database.open(source)
  try {
    await db.run('VACUUM INTO ?', [target])
  } finally {
    await db.close()
  }
  const { messages, users } = await check(target)
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
  const pid = runningPid(dataDir)
  if (pid !== null) throw new CliError(`warbler is running on ${dataDir} (pid ${pid}); stop it before restoring`)
  const { messages, users } = await check(source)
  const target = path.join(dataDir, DB_FILE)
  const staged = `${target}.restoring`
  copyFileSync(source, staged)
  if (existsSync(target)) {
    // Fold the WAL into the current file before keeping it aside.
    const cur = await Database.open(target)
    await cur.exec('PRAGMA wal_checkpoint(TRUNCATE)')
    await cur.close()
    renameSync(target, `${target}.before-restore-${new Date().toISOString().replace(/[:.]/g, '-')}`)
  }
  for (const suffix of ['-wal', '-shm']) rmSync(target + suffix, { force: true })
  renameSync(staged, target)
  process.stdout.write(`restored ${source} (${users} users, ${messages} messages) into ${dataDir}\n`)
  return 0
}
