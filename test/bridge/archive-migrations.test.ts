/**
 * The archive's schema versions on real SQLite files: a fresh file gets every
 * migration, a file from the release before versions were recorded is taken
 * as version 1 unchanged, an older version is upgraded in one transaction
 * after a copy of the file, a newer one is refused with nothing changed, and
 * a failing migration leaves nothing behind.
 */
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import type { Database } from '../../shared/sqlite.js'
import { createLogger } from '../../shared/log.js'
import type { Migration } from '../../shared/migrations.js'
import { EXIT, StartError } from '../../shared/start-error.js'
import { ARCHIVE_MIGRATIONS, migrate } from '../../bridge/archive/schema.js'
import { MessageService } from '../../bridge/service.js'
import { IdentityStore } from '../../broker/identity/identity-store.js'
import { IDENTITY_MIGRATIONS } from '../../broker/identity/identity-schema.js'
import { backups, dataDir, RELEASE_1, recordedVersion, schemaSql, withDb } from '../helpers/db-files.js'

/** The newest version Warbler ships, and the first release's migration alone. */
const LATEST = ARCHIVE_MIGRATIONS.length
const RELEASE_1_MIGRATIONS = ARCHIVE_MIGRATIONS.slice(0, 1)

/** A later migration, for the tests only: a new table and a new column. */
const NEXT: Migration = {
  version: LATEST + 1,
  what: 'reactions, conversations.topic',
  up: 'CREATE TABLE reactions (msg TEXT NOT NULL, user TEXT NOT NULL, emoji TEXT NOT NULL, PRIMARY KEY (msg, user, emoji)) WITHOUT ROWID; ALTER TABLE conversations ADD COLUMN topic TEXT'
}

const version = (db: Database): Promise<number | undefined> => recordedVersion(db, 'archive')
const messages = (db: Database): Promise<Array<{ seq: number, text: string }>> =>
  db.all<{ seq: number, text: string }>("SELECT seq, text FROM messages WHERE conv = 'd:ann:ben' ORDER BY seq")

