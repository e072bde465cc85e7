/**
 * Backup and restore of the data dir's database (users, tokens and the whole
 * archive); `warbler backup` and `warbler restore` (cli/backup.ts) parse the
 * command line, take the locks and print.
 *
 * Backup is online: `VACUUM INTO` (shared/online-backup.ts) copies a
 * consistent snapshot while the service keeps running (WAL lets it read the
 * last committed state without stopping the writer). Restore needs the
 * service stopped (the caller holds the data dir's locks): it checks the
 * file, keeps the current database aside, and puts the backup in its place.
 */
import { chmodSync, copyFileSync, existsSync, renameSync, rmSync } from 'node:fs'
import { Database } from '../../shared/sqlite.js'
import { backupInto } from '../../shared/online-backup.js'
import { BackupError } from './archive-errors.js'

/** Tables every Warbler database has (the identity store creates them). */
const REQUIRED_TABLES = ['users', 'device_tokens', 'meta']

export interface Counts { messages: number, users: number }

/** Open `file` read-only and make sure it is a sound Warbler database; counts what it holds. */
export async function checkDatabase (file: string): Promise<Counts> {
  let db: Database
  try {
    db = await Database.open(file, { readonly: true })
  } catch (err) {
    const m = (err as Error).message
    if (/SQLITE_NOTADB/.test(m)) throw new BackupError(`${file} is not a SQLite database (so not a Warbler backup)`)
    if (/SQLITE_CORRUPT/.test(m)) throw new BackupError(`${file} is damaged: SQLite cannot read it (${m})`)
    throw new BackupError(`cannot open ${file} as a SQLite database: ${m}`)
  }
  try {
    const ok = await db.all<{ integrity_check: string }>('PRAGMA integrity_check').catch((err: Error) => [{ integrity_check: err.message }])
    if (ok.length !== 1 || ok[0]?.integrity_check !== 'ok') {
      const why = ok.map((r) => r.integrity_check).slice(0, 3).join('; ').replace(/\s+/g, ' ').trim()
      throw new BackupError(/not a database/i.test(why)
        ? `${file} is not a SQLite database (so not a Warbler backup)`
        : `${file} is damaged: it fails SQLite's integrity check (${why})`)
    }
    const tables = new Set((await db.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")).map((r) => r.name))
    const missing = REQUIRED_TABLES.filter((t) => !tables.has(t))
    if (missing.length > 0) throw new BackupError(`${file} is a SQLite database but not a Warbler one (no ${missing.join(', ')} table)`)
    const users = (await db.get<{ n: number }>('SELECT count(*) AS n FROM users'))?.n ?? 0
    const messages = tables.has('messages') ? ((await db.get<{ n: number }>('SELECT count(*) AS n FROM messages'))?.n ?? 0) : 0
    return { messages, users }
  } finally {
    await db.close()
  }
}

/** Copy the database `source` into `target` (which must not exist), then check the copy. */
export async function writeBackup (source: string, target: string): Promise<Counts> {
  if (!existsSync(source)) throw new BackupError(`no database at ${source} (wrong --data-dir?)`)
  let db: Database | null = null
  try {
    db = await Database.open(source, { readonly: true })
  } catch (err) {
    throw new BackupError(`backup failed, nothing written: ${(err as Error).message}`)
  }
  try {
    // One read transaction: every message committed (so acknowledged) before it began.
    await backupInto(db, target)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') throw new BackupError(`${target} already exists; choose a new file name`)
    // An errno code (EACCES, ENOENT...) comes from creating the file; SQLite's start with SQLITE_.
    if (code !== undefined && /^E[A-Z]+$/.test(code)) throw new BackupError(`cannot create ${target}: ${(err as Error).message}`)
    throw new BackupError(`backup failed, nothing written: ${(err as Error).message}`)
  } finally {
    await db.close()
  }
  try {
    return await checkDatabase(target)
  } catch (err) {
    rmSync(target, { force: true })
    throw err
  }
}

/**
 * Put `source` in place of the database `target` (the service stopped: the
 * caller holds the data dir's locks). The current file is kept aside as
 * `TARGET.before-restore-TIME`; returns that name, or null if there was none.
 */
export async function replaceDatabase (source: string, target: string): Promise<string | null> {
  const staged = `${target}.restoring`
  copyFileSync(source, staged)
  chmodSync(staged, 0o600)
  // The copy must be as sound as the original before anything is replaced.
  try {
    await checkDatabase(staged)
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
  return kept
}
