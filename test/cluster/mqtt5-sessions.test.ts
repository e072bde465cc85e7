// MQTT 5 sessions on a real `warbler start --workers 2 --redis`: a session's
// expiry and a will's delay hold whichever worker the client reconnects to,
// an expired session leaves Redis, and a delayed will passes the ACL.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { Redis } from 'ioredis'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { startRedis, type RedisServer } from '../helpers/redis.js'
import { addUser, spawnNode, type SpawnedNode, tempDir } from '../helpers/test-node.js'
import { alive, workerPids } from '../helpers/cluster-procs.js'

let redis: RedisServer
let node: SpawnedNode
let url: string
let db: Redis
const open: MqttClient[] = []

before(async () => {
  redis = await startRedis()
  const dataDir = tempDir()
  for (const u of [{ name: 'alice', password: 'alice-pw-1' }, { name: 'bob', password: 'bob-pw-12' }]) await addUser(dataDir, u)
  node = await spawnNode(['--workers', '2', '--redis', redis.url, '--host', '127.0.0.1', '--bridge', 'off',
    '--acl', 'write status/%u/#', '--acl', 'read status/#'], { dataDir })
  url = `mqtt://127.0.0.1:${node.ports.mqtt}`
  db = new Redis(redis.url)
})

after(async () => {
  for (const c of open) await c.endAsync(true).catch(() => {})
  db.disconnect()
  const pids = workerPids(node.stderr())
  await node.stop('SIGKILL')
  for (const pid of pids.values()) if (alive(pid)) process.kill(pid, 'SIGKILL')
  await redis.stop()
})

