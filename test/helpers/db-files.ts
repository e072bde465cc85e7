/**
 * Real SQLite files for the schema-version tests: a data dir whose database
 * was written by given SQL, and what those tests read back from it.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { DB_FILE } from '../../shared/data-dir.js'
import { Database } from '../../shared/sqlite.js'

/** A database as the release before schema versions wrote it (users, tokens, a conversation of two messages). */
export const RELEASE_1 = readFileSync(new URL('../../../test/fixtures/warbler-db-release-1.sql', import.meta.url), 'utf8')

/** A temp data dir; its database file made by `sql` first, unless null. */
export async function dataDir (prefix: string, sql: string | null): Promise<{ dir: string, file: string, done: () => void }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix))
  const file = path.join(dir, DB_FILE)
  if (sql !== null) await withDb(file, async (db) => { await db.exec(sql) })
  return { dir, file, done: () => rmSync(dir, { recursive: true, force: true }) }
}

export async function withDb<T> (file: string, fn: (db: Database) => Promise<T>): Promise<T> {
  const db = await Database.open(file)
  try { return await fn(db) } finally { await db.close() }
}

/** The version recorded for `component`, undefined when none is. */
export const recordedVersion = (db: Database, component: string): Promise<number | undefined> =>
  db.get<{ version: number }>('SELECT version FROM schema_versions WHERE component = ?', [component]).then((r) => r?.version, () => undefined)

/** Every table's and index's SQL but the version table's: the schema, to compare before and after. */
export const schemaSql = (db: Database): Promise<string> =>
  db.all<{ sql: string | null }>("SELECT sql FROM sqlite_master WHERE name NOT LIKE 'schema_versions%' ORDER BY name").then((r) => r.map((x) => x.sql).join('\n'))

/** The copies made before upgrades in a data dir. */
export const backups = (dir: string): string[] => readdirSync(dir).filter((f) => f.startsWith(`${DB_FILE}.pre-`))
