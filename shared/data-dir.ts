/**
 * The data dir: made ready before anything opens a file in it, and locked
 * by the process that serves it.
 *
 * `prepareDataDir` creates the directory one level at a time (node's
 * recursive mkdir loops forever on some paths, such as under /proc) and
 * checks that it is a directory this user can write, so that each way it
 * can be wrong ends the start with one line naming the problem and the fix.
 *
 * `lockDataDir` takes an exclusive lock that the operating system releases
 * when the process dies, SIGKILL included: an fcntl lock held by SQLite on
 * a small lock file (SQLite's exclusive locking mode keeps it for as long as
 * the connection is open). A pid file alone is not a lock: it outlives a
 * killed process and two starts can both write it. The pid file next to the
 * lock only names the holder in the refusal. Two locks, because the shapes
 * differ in what they own: `node` is held by `warbler start`, `service` by
 * whichever process runs the message service (`warbler start` with the
 * embedded service, or `warbler bridge` beside a `--bridge off` broker on
 * the same data dir). `warbler restore` takes both.
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import sqlite3 from 'sqlite3'
import { EXIT, StartError } from './start-error.js'

/** The database in the data dir: users and tokens, and the message archive. */
export const DB_FILE = 'warbler.db'

export type LockName = 'node' | 'service'

const LOCK_FILE: Record<LockName, string> = { node: 'warbler.lock', service: 'warbler-service.lock' }
/** Holds the holder's pid while the lock is held; removed at release. */
const PID_FILE: Record<LockName, string> = { node: 'warbler.pid', service: 'warbler-service.pid' }
const HOLDER: Record<LockName, string> = { node: 'warbler start', service: 'the message service (warbler start or warbler bridge)' }

function code (err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? 'error'
}

function unusable (dir: string, problem: string): StartError {
  return new StartError(`the data dir ${dir} ${problem}`, EXIT.dataDir)
}

/** Create `dir` (and missing parents) if needed, and make sure it is a directory this process can write. */
export function prepareDataDir (dir: string): void {
  const missing: string[] = []
  let at = path.resolve(dir)
  // Walk up to the nearest existing ancestor: at most one step per path level.
  for (;;) {
    try {
      if (!statSync(at).isDirectory()) {
        throw unusable(dir, at === path.resolve(dir) ? 'is a file, not a directory; choose another --data-dir' : `cannot be created: ${at} is a file, not a directory`)
      }
      break
    } catch (err) {
      if (err instanceof StartError) throw err
      if (code(err) === 'EACCES') throw unusable(dir, `cannot be reached by this user (uid ${process.getuid?.() ?? '?'}): a folder on its path does not let it in (EACCES); fix the permissions, or choose another --data-dir`)
      if (code(err) !== 'ENOENT' && code(err) !== 'ENOTDIR') throw unusable(dir, `cannot be read: ${(err as Error).message}`)
      missing.unshift(at)
      const up = path.dirname(at)
      if (up === at) break
      at = up
    }
  }
  for (const level of missing) {
    try {
      mkdirSync(level, { mode: 0o700 })
    } catch (err) {
      if (code(err) === 'EEXIST') continue
      const why = code(err) === 'EACCES' || code(err) === 'EPERM' || code(err) === 'EROFS'
        ? `this user may not create ${level} (${code(err)}); create it and give it to this user, or choose another --data-dir`
        : `${level} cannot be created there (${code(err)}); choose another --data-dir`
      throw unusable(dir, `does not exist and ${why}`)
    }
  }
  // Writable, really: root ignores permission bits but not a read-only mount.
  const probe = path.join(dir, `.warbler-write-check-${process.pid}`)
  try {
    closeSync(openSync(probe, 'wx', 0o600))
    rmSync(probe, { force: true })
  } catch (err) {
    throw unusable(dir, `is not writable by this user (uid ${process.getuid?.() ?? '?'}, ${code(err)}); give it to the user that runs Warbler (chown), or choose another --data-dir`)
  }
}

export interface DataDirLock {
  readonly name: LockName
  /** Removes the pid file and releases the lock; idempotent. */
  release: () => Promise<void>
}

function holderPid (dir: string, name: LockName): string {
  try {
    const pid = readFileSync(path.join(dir, PID_FILE[name]), 'utf8').trim()
    return /^\d+$/.test(pid) ? `pid ${pid}` : 'pid unknown'
  } catch {
    return 'pid unknown'
  }
}

function close (db: sqlite3.Database): Promise<void> {
  return new Promise((resolve) => { db.close(() => resolve()) })
}

/**
 * Take the data dir's `name` lock, or throw a StartError (exit code 3)
 * naming the dir and the pid that holds it.
 */
export async function lockDataDir (dir: string, name: LockName): Promise<DataDirLock> {
  const file = path.join(dir, LOCK_FILE[name])
  const db = await new Promise<sqlite3.Database>((resolve, reject) => {
    const d = new sqlite3.Database(file, sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE, (err) => { err !== null ? reject(err) : resolve(d) })
  }).catch((err: Error) => { throw unusable(dir, `cannot hold its lock file ${file}: ${err.message}`) })
  // No waiting: a held lock is an answer, not a contention to sit out.
  db.configure('busyTimeout', 0)
  const taken = await new Promise<Error | null>((resolve) => {
    db.exec('PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = OFF; BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS held (since INTEGER); COMMIT', (err) => { resolve(err) })
  })
  if (taken !== null) {
    await close(db)
    if (/SQLITE_BUSY|SQLITE_LOCKED/.test(taken.message)) {
      throw new StartError(`the data dir ${dir} is in use by ${HOLDER[name]}, ${holderPid(dir, name)}; stop it first, or choose another --data-dir`, EXIT.dataDirInUse)
    }
    throw unusable(dir, `cannot hold its lock file ${file}: ${taken.message}`)
  }
  const pidFile = path.join(dir, PID_FILE[name])
  writeFileSync(pidFile, `${process.pid}\n`, { mode: 0o644 })
  let released: Promise<void> | null = null
  return {
    name,
    release: () => {
      // The pid file goes first, while the lock still guards it.
      released ??= (async () => { rmSync(pidFile, { force: true }); await close(db) })()
      return released
    }
  }
}

/** Take several locks in order; on a refusal, release those already taken. */
export async function lockAll (dir: string, names: readonly LockName[]): Promise<() => Promise<void>> {
  const held: DataDirLock[] = []
  try {
    for (const n of names) held.push(await lockDataDir(dir, n))
  } catch (err) {
    for (const l of held.reverse()) await l.release()
    throw err
  }
  return async () => { for (const l of [...held].reverse()) await l.release() }
}
