/**
 * An online copy of a SQLite database: `VACUUM INTO` writes a consistent
 * snapshot (the last committed state, in one read transaction) into a new
 * file while other connections keep reading and writing (WAL). Used by
 * `warbler backup` and before a schema upgrade (migrations.ts).
 */
import { closeSync, openSync, rmSync } from 'node:fs'
import type { Database } from './sqlite.js'

/**
 * Copy `db` into `target`, which must not exist. The file is created here,
 * empty and owner-only (the database holds password hashes and the token
 * key), and only if it does not exist: VACUUM INTO accepts an empty file.
 * On a failure of the copy, the partial file is removed.
 */
export async function backupInto (db: Database, target: string): Promise<void> {
  closeSync(openSync(target, 'wx', 0o600))
  try {
    await db.run('VACUUM INTO ?', [target])
  } catch (err) {
    rmSync(target, { force: true })
    throw err
  }
}