async function until (what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** Waiting out an interval the broker times (an expiry, a will delay): there is nothing to observe before it. */
async function past (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

interface Conn { client: MqttClient, got: string[], sessionPresent: boolean, worker: number }

function connectedLines (clientId: string): number[] {
  const workers: number[] = []
  for (const line of node.stderr().split('\n')) {
    if (!line.includes('"client connected"') || !line.includes(`"clientId":"${clientId}"`)) continue
    workers.push((JSON.parse(line) as { worker: number }).worker)
  }
  return workers
}

/** An MQTT 5 connection of `user` (its password is `{user}-pw-...`), recording every message, and the worker it landed on. */
async function v5 (user: 'alice' | 'bob', clientId: string, opts: IClientOptions = {}): Promise<Conn> {
  const seen = connectedLines(clientId).length
  const client = mqtt.connect(url, {
    clientId, username: user, password: user === 'alice' ? 'alice-pw-1' : 'bob-pw-12', protocolVersion: 5,
    clean: false, reconnectPeriod: 0, connectTimeout: 5000, ...opts
  })
  open.push(client)
  const got: string[] = []
  client.on('message', (topic, payload) => { got.push(`${topic} ${payload.toString()}`) })
  const sessionPresent = await new Promise<boolean>((resolve, reject) => {
    client.once('connect', (connack) => resolve(connack.sessionPresent))
    client.once('error', reject)
  })
  await until(`the log line of ${clientId}'s connection`, () => connectedLines(clientId).length > seen)
  return { client, got, sessionPresent, worker: connectedLines(clientId).at(-1) as number }
}

/** A connection lost without DISCONNECT, as a dead network does. */
function drop (c: Conn): void {
  c.client.stream.destroy()
  c.client.end(true)
}

test('a session resumed on the other worker within its expiry is not wiped there by the first worker', async () => {
  const expiry = { properties: { sessionExpiryInterval: 2 } }
  const first = await v5('alice', 'alice-resume', expiry)
  await first.client.subscribeAsync('status/alice/resume', { qos: 1 })
  await first.client.endAsync()
  const ended = Date.now()
  const second = await v5('alice', 'alice-resume', expiry)
  assert.equal(second.sessionPresent, true)
  assert.notEqual(second.worker, first.worker, 'the second connection is on the other worker')
  // The first worker's expiry of that session was due 2 s after its connection ended.
  await past(ended + 3000 - Date.now())
  await second.client.endAsync()
  const pub = await v5('alice', 'alice-pub', { clean: true })
  await pub.client.publishAsync('status/alice/resume', 'while away', { qos: 1 })
  const third = await v5('alice', 'alice-resume', expiry)
  assert.equal(third.sessionPresent, true, 'the session outlived the first worker\'s expiry of it')
  await until('the message queued meanwhile', () => third.got.includes('status/alice/resume while away'))
  await third.client.endAsync()
  await pub.client.endAsync()
})

test('an expired session leaves Redis: subscriptions, queue and the messages queued for it', async () => {
  const packets = async (): Promise<number> => (await db.keys('packet:*')).length
  const before = await packets()
  const c = await v5('alice', 'alice-expire', { properties: { sessionExpiryInterval: 1 } })
  await c.client.subscribeAsync('status/alice/expire', { qos: 1 })
  await c.client.endAsync()
  const pub = await v5('alice', 'alice-pub2', { clean: true })
  for (const m of ['a', 'b', 'c']) await pub.client.publishAsync('status/alice/expire', m, { qos: 1 })
  assert.equal(await db.llen('outgoing:alice-expire'), 3, 'queued while the session waits')
  await until('the session and its messages gone from Redis', async () =>
    await db.exists('client:alice-expire', 'outgoing:alice-expire') === 0 && await packets() === before)
    .catch(async (err: Error) => { throw new Error(`${err.message}; left: ${JSON.stringify(await db.keys('*'))}`) })
  const again = await v5('alice', 'alice-expire', { properties: { sessionExpiryInterval: 1 } })
  assert.equal(again.sessionPresent, false)
  await again.client.endAsync()
  await pub.client.endAsync()
})

test('Session Expiry Interval 0: the session ends at disconnect, on every worker', async () => {
  const c = await v5('alice', 'alice-zero')
  await c.client.subscribeAsync('status/alice/zero', { qos: 1 })
  await c.client.endAsync()
  const again = await v5('alice', 'alice-zero')
  assert.notEqual(again.worker, c.worker)
  assert.equal(again.sessionPresent, false)
  assert.equal(await db.exists('client:alice-zero', 'outgoing:alice-zero'), 0, 'nothing of it in Redis')
  await again.client.endAsync()
})

test('a delayed will is not sent when its client reconnected to the other worker within the delay; it is sent once when it does not', async () => {
  const watcher = await v5('bob', 'bob-watch', { clean: true })
  await watcher.client.subscribeAsync('status/#', { qos: 1 })
  const will = (payload: string): IClientOptions => ({
    properties: { sessionExpiryInterval: 30 },
    will: { topic: 'status/alice/will', payload: Buffer.from(payload), qos: 1, retain: false, properties: { willDelayInterval: 2 } }
  })
  const first = await v5('alice', 'alice-will', will('gone 1'))
  drop(first)
  const lost = Date.now()
  const second = await v5('alice', 'alice-will', will('gone 2'))
  assert.notEqual(second.worker, first.worker, 'reconnected on the other worker')
  // The first worker's will was due 2 s after the connection was lost.
  await past(lost + 3000 - Date.now())
  assert.deepEqual(watcher.got, [], 'no will: the client came back within the delay')
  drop(second)
  await until('the second connection\'s will', () => watcher.got.length > 0, 8000)
  // Both workers saw the client go; a second copy would follow within the delay.
  await past(2500)
  assert.deepEqual(watcher.got, ['status/alice/will gone 2'])
  await watcher.client.endAsync()
})

test('a connection taken over on the other worker neither sends its delayed will nor loses the session', async () => {
  const watcher = await v5('bob', 'bob-watch2', { clean: true })
  await watcher.client.subscribeAsync('status/#', { qos: 1 })
  const opts: IClientOptions = {
    properties: { sessionExpiryInterval: 30 },
    will: { topic: 'status/alice/takeover', payload: Buffer.from('gone'), qos: 1, retain: false, properties: { willDelayInterval: 1 } }
  }
  const first = await v5('alice', 'alice-take', opts)
  await first.client.subscribeAsync('status/alice/take', { qos: 1 })
  const second = await v5('alice', 'alice-take', { ...opts, will: undefined })
  assert.notEqual(second.worker, first.worker)
  assert.equal(second.sessionPresent, true)
  await until('the first connection closed by the takeover', () => first.client.disconnected || !first.client.connected)
  const taken = Date.now()
  await past(taken + 2000 - Date.now())
  const pub = await v5('alice', 'alice-pub3', { clean: true })
  await pub.client.publishAsync('status/alice/take', 'still here', { qos: 1 })
  await until('the session on the other worker still subscribed', () => second.got.includes('status/alice/take still here'))
  assert.deepEqual(watcher.got.filter((m) => m.startsWith('status/alice/takeover')), [], 'no will for a session taken over')
  for (const c of [second, pub, watcher]) await c.client.endAsync()
})

test('a delayed will passes the same ACL as a publish: one to a topic its user may not write is dropped', async () => {
  const watcher = await v5('bob', 'bob-watch3', { clean: true })
  await watcher.client.subscribeAsync('status/#', { qos: 1 })
  const delayed = (topic: string): IClientOptions => ({
    properties: { sessionExpiryInterval: 10 },
    will: { topic, payload: Buffer.from('will'), qos: 1, retain: false, properties: { willDelayInterval: 1 } }
  })
  const denied = await v5('alice', 'alice-acl-1', delayed('status/bob/forged'))
  drop(denied)
  const allowed = await v5('alice', 'alice-acl-2', delayed('status/alice/ok'))
  drop(allowed)
  // The allowed will was lost after the denied one: once it is here, the other one had its turn.
  await until('the allowed will', () => watcher.got.includes('status/alice/ok will'))
  assert.deepEqual(watcher.got, ['status/alice/ok will'])
  await watcher.client.endAsync()
})
