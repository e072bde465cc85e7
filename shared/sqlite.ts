/**
 * A small promise layer over node-sqlite3 with the pragmas Warbler relies on:
 * WAL (readers never block the writer, and the CLI can change the database
 * while the service runs), a busy timeout, and foreign keys.
 */
import sqlite3 from 'sqlite3'

export type Row = Record<string, unknown>
export type Params = readonly unknown[] | Record<string, unknown>

/**
 * A statement compiled once and run many times (node-sqlite3 `db.prepare`):
 * no SQL parsing or planning per call. Runs queue in order on the statement.
 */
export class Prepared {
  constructor (private readonly stmt: sqlite3.Statement) {}

  run (params: Params = []): Promise<{ changes: number, lastID: number }> {
    return new Promise((resolve, reject) => {
      this.stmt.run(params, function (this: sqlite3.RunResult, err: Error | null) {
        err !== null ? reject(err) : resolve({ changes: this.changes, lastID: this.lastID })
      })
    })
  }

  all<T extends Row = Row> (params: Params = []): Promise<T[]> {
    return new Promise((resolve, reject) => {
      this.stmt.all(params, (err: Error | null, rows: T[]) => { err !== null ? reject(err) : resolve(rows) })
    })
  }

  finalize (): Promise<void> {
    return new Promise((resolve) => { this.stmt.finalize(() => resolve()) })
  }
}

export class Database {
  private closed = false
  /** Prepared statements by SQL text, finalized at close. */
  private readonly prepared = new Map<string, Promise<Prepared>>()
  private constructor (private readonly db: sqlite3.Database, readonly file: string) {}

  /**
   * `synchronous` (default NORMAL): with WAL, NORMAL syncs only at
   * checkpoints, so a commit survives a crash of the process but the last
   * ones may be lost to a power cut; FULL syncs the WAL at every commit.
   */
  static async open (file: string, opts: { readonly?: boolean, synchronous?: 'NORMAL' | 'FULL' } = {}): Promise<Database> {
    const mode = opts.readonly === true ? sqlite3.OPEN_READONLY : (sqlite3.OPEN_READWRITE | sqlite3.OPEN_CREATE)
    const raw = await new Promise<sqlite3.Database>((resolve, reject) => {
      const d = new sqlite3.Database(file, mode, (err) => { err !== null ? reject(err) : resolve(d) })
    })
    const db = new Database(raw, file)
    raw.configure('busyTimeout', 5000)
    if (opts.readonly !== true) {
      // Takes effect only while the file is new: lets retention give space back
      // with PRAGMA incremental_vacuum instead of a full VACUUM. Set only when it
      // differs: setting it writes the file's header, and opening a file must
      // not change it (a file a newer Warbler wrote is refused untouched).
      const vacuum = await db.get<{ auto_vacuum: number }>('PRAGMA auto_vacuum')
      if (vacuum?.auto_vacuum !== 2) await db.exec('PRAGMA auto_vacuum = INCREMENTAL')
      await db.exec('PRAGMA journal_mode = WAL')
    }
    await db.exec(`PRAGMA synchronous = ${opts.synchronous === 'FULL' ? 'FULL' : 'NORMAL'}; PRAGMA foreign_keys = ON`)
    return db
  }

  exec (sql: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.db.exec(sql, (err) => { err !== null ? reject(err) : resolve() })
    })
  }

  run (sql: string, params: Params = []): Promise<{ changes: number, lastID: number }> {
    return new Promise((resolve, reject) => {
      this.db.run(sql, params, function (this: sqlite3.RunResult, err: Error | null) {
        err !== null ? reject(err) : resolve({ changes: this.changes, lastID: this.lastID })
      })
    })
  }

  get<T extends Row = Row> (sql: string, params: Params = []): Promise<T | undefined> {
    return new Promise((resolve, reject) => {
      this.db.get(sql, params, (err: Error | null, row: T | undefined) => { err !== null ? reject(err) : resolve(row) })
    })
  }

  all<T extends Row = Row> (sql: string, params: Params = []): Promise<T[]> {
    return new Promise((resolve, reject) => {
      this.db.all(sql, params, (err: Error | null, rows: T[]) => { err !== null ? reject(err) : resolve(rows) })
    })
  }

  /**
   * The prepared statement for `sql`, compiled on first use and kept until
   * close. For fixed SQL text only (every distinct text stays cached).
   */
  prepare (sql: string): Promise<Prepared> {
    let p = this.prepared.get(sql)
    if (p === undefined) {
      p = new Promise<Prepared>((resolve, reject) => {
        const stmt = this.db.prepare(sql, (err: Error | null) => { err !== null ? reject(err) : resolve(new Prepared(stmt)) })
      })
      // A statement that failed to compile is not kept: the next call tries again.
      p.catch(() => { this.prepared.delete(sql) })
      this.prepared.set(sql, p)
    }
    return p
  }

  /** Run fn inside BEGIN IMMEDIATE ... COMMIT, rolling back on error. */
  async transaction<T> (fn: () => Promise<T>): Promise<T> {
    await this.exec('BEGIN IMMEDIATE')
    try {
      const out = await fn()
      await this.exec('COMMIT')
      return out
    } catch (err) {
      await this.exec('ROLLBACK').catch(() => {})
      throw err
    }
  }

  /** Idempotent. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    // SQLite refuses to close a connection with unfinalized statements.
    const stmts = await Promise.allSettled([...this.prepared.values()])
    this.prepared.clear()
    for (const s of stmts) if (s.status === 'fulfilled') await s.value.finalize()
    await new Promise<void>((resolve, reject) => { this.db.close((err) => { err !== null ? reject(err) : resolve() }) })
  }
}
