/**
 * Users, device tokens and the signing key shared by nodes with their own
 * data dirs on one Redis (real `warbler start` processes on loopback):
 * a change made with the CLI on either node's data dir is in force on the
 * other within a second; a node started later on an empty data dir takes the
 * others' users and key at start (and makes no admin of its own); a change
 * made on a node's data dir while it was down is pushed when it starts; two
 * nodes seeding an empty Redis at once end with one signing key; and while
 * Redis is down, logins are checked against each node's copy and a change
 * made then reaches the other node once Redis is back; a Redis emptied under
 * running nodes is filled again from their copies; and a record in Redis that
 * is not Warbler's is left alone with a warning.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { loginAnswers } from '../helpers/login-poll.js'
import { Redis } from 'ioredis'
import { startRedis } from '../helpers/redis.js'
import { CLI, connackCode, spawnNode, type SpawnedNode, tempDir, withStore } from '../helpers/test-node.js'

const PW = 'password-123'
const NEW_PW = 'password-456'
/** CONNACK 4: bad user name or password. */
const REFUSED = 4

function cli (dir: string, args: string[], input = ''): string {
  const r = spawnSync(process.execPath, [CLI, ...args, '--data-dir', dir], { input, encoding: 'utf8', timeout: 30_000 })
  assert.equal(r.status, 0, `${args.join(' ')}: exit ${String(r.status)}, stderr: ${r.stderr}`)
  return r.stdout
}

const url = (n: SpawnedNode): string => `mqtt://127.0.0.1:${n.ports.mqtt ?? 0}`
const start = (dir: string, redis: string, bridge: 'embedded' | 'off'): Promise<SpawnedNode> =>
  spawnNode(['--redis', redis, '--bridge', bridge, '--login-failures', '1000000', '--conn-rate', '0'], { dataDir: dir })

test('shared users: changes on either node are in force on the other within a second; a later node catches up at start', async () => {
  const redis = await startRedis()
  const [dirA, dirB] = [tempDir(), tempDir()]
  const nodes: SpawnedNode[] = []
  try {
    const a = await start(dirA, redis.url, 'embedded')
    nodes.push(a)
    assert.ok(existsSync(path.join(dirA, 'initial-admin-password')), 'the first node makes the first admin')
    cli(dirA, ['user', 'add', 'alice', '--password-stdin'], `${PW}\n`)
    const jwt = cli(dirA, ['token', 'create', 'alice', '--ttl', '600']).trim()

    // B starts on an empty data dir after the changes: it has them before its ready line.
    const b = await start(dirB, redis.url, 'off')
    nodes.push(b)
    assert.ok(!existsSync(path.join(dirB, 'initial-admin-password')), 'a joining node makes no admin of its own')
    assert.equal(await connackCode(url(b), { username: 'alice', password: PW, clientId: 'alice' }), 0)
    assert.equal(await connackCode(url(b), { username: 'alice', password: jwt, clientId: 'alice' }), 0, 'a token signed on A is good on B')
    assert.deepEqual(await withStore(dirB, async (s) => await s.jwtKey()), await withStore(dirA, async (s) => await s.jwtKey()))

    // Changes on B reach A within a second.
    cli(dirB, ['user', 'add', 'bob', '--password-stdin'], `${PW}\n`)
    assert.ok(await loginAnswers({ url: url(a), username: 'bob', password: PW }, 0, 1000) <= 1000)
    const created = cli(dirB, ['token', 'create', 'bob', '--device', 'esp32'])
    const device = /token: (\S+)/.exec(created)?.[1] as string
    const id = /id: (\S+)/.exec(created)?.[1] as string
    assert.ok(await loginAnswers({ url: url(a), username: 'bob', password: device }, 0, 1000) <= 1000)
    cli(dirA, ['token', 'revoke', id])
    assert.ok(await loginAnswers({ url: url(b), username: 'bob', password: device }, REFUSED, 1000) <= 1000)
    cli(dirB, ['user', 'passwd', 'alice', '--password-stdin'], `${NEW_PW}\n`)
    assert.ok(await loginAnswers({ url: url(a), username: 'alice', password: PW }, REFUSED, 1000) <= 1000)
    assert.equal(await connackCode(url(a), { username: 'alice', password: NEW_PW, clientId: 'alice' }), 0)
    cli(dirA, ['user', 'remove', 'bob'])
    assert.ok(await loginAnswers({ url: url(b), username: 'bob', password: PW }, REFUSED, 1000) <= 1000)

    // A change made on B's data dir while B is down is pushed when B starts again.
    assert.equal(await b.stop(), 0)
    nodes.pop()
    cli(dirB, ['user', 'add', 'carol', '--password-stdin'], `${PW}\n`)
    const b2 = await start(dirB, redis.url, 'off')
    nodes.push(b2)
    assert.ok(await loginAnswers({ url: url(a), username: 'carol', password: PW }, 0, 1000) <= 1000)
  } finally {
    for (const n of nodes) await n.stop()
    await redis.stop()
    for (const d of [dirA, dirB]) rmSync(d, { recursive: true, force: true })
  }
})

