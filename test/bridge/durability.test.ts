// The durability setting: `power` runs the archive writer's SQLite connection
// with synchronous=FULL (the WAL is synced at every batch commit, before the
// batch is acknowledged); `process`, the default, keeps synchronous=NORMAL.
// Checked on the real connection of a running node; bad values are refused
// at start with a message naming the setting.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ConfigError, resolveConfig } from '../../shared/config.js'
import { spawnNode, startNode } from '../helpers/test-node.js'

/** What SQLite reports for PRAGMA synchronous. */
const NORMAL = 1
const FULL = 2

test('--durability power: the archive writer connection runs synchronous=FULL', async (t) => {
  const node = await startNode(['--dev', '--durability', 'power'])
  t.after(() => node.close())
  assert.ok(node.service !== null)
  assert.equal(await node.service.writerSynchronous(), FULL)
})

test('by default (durability process) the archive writer connection runs synchronous=NORMAL', async (t) => {
  const node = await startNode(['--dev'])
  t.after(() => node.close())
  assert.ok(node.service !== null)
  assert.equal(await node.service.writerSynchronous(), NORMAL)
})

test('a bad durability value is refused with a ConfigError naming the setting', () => {
  for (const [argv, env] of [[['--durability', 'disk'], {}], [[], { WARBLER_DURABILITY: 'FULL' }]] as const) {
    assert.throws(() => resolveConfig([...argv], env), (err: unknown) => {
      assert.ok(err instanceof ConfigError)
      assert.equal(err.field, 'durability')
      assert.match(err.message, /durability: expected one of process, power/)
      return true
    })
  }
  assert.equal(resolveConfig([], { WARBLER_DURABILITY: 'power' }).durability, 'power')
  assert.equal(resolveConfig([], {}).durability, 'process')
})

test('warbler start --durability with a bad value exits before ready, naming durability', async () => {
  await assert.rejects(spawnNode(['--dev', '--durability', 'sometimes'], { timeoutMs: 5000 }), /exited with 2 before ready[\s\S]*durability/)
})