test('a fresh file gets every migration and records the last version, with no copy made', async () => {
  const d = await dataDir('warbler-archive-versions-', null)
  try {
    await withDb(d.file, async (db) => {
      assert.deepEqual(await migrate(db, { migrations: [...ARCHIVE_MIGRATIONS, NEXT] }), { from: 0, to: LATEST + 1, backup: null })
      assert.equal(await version(db), LATEST + 1)
      const tables = new Set((await db.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")).map((r) => r.name))
      for (const t of ['conversations', 'members', 'messages', 'last_seen', 'messages_fts', 'reactions']) assert.ok(tables.has(t), t)
    })
    assert.deepEqual(backups(d.dir), [])
  } finally { d.done() }
})

test('a file of the release before versions is recorded as version 1, its tables and rows unchanged', async () => {
  const d = await dataDir('warbler-archive-versions-', RELEASE_1)
  try {
    const before = await withDb(d.file, schemaSql)
    await withDb(d.file, async (db) => {
      assert.deepEqual(await migrate(db, { migrations: RELEASE_1_MIGRATIONS }), { from: 1, to: 1, backup: null })
      assert.equal(await version(db), 1)
      assert.equal(await schemaSql(db), before)
      assert.deepEqual(await messages(db), [{ seq: 1, text: 'hello ben' }, { seq: 2, text: 'lunch at noon?' }])
      // Opened again: nothing to do.
      assert.deepEqual(await migrate(db, { migrations: RELEASE_1_MIGRATIONS }), { from: 1, to: 1, backup: null })
    })
    assert.deepEqual(backups(d.dir), [])
  } finally { d.done() }
})

test('an older version is upgraded after a copy of the file: data kept, version recorded, the copy named in the log and readable', async () => {
  const d = await dataDir('warbler-archive-versions-', RELEASE_1)
  try {
    const lines: string[] = []
    const log = createLogger('info', (l) => { lines.push(l) })
    const out = await withDb(d.file, async (db) => {
      const o = await migrate(db, { migrations: [...ARCHIVE_MIGRATIONS, NEXT], log })
      assert.equal(await version(db), LATEST + 1)
      assert.deepEqual(await messages(db), [{ seq: 1, text: 'hello ben' }, { seq: 2, text: 'lunch at noon?' }])
      // The new column and table work; the full-text index still finds old messages.
      await db.run("UPDATE conversations SET topic = 'plans' WHERE id = 'd:ann:ben'")
      await db.run("INSERT INTO reactions(msg, user, emoji) VALUES ('0000000000000000000002', 'ben', 'ok')")
      assert.equal((await db.all("SELECT rowid FROM messages_fts WHERE messages_fts MATCH 'lunch'")).length, 1)
      return o
    })
    assert.equal(out.from, 1)
    assert.equal(out.to, LATEST + 1)
    assert.ok(out.backup !== null && existsSync(out.backup), 'the copy exists')
    assert.equal(path.dirname(out.backup), d.dir, 'the copy is in the data dir')
    assert.match(path.basename(out.backup), new RegExp(`^warbler\\.db\\.pre-archive-v${LATEST + 1}-`))
    assert.ok(lines.some((l) => l.includes(out.backup as string)), 'the log names the copy')
    // The copy is the file as it was: version 1's tables, every row.
    await withDb(out.backup, async (db) => {
      assert.deepEqual(await messages(db), [{ seq: 1, text: 'hello ben' }, { seq: 2, text: 'lunch at noon?' }])
      const tables = (await db.all<{ name: string }>("SELECT name FROM sqlite_master WHERE name = 'reactions'"))
      assert.deepEqual(tables, [])
      assert.equal((await db.get<{ n: number }>('SELECT count(*) AS n FROM users'))?.n, 3)
    })
  } finally { d.done() }
})

test('a file of a newer version is refused (exit code 5) naming both versions, and left byte for byte as it was', async () => {
  const d = await dataDir('warbler-archive-versions-', RELEASE_1)
  try {
    await withDb(d.file, async (db) => {
      await migrate(db)
      await db.run("UPDATE schema_versions SET version = 70 WHERE component = 'archive'")
    })
    const bytes = readFileSync(d.file)
    const listing = readdirSync(d.dir).sort()
    await assert.rejects(MessageService.open({ dataDir: d.dir, transport: { publish: async () => {} }, log: createLogger('error', () => {}), maxPayload: 65536 }), (err: unknown) => {
      assert.ok(err instanceof StartError)
      assert.equal(err.exitCode, EXIT.dataDir)
      assert.match(err.message, /archive schema version 70/)
      assert.match(err.message, new RegExp(`versions up to ${LATEST}\\b`))
      assert.match(err.message, /Upgrade Warbler/)
      return true
    })
    assert.ok(readFileSync(d.file).equals(bytes), 'the file is unchanged')
    assert.deepEqual(readdirSync(d.dir).sort(), listing, 'no copy, no journal left behind')
  } finally { d.done() }
})

test('a failing migration rolls back: the version stays, no table of it is left half made', async () => {
  const d = await dataDir('warbler-archive-versions-', RELEASE_1)
  try {
    const broken: Migration = { version: LATEST + 1, what: 'fails half way', up: 'CREATE TABLE half (x INTEGER); ALTER TABLE conversations ADD COLUMN topic TEXT; INSERT INTO no_such_table VALUES (1)' }
    await withDb(d.file, async (db) => {
      await migrate(db)
      const before = await schemaSql(db)
      await assert.rejects(migrate(db, { migrations: [...ARCHIVE_MIGRATIONS, broken] }), /no_such_table/)
      assert.equal(await version(db), LATEST)
      assert.equal(await schemaSql(db), before)
      assert.deepEqual(await db.all("SELECT name FROM sqlite_master WHERE name = 'half'"), [])
      assert.deepEqual(await messages(db), [{ seq: 1, text: 'hello ben' }, { seq: 2, text: 'lunch at noon?' }])
    })
  } finally { d.done() }
})

test('a list of migrations out of order is refused before anything runs', async () => {
  const d = await dataDir('warbler-archive-versions-', null)
  try {
    await withDb(d.file, async (db) => {
      await assert.rejects(migrate(db, { migrations: [ARCHIVE_MIGRATIONS[0] as Migration, { ...NEXT, version: 3 }] }), /numbered 1, 2, 3.*found 3 at place 2/)
      assert.deepEqual(await db.all('SELECT name FROM sqlite_master'), [])
    })
  } finally { d.done() }
})

test('migration 3 keeps the MQTT 5 user properties of messages: the messages of an older file have none, a new one keeps its own', async () => {
  const d = await dataDir('warbler-archive-versions-', RELEASE_1)
  try {
    const svc = await MessageService.open({ dataDir: d.dir, transport: { publish: async () => {} }, log: createLogger('error', () => {}), maxPayload: 65536 })
    try {
      const old = await svc.reader.history('d:ann:ben', { limit: 10 })
      assert.deepEqual(old.messages.map((m) => [m.seq, m.props]), [[1, undefined], [2, undefined]])
      await svc.writer.send({ user: 'ann', cid: 'p1', conv: 'd:ann:ben', peer: 'ben', body: 'tagged', text: 'tagged', props: { k: ['1', '2'], one: 'x' } })
      const page = await svc.reader.history('d:ann:ben', { after: 2, limit: 10 })
      assert.deepEqual(page.messages.map((m) => m.props), [{ k: ['1', '2'], one: 'x' }])
    } finally { await svc.close() }
    assert.equal(backups(d.dir).length, 1, 'the upgrade copied the file first')
  } finally { d.done() }
})

test('a start that upgrades both the identity store and the archive copies the file once, and that copy holds both as they were', async () => {
  const d = await dataDir('warbler-upgrade-copy-', RELEASE_1)
  try {
    const before = await withDb(d.file, schemaSql)
    // The order of a start: the identity store first, then the message service.
    const store = await IdentityStore.open(d.dir)
    await store.close()
    const svc = await MessageService.open({ dataDir: d.dir, transport: { publish: async () => {} }, log: createLogger('error', () => {}), maxPayload: 65536 })
    await svc.close()
    const copies = backups(d.dir)
    assert.equal(copies.length, 1, `one copy, not one per part: ${copies.join(', ')}`)
    await withDb(path.join(d.dir, copies[0] as string), async (db) => {
      assert.equal(await schemaSql(db), before, 'the copy holds both parts as they were')
    })
    await withDb(d.file, async (db) => {
      assert.equal(await recordedVersion(db, 'identity'), IDENTITY_MIGRATIONS.length)
      assert.equal(await recordedVersion(db, 'archive'), LATEST)
    })
    // A part upgraded again is copied again: the first copy no longer holds it as it is now.
    await withDb(d.file, async (db) => {
      await migrate(db, { migrations: [...ARCHIVE_MIGRATIONS, NEXT] })
    })
    assert.equal(backups(d.dir).length, 2)
  } finally { d.done() }
})