test('shared users: two nodes seeding an empty Redis at once end with one signing key and the users of both', async () => {
  const redis = await startRedis()
  const [dirA, dirB] = [tempDir(), tempDir()]
  const nodes: SpawnedNode[] = []
  try {
    // Each data dir has a user and a key of its own before the nodes ever met.
    cli(dirA, ['user', 'add', 'ann', '--password-stdin'], `${PW}\n`)
    cli(dirB, ['user', 'add', 'ben', '--password-stdin'], `${PW}\n`)
    const started = await Promise.allSettled([start(dirA, redis.url, 'embedded'), start(dirB, redis.url, 'off')])
    for (const s of started) if (s.status === 'fulfilled') nodes.push(s.value)
    for (const s of started) if (s.status === 'rejected') throw s.reason
    const [a, b] = nodes as [SpawnedNode, SpawnedNode]
    for (const n of [a, b]) {
      for (const user of ['ann', 'ben']) await loginAnswers({ url: url(n), username: user, password: PW }, 0, 1000)
    }
    const keyA = await withStore(dirA, async (s) => await s.jwtKey())
    assert.deepEqual(await withStore(dirB, async (s) => await s.jwtKey()), keyA)
    const jwt = cli(dirB, ['token', 'create', 'ann', '--ttl', '600']).trim()
    assert.equal(await connackCode(url(a), { username: 'ann', password: jwt, clientId: 'ann' }), 0)
  } finally {
    for (const n of nodes) await n.stop()
    await redis.stop()
    for (const d of [dirA, dirB]) rmSync(d, { recursive: true, force: true })
  }
})

