/**
 * `warbler backup FILE` and `warbler restore FILE`.
 *
 * Backup is online: `VACUUM INTO` copies a consistent snapshot of the
 * database (users, tokens and the whole archive) while the service keeps
 * running (WAL lets it read the last committed state without stopping the
 * writer). Restore needs the service stopped: it takes the data dir's locks
 * (shared/data-dir.ts), so it refuses while a `warbler start` or `warbler
 * bridge` runs there and no start can begin while it works; then it checks
 * the file, keeps the current database aside, and puts the backup in its place.
 */
import { chmodSync, closeSync, copyFileSync, existsSync, openSync, renameSync, rmSync } from 'node:fs'
import path from 'node:path'
import { DB_FILE } from '../shared/data-dir.js'
import { Database } from '../shared/sqlite.js'
import { lockAll, prepareDataDir } from '../shared/data-dir.js'
import { CliError, dataDirOf, parseArgs } from '../shared/args.js'

const HELP = `Usage:
  warbler backup FILE      Write a consistent copy of the database to FILE, also while
                           the service runs. FILE must not exist.
  warbler restore FILE     Replace the database with FILE (the service must be stopped).
                           The current database is kept as warbler.db.before-restore-TIME.

Options: --data-dir DIR (env WARBLER_DATA_DIR, default ./data)
`

/** Tables every Warbler database has (the identity store creates them). */
const REQUIRED_TABLES = ['users', 'device_tokens', 'meta']

/** Open `file` read-only and make sure it is a sound Warbler database; counts what it holds. */
async function check (file: string): Promise<{ messages: number, users: number }> {
  let db: Database
  try {
    db = await Database.open(file, { readonly: true })
  } catch (err) {
    const m = (err as Error).message
    if (/SQLITE_NOTADB/.test(m)) throw new CliError(`${file} is not a SQLite database (so not a Warbler backup)`)
    if (/SQLITE_CORRUPT/.test(m)) throw new CliError(`${file} is damaged: SQLite cannot read it (${m})`)
    throw new CliError(`cannot open ${file} as a SQLite database: ${m}`)
  }
  try {
    const ok = await db.all<{ integrity_check: string }>('PRAGMA integrity_check').catch((err: Error) => [{ integrity_check: err.message }])
    if (ok.length !== 1 || ok[0]?.integrity_check !== 'ok') {
      const why = ok.map((r) => r.integrity_check).slice(0, 3).join('; ').replace(/\s+/g, ' ').trim()
      throw new CliError(/not a database/i.test(why)
        ? `${file} is not a SQLite database (so not a Warbler backup)`
        : `${file} is damaged: it fails SQLite's integrity check (${why})`)
    }
    const tables = new Set((await db.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")).map((r) => r.name))
    const missing = REQUIRED_TABLES.filter((t) => !tables.has(t))
    if (missing.length > 0) throw new CliError(`${file} is a SQLite database but not a Warbler one (no ${missing.join(', ')} table)`)
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
  const source = path.join(dataDirOf(p), DB_FILE)
  if (!existsSync(source)) throw new CliError(`no database at ${source} (wrong --data-dir?)`)
  // Created here, empty, owner-only (it holds password hashes and the token
  // key), and only if it does not exist: VACUUM INTO accepts an empty file.
  try {
    closeSync(openSync(target, 'wx', 0o600))
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') throw new CliError(`${target} already exists; choose a new file name`)
    throw new CliError(`cannot create ${target}: ${(err as Error).message}`)
  }
  try {
    const db = await Database.open(source, { readonly: true })
    try {
      // One read transaction: every message committed (so acknowledged) before it began.
      await db.run('VACUUM INTO ?', [target])
    } finally {
      await db.close()
    }
    const { messages, users } = await check(target)
    process.stdout.write(`backup written to ${target} (${users} users, ${messages} messages)\n`)
    return 0
  } catch (err) {
    rmSync(target, { force: true })
    if (err instanceof CliError) throw err
    throw new CliError(`backup failed, nothing written: ${(err as Error).message}`)
  }
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
  const { messages, users } = await check(source)
  prepareDataDir(dataDir)
  // Held until the new file is in place: a start meanwhile is refused too.
  const unlock = await lockAll(dataDir, ['node', 'service'])
  try {
    return await replace(source, dataDir, target, { messages, users })
  } finally {
    await unlock()
  }
}

async function replace (source: string, dataDir: string, target: string, counts: { messages: number, users: number }): Promise<number> {
  const staged = `${target}.restoring`
  copyFileSync(source, staged)
  chmodSync(staged, 0o600)
  // The copy must be as sound as the original before anything is replaced.
  try {
    await check(staged)
  } catch (err) {
    rmSync(staged, { force: true })
    throw err
  }
  let kept: string | null = null
  if (existsSync(target)) {
    // Fold the WAL into the current file before keeping it aside.
    const cur = await Database.open(target)
    await cur.exec('PRAGMA wal_checkpoint(TRUNCATE)')
    await cur.close()
    kept = `${target}.before-restore-${new Date().toISOString().replace(/[:.]/g, '-')}`
    renameSync(target, kept)
  }
  for (const suffix of ['-wal', '-shm']) rmSync(target + suffix, { force: true })
  renameSync(staged, target)
  process.stdout.write(`restored ${source} (${counts.users} users, ${counts.messages} messages) into ${dataDir}${kept !== null ? `; the previous database is kept as ${kept}` : ''}\n`)
  return 0
}
