/**
 * The identity store's tables (users, device tokens, and `meta` with the
 * token-signing key and the change counter its triggers keep), as numbered
 * migrations run by shared/migrations.ts. A change to the tables is a new
 * migration at the end of the list; a shipped migration is never edited.
 */
import type { Database } from '../../shared/sqlite.js'
import type { Logger } from '../../shared/log.js'
import { columnNames, migrateSchema, tableNames, type Migration, type MigrationOutcome, type SchemaComponent } from '../../shared/migrations.js'

/** Migration 1: the first layout, before the message service had an account of its own. */
const V1 = `
CREATE TABLE IF NOT EXISTS users (
  name TEXT PRIMARY KEY,
  password_hash TEXT NOT NULL,
  admin INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_tokens (
  id TEXT PRIMARY KEY,
  user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
  name TEXT NOT NULL,
  secret_hash BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS device_tokens_user ON device_tokens(user);
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value BLOB NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta(key, value) VALUES ('identity_version', 0);
${['users', 'device_tokens'].flatMap((t) => ['INSERT', 'UPDATE', 'DELETE'].map((op) => `
CREATE TRIGGER IF NOT EXISTS ${t}_${op.toLowerCase()}_version AFTER ${op} ON ${t}
BEGIN UPDATE meta SET value = value + 1 WHERE key = 'identity_version'; END;`)).join('')}
`

/** The tables of migration 1: a file with all of them and no recorded version is at version 1 or 2. */
const V1_TABLES = ['users', 'device_tokens', 'meta']

export const IDENTITY_MIGRATIONS: readonly Migration[] = [
  { version: 1, what: 'users, device tokens, meta and its change counter', up: V1 },
  {
    version: 2,
    what: 'users.service: the message service\'s own account',
    // A file that ran migration 1 again over newer tables (see detect) may have the column already.
    up: async (db) => {
      if (!(await columnNames(db, 'users')).has('service')) await db.exec('ALTER TABLE users ADD COLUMN service INTEGER NOT NULL DEFAULT 0')
    }
  },
  {
    version: 3,
    what: 'users.disabled: a user kept with its tokens, whose logins are refused',
    up: 'ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0'
  }
]

/** The identity store as a part of the database file, with `migrations` (the shipped list unless a test gives its own). */
function identityComponent (migrations: readonly Migration[] = IDENTITY_MIGRATIONS): SchemaComponent {
  return {
    name: 'identity',
    migrations,
    // Before versions were recorded, the tables were created with IF NOT
    // EXISTS at every open and `service` added when missing: all tables and
    // the column are version 2, all tables without it version 1; a file
    // with only some runs the list from the start (each step is idempotent).
    detect: async (db) => {
      const tables = await tableNames(db)
      if (!V1_TABLES.every((t) => tables.has(t))) return 0
      return (await columnNames(db, 'users')).has('service') ? 2 : 1
    }
  }
}

/** Bring the identity tables to the newest version (see shared/migrations.ts). */
export async function migrateIdentity (db: Database, opts: { log?: Logger, migrations?: readonly Migration[] } = {}): Promise<MigrationOutcome> {
  return await migrateSchema(db, identityComponent(opts.migrations), opts.log)
}