test('shared users: with Redis down logins are checked against each node\'s copy, and a change made meanwhile reaches the other node once Redis is back', async () => {
  const redis = await startRedis()
  const [dirA, dirB] = [tempDir(), tempDir()]
  const nodes: SpawnedNode[] = []
  try {
    cli(dirA, ['user', 'add', 'dora', '--password-stdin'], `${PW}\n`)
    const a = await start(dirA, redis.url, 'embedded')
    nodes.push(a)
    const b = await start(dirB, redis.url, 'off')
    nodes.push(b)
    assert.equal(await connackCode(url(b), { username: 'dora', password: PW, clientId: 'dora' }), 0)
    await redis.restart({
      whileDown: async () => {
        cli(dirA, ['user', 'add', 'erin', '--password-stdin'], `${PW}\n`)
        // An accepted CONNECT needs its session, which is in Redis: the identity check is local and answers a refusal at once.
        for (const n of [a, b]) assert.equal(await connackCode(url(n), { username: 'dora', password: 'wrong-password', clientId: 'dora' }), REFUSED)
        assert.equal(await connackCode(url(b), { username: 'erin', password: PW, clientId: 'erin' }), REFUSED, 'not yet on the other node')
        assert.equal((await withStore(dirA, async (s) => await s.listUsers())).filter((u) => u.name === 'erin').length, 1, 'kept on its own node')
        // Redis stays down until A has tried to push the change and said it could not (on a
        // loaded machine that can take longer than the checks above).
        const deadline = Date.now() + 15_000
        while (!/identity: cannot merge users and tokens with redis/.test(a.stderr())) {
          if (Date.now() > deadline) assert.fail('node A never said it could not merge with Redis down')
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
      }
    })
    // ioredis retries within 2 s; the merge follows at once.
    await loginAnswers({ url: url(b), username: 'erin', password: PW }, 0, 5000)
    assert.equal(await connackCode(url(a), { username: 'erin', password: PW, clientId: 'erin' }), 0)
  } finally {
    for (const n of nodes) await n.stop()
    await redis.stop()
    for (const d of [dirA, dirB]) rmSync(d, { recursive: true, force: true })
  }
})

test('shared users: a Redis emptied under running nodes is filled again from their copies, and no user is deleted', async () => {
  const redis = await startRedis()
  const [dirA, dirB] = [tempDir(), tempDir()]
  const nodes: SpawnedNode[] = []
  const r = new Redis(redis.url, { lazyConnect: true })
  try {
    cli(dirA, ['user', 'add', 'fay', '--password-stdin'], `${PW}\n`)
    nodes.push(await start(dirA, redis.url, 'embedded'))
    nodes.push(await start(dirB, redis.url, 'off'))
    await r.connect()
    const key = await r.getBuffer('warbler:identity:jwt_key')
    assert.ok(key !== null && key.length === 32)
    // fay made the first admin needless.
    assert.deepEqual(Object.keys(await r.hgetall('warbler:identity:users')), ['fay'])
    await r.flushall()
    // The nodes notice the counter gone within a second and put their records back.
    const deadline = Date.now() + 3000
    while ((await r.hlen('warbler:identity:users')) < 1 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
    assert.deepEqual(Object.keys(await r.hgetall('warbler:identity:users')), ['fay'])
    assert.deepEqual(await r.getBuffer('warbler:identity:jwt_key'), key, 'the same key again')
    for (const n of nodes) assert.equal(await connackCode(url(n), { username: 'fay', password: PW, clientId: 'fay' }), 0)
    // Only hashes in Redis: no password in any record.
    assert.ok(!JSON.stringify(await r.hgetall('warbler:identity:users')).includes(PW))
  } finally {
    r.disconnect()
    for (const n of nodes) await n.stop()
    await redis.stop()
    for (const d of [dirA, dirB]) rmSync(d, { recursive: true, force: true })
  }
})

test('shared users: a record in Redis that is not Warbler\'s is named in a warning, neither applied nor taken for a deletion, and the rest goes on', async () => {
  const redis = await startRedis()
  const [dirA, dirB] = [tempDir(), tempDir()]
  const nodes: SpawnedNode[] = []
  const r = new Redis(redis.url, { lazyConnect: true })
  try {
    cli(dirA, ['user', 'add', 'ivy', '--password-stdin'], `${PW}\n`)
    const a = await start(dirA, redis.url, 'embedded')
    nodes.push(a)
    const b = await start(dirB, redis.url, 'off')
    nodes.push(b)
    await r.connect()
    await r.hset('warbler:identity:users', 'mallory', 'not json', 'ivy', '{"passwordHash":"x"}')
    await r.hset('warbler:identity:tokens', '00000000000000ff', '{"user":"ivy"}')
    cli(dirA, ['user', 'add', 'hal', '--password-stdin'], `${PW}\n`)
    assert.ok(await loginAnswers({ url: url(b), username: 'hal', password: PW }, 0, 1000) <= 1000, 'the other changes still go through')
    for (const n of nodes) {
      assert.equal(await connackCode(url(n), { username: 'ivy', password: PW, clientId: 'ivy' }), 0, 'ivy is neither replaced nor deleted')
      const names = (await withStore(n.dataDir, async (s) => await s.listUsers())).map((u) => u.name)
      assert.deepEqual(names, ['hal', 'ivy'])
      assert.deepEqual(await withStore(n.dataDir, async (s) => await s.listDeviceTokens()), [])
    }
    const warned = (n: SpawnedNode): boolean => n.stderr().split('\n').some((l) => /records in redis that are not Warbler's left alone/.test(l) &&
      ['users:mallory', 'users:ivy', 'tokens:00000000000000ff'].every((k) => l.includes(`"${k}"`)))
    assert.ok(warned(a) || warned(b), `a warning names them:\n${a.stderr()}\n${b.stderr()}`)
  } finally {
    r.disconnect()
    for (const n of nodes) await n.stop()
    await redis.stop()
    for (const d of [dirA, dirB]) rmSync(d, { recursive: true, force: true })
  }
})
