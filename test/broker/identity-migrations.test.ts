/**
 * The identity store's schema versions on real SQLite files, through
 * IdentityStore.open: a fresh file gets every migration, a file of the
 * release before versions is taken as version 2 and upgraded by migration 3
 * (users.disabled) after a copy of the file as it was, the first layout
 * (no users.service) is upgraded by the real migrations 2 and 3 after a copy of the
 * file, a newer version is refused with nothing changed (also by the CLI,
 * exit code 5), and a failing migration leaves nothing behind.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import type { Database } from '../../shared/sqlite.js'
import { createLogger } from '../../shared/log.js'
import type { Migration } from '../../shared/migrations.js'
import { EXIT, StartError } from '../../shared/start-error.js'
import { IdentityStore } from '../../broker/identity/identity-store.js'
import { IDENTITY_MIGRATIONS, migrateIdentity } from '../../broker/identity/identity-schema.js'
import { CLI } from '../helpers/test-node.js'
import { backups, dataDir, RELEASE_1, recordedVersion, schemaSql, withDb } from '../helpers/db-files.js'

/** The first layout: migration 1 as shipped, and two users. */
const FIRST_LAYOUT = `${IDENTITY_MIGRATIONS[0]?.up as string};
INSERT INTO users(name, password_hash, admin, created_at) VALUES ('ann', 'scrypt$placeholder', 1, 1), ('ben', 'scrypt$placeholder', 0, 2);
INSERT INTO meta(key, value) VALUES ('jwt_key', X'00');`

const version = (db: Database): Promise<number | undefined> => recordedVersion(db, 'identity')
const columns = (db: Database): Promise<string[]> =>
  db.all<{ name: string }>("SELECT name FROM pragma_table_info('users')").then((r) => r.map((x) => x.name))

test('identity: a fresh file gets every migration (users have the service and disabled flags) and records version 3', async () => {
  const d = await dataDir('warbler-identity-versions-', null)
  try {
    const store = await IdentityStore.open(d.dir)
    await store.addUser('ann', 'password-1234', false, true)
    assert.equal((await store.listUsers())[0]?.service, true)
    await store.setDisabled('ann', true)
    assert.equal((await store.listUsers())[0]?.disabled, true)
    await store.close()
    await withDb(d.file, async (db) => { assert.equal(await version(db), 3) })
    assert.deepEqual(backups(d.dir), [])
  } finally { d.done() }
})

test('identity: a file of the release before versions is taken as version 2 and upgraded by migration 3 after a copy of it as it was', async () => {
  const d = await dataDir('warbler-identity-versions-', RELEASE_1)
  try {
    const before = await withDb(d.file, schemaSql)
    const store = await IdentityStore.open(d.dir)
    assert.deepEqual((await store.listUsers()).map((u) => [u.name, u.admin, u.service, u.disabled]), [['ann', true, false, false], ['ben', false, false, false], ['warbler-bridge', false, true, false]])
    assert.equal((await store.listDeviceTokens('ann')).length, 1)
    await store.close()
    await withDb(d.file, async (db) => {
      assert.equal(await version(db), 3)
      assert.ok((await columns(db)).includes('disabled'))
    })
    const [copy, ...more] = backups(d.dir)
    assert.equal(more.length, 0)
    assert.match(copy as string, /^warbler\.db\.pre-identity-v3-/)
    // The copy is the file as it was (its schema, before any version was recorded), apart from the version record.
    await withDb(path.join(d.dir, copy as string), async (db) => {
      assert.equal(await schemaSql(db), before)
      assert.ok(!(await columns(db)).includes('disabled'))
    })
  } finally { d.done() }
})

test('identity: the first layout is upgraded by migrations 2 and 3 after a copy of the file, named in the log', async () => {
  const d = await dataDir('warbler-identity-versions-', FIRST_LAYOUT)
  try {
    const lines: string[] = []
    const store = await IdentityStore.open(d.dir, { log: createLogger('info', (l) => { lines.push(l) }) })
    assert.deepEqual((await store.listUsers()).map((u) => [u.name, u.admin, u.service]), [['ann', true, false], ['ben', false, false]])
    await store.close()
    await withDb(d.file, async (db) => {
      assert.equal(await version(db), 3)
      assert.ok((await columns(db)).includes('service'))
      assert.ok((await columns(db)).includes('disabled'))
    })
    const [copy, ...more] = backups(d.dir)
    assert.equal(more.length, 0)
    assert.match(copy as string, /^warbler\.db\.pre-identity-v3-/)
    const full = path.join(d.dir, copy as string)
    assert.ok(lines.some((l) => l.includes(full)), 'the log names the copy')
    await withDb(full, async (db) => {
      assert.ok(!(await columns(db)).includes('service'), 'the copy is the file as it was')
      assert.equal((await db.get<{ n: number }>('SELECT count(*) AS n FROM users'))?.n, 2)
    })
  } finally { d.done() }
})

test('identity: a file of a newer version is refused (exit code 5), unchanged, also by the CLI', async () => {
  const d = await dataDir('warbler-identity-versions-', RELEASE_1)
  try {
    await (await IdentityStore.open(d.dir)).close()
    await withDb(d.file, async (db) => { await db.run("UPDATE schema_versions SET version = 9 WHERE component = 'identity'") })
    const bytes = readFileSync(d.file)
    await assert.rejects(IdentityStore.open(d.dir), (err: unknown) => {
      assert.ok(err instanceof StartError)
      assert.equal(err.exitCode, EXIT.dataDir)
      assert.match(err.message, /identity schema version 9, but this Warbler knows versions up to 3/)
      assert.match(err.message, /Upgrade Warbler/)
      return true
    })
    const cli = spawnSync(process.execPath, [CLI, 'user', 'list', '--data-dir', d.dir], { encoding: 'utf8', timeout: 30_000 })
    assert.equal(cli.status, EXIT.dataDir, cli.stderr)
    assert.match(cli.stderr, /identity schema version 9/)
    assert.ok(readFileSync(d.file).equals(bytes), 'the file is unchanged')
    assert.ok(!existsSync(`${d.file}-wal`))
  } finally { d.done() }
})

test('identity: a failing migration rolls back: the version stays, no column or table of it is left', async () => {
  const d = await dataDir('warbler-identity-versions-', FIRST_LAYOUT)
  try {
    const broken: Migration = { version: IDENTITY_MIGRATIONS.length + 1, what: 'fails half way', up: 'CREATE TABLE half (x INTEGER); INSERT INTO no_such_table VALUES (1)' }
    await withDb(d.file, async (db) => {
      await migrateIdentity(db, { migrations: [IDENTITY_MIGRATIONS[0] as Migration] })
      assert.equal(await version(db), 1)
      await assert.rejects(migrateIdentity(db, { migrations: [...IDENTITY_MIGRATIONS, broken] }), /no_such_table/)
      assert.equal(await version(db), 1)
      assert.ok(!(await columns(db)).includes('service'), 'migration 2 of the failed run is undone too')
      assert.ok(!(await columns(db)).includes('disabled'), 'and migration 3')
      assert.deepEqual(await db.all("SELECT name FROM sqlite_master WHERE name = 'half'"), [])
      assert.equal((await db.get<{ n: number }>('SELECT count(*) AS n FROM users'))?.n, 2)
    })
  } finally { d.done() }
})
