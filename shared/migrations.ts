/**
 * Numbered schema migrations for the parts of Warbler that keep tables in the
 * data dir's SQLite file (warbler.db): the identity store (users, tokens)
 * and the message archive. Each part is a `SchemaComponent` with its own
 * list of migrations and its own version.
 *
 * Where the version lives: a table `schema_versions(component, version)`,
 * one row per part. Not `PRAGMA user_version`: both parts share one file,
 * and that pragma is a single number for the whole file, so two parts
 * upgraded by different Warbler code (the identity store opens the file
 * before the message service does, and `warbler user` opens it alone)
 * would overwrite each other's number.
 *
 * At open (`migrateSchema`):
 * - a fresh file gets every migration;
 * - a file from before versions were recorded has no row: the part's own
 *   `detect` tells its version from its tables, and it is recorded as such,
 *   its tables unchanged;
 * - an older version is upgraded in one transaction, after an online copy of
 *   the file (`warbler.db.pre-<part>-v<N>-<time>` beside it), named in the log.
 *   One copy serves every part a start upgrades: the identity store and the
 *   archive upgrade one after the other at start, and a second copy of the
 *   whole file (on a Pi's SD card, the whole archive) bought nothing, since
 *   the first already holds the second part as it was (see `sameStart`);
 * - a newer version than this code knows is refused (exit code 5) with
 *   nothing changed: a newer Warbler wrote it, and older code would misread it.
 */
import { existsSync } from 'node:fs'
import type { Database } from './sqlite.js'
import type { Logger } from './log.js'
import { backupInto } from './online-backup.js'
import { EXIT, StartError } from './start-error.js'

export interface Migration {
  /** 1, 2, 3...: the version the schema has once this migration ran. */
  readonly version: number
  /** What it changes, for the log. */
  readonly what: string
  /** SQL run as one script, or a function for a change that must look before it leaps. */
  readonly up: string | ((db: Database) => Promise<void>)
}

export interface SchemaComponent {
  /** The row in schema_versions: `identity`, `archive`. */
  readonly name: string
  readonly migrations: readonly Migration[]
  /**
   * The version of a file written before versions were recorded, told from
   * its tables: 0 when the part's tables are not all there (a fresh file).
   */
  readonly detect: (db: Database) => Promise<number>
}

export interface MigrationOutcome {
  /** The version found (0 for a fresh file). */
  from: number
  to: number
  /** The copy made before an upgrade, or null when nothing was upgraded. */
  backup: string | null
}

const VERSIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_versions (
  component TEXT PRIMARY KEY,
  version INTEGER NOT NULL
) WITHOUT ROWID`

/** The names of the file's tables. */
export async function tableNames (db: Database): Promise<Set<string>> {
  return new Set((await db.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")).map((r) => r.name))
}

/** The names of a table's columns (none when it does not exist). */
export async function columnNames (db: Database, table: string): Promise<Set<string>> {
  return new Set((await db.all<{ name: string }>('SELECT name FROM pragma_table_info(?)', [table])).map((r) => r.name))
}

/** The recorded version of `component`, or null when none is recorded. Reads only. */
async function recorded (db: Database, component: string): Promise<number | null> {
  if (!(await tableNames(db)).has('schema_versions')) return null
  const row = await db.get<{ version: number }>('SELECT version FROM schema_versions WHERE component = ?', [component])
  return row?.version ?? null
}

function checkList (c: SchemaComponent): number {
  c.migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`the ${c.name} migrations must be numbered 1, 2, 3...: found ${m.version} at place ${i + 1}`)
  })
  return c.migrations.length
}

function tooNew (db: Database, c: SchemaComponent, found: number, known: number): StartError {
  return new StartError(`${db.file} holds ${c.name} schema version ${found}, but this Warbler knows versions up to ${known}: ` +
    'a newer Warbler wrote it. Upgrade Warbler to that version (or restore a backup made by this one); the file was left unchanged', EXIT.dataDir)
}

/** Where the copy before an upgrade goes: beside the file, named after the part, the version and the time. */
function backupName (db: Database, c: SchemaComponent, to: number): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-')
  let name = `${db.file}.pre-${c.name}-v${to}-${stamp}`
  for (let n = 2; existsSync(name); n++) name = `${db.file}.pre-${c.name}-v${to}-${stamp}-${n}`
  return name
}

/**
 * The copies this process made before an upgrade, by file: which parts were
 * upgraded since (the copy holds every other part as it was) and when. A part
 * not upgraded since, within COPY_REUSE_MS, is upgraded on the same copy.
 */
const sameStart = new Map<string, { path: string, upgraded: Set<string>, at: number }>()
const COPY_REUSE_MS = 10 * 60_000

/** The copy to make or reuse before upgrading `component`, and whether it is reused. */
async function copyBefore (db: Database, component: SchemaComponent, to: number): Promise<{ path: string, reused: boolean }> {
  const earlier = sameStart.get(db.file)
  if (earlier !== undefined && !earlier.upgraded.has(component.name) && Date.now() - earlier.at < COPY_REUSE_MS && existsSync(earlier.path)) {
    earlier.upgraded.add(component.name)
    return { path: earlier.path, reused: true }
  }
  // VACUUM INTO cannot run inside a transaction: the copy is taken first.
  const path = backupName(db, component, to)
  await backupInto(db, path)
  sameStart.set(db.file, { path, upgraded: new Set([component.name]), at: Date.now() })
  return { path, reused: false }
}

/**
 * Bring `component`'s tables in `db` to the newest version of its list (see
 * the top of this file). `db` must not be inside a transaction. Another
 * process may open the same file at the same time: the version is read again
 * inside the write transaction, and whoever comes second finds nothing to do.
 */
export async function migrateSchema (db: Database, component: SchemaComponent, log?: Logger): Promise<MigrationOutcome> {
  const latest = checkList(component)
  const known = await recorded(db, component.name)
  const found = known ?? await component.detect(db)
  if (found > latest) throw tooNew(db, component, found, latest)
  if (known === latest) return { from: found, to: latest, backup: null }
  let backup: string | null = null
  if (found > 0 && found < latest) {
    const copy = await copyBefore(db, component, latest)
    backup = copy.path
    if (copy.reused) log?.info('the database copy made before this start\'s first schema upgrade holds this part as it was too', { component: component.name, from: found, to: latest, backup })
    else log?.info('database copied before a schema upgrade', { component: component.name, from: found, to: latest, backup })
  }
  const from = await db.transaction(async () => {
    const now = await recorded(db, component.name) ?? await component.detect(db)
    if (now > latest) throw tooNew(db, component, now, latest)
    for (const m of component.migrations.slice(now)) {
      if (typeof m.up === 'string') await db.exec(m.up)
      else await m.up(db)
    }
    await db.exec(VERSIONS_TABLE)
    await db.run('INSERT INTO schema_versions(component, version) VALUES (?, ?) ON CONFLICT(component) DO UPDATE SET version = excluded.version',
      [component.name, latest])
    return now
  })
  if (from > 0 && from < latest) log?.info('database schema upgraded', { component: component.name, from, to: latest, backup })
  return { from, to: latest, backup }
}
