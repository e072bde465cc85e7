// Two brokers on one Redis (as two workers or two nodes are): routing is
// shared, and a client id that connects to the second takes its session
// over from the first (aedes' `$SYS/{id}/new/clients` notice through Redis).
// The tests with plain clients run with MQTT 3.1.1 and with MQTT 5.
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import mqtt, { type MqttClient } from 'mqtt'
import { ChatClient } from '../helpers/chat-client.js'
import { alive, workerPids } from '../helpers/cluster-procs.js'
import { startRedis } from '../helpers/redis.js'
import { connect, spawnNode, startNode } from '../helpers/test-node.js'
import { v5Connect, type V5Conn } from '../helpers/v5-raw.js'

async function until (what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/**
 * Connect and record every message, listening before CONNACK (queued messages follow it at once).
 * With MQTT 5 a persistent session (clean false) asks a Session Expiry Interval: without one it would end with the connection.
 */
async function recording (url: string, clientId: string, protocolVersion: 4 | 5, clean = false): Promise<{ client: MqttClient, got: string[] }> {
  const kept = protocolVersion === 5 && !clean ? { properties: { sessionExpiryInterval: 3600 } } : {}
  const client = mqtt.connect(url, { clientId, clean, reconnectPeriod: 0, connectTimeout: 5000, protocolVersion, ...kept })
  const got: string[] = []
  client.on('message', (topic, payload) => { got.push(`${topic} ${payload.toString()}`) })
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve())
    client.once('error', reject)
  })
  return { client, got }
}

const PROTOCOLS = [4, 5] as const
const named = (v: 4 | 5, what: string): string => `MQTT ${v === 5 ? '5' : '3.1.1'}: ${what}`

for (const v of PROTOCOLS) test(named(v, 'two brokers on one Redis: messages cross, and a client id connecting to the second takes its session over'), async (t) => { await crossAndTakeOver(t, v) })

async function crossAndTakeOver (t: TestContext, protocolVersion: 4 | 5): Promise<void> {
  // Cleanup in reverse order (clients, then brokers, then Redis).
  const undo: Array<() => unknown> = []
  t.after(async () => { for (const fn of undo.reverse()) await fn() })
  const redis = await startRedis()
  undo.push(() => redis.stop())
  // --bridge off: this is about MQTT sessions; one message service per Redis is the rule.
  const args = ['--dev', '--redis', redis.url, '--bridge', 'off']
  const a = await startNode(args)
  undo.push(() => a.close())
  const b = await startNode(args)
  undo.push(() => b.close())

  // Routing is shared: a subscriber on A gets what is published on B.
  const { client: sub, got: first } = await recording(a.mqttUrl, 'dev-1', protocolVersion)
  undo.push(() => sub.end(true))
  let firstClosed = false
  sub.on('close', () => { firstClosed = true })
  await sub.subscribeAsync('room/1', { qos: 1 })
  const pub = await connect(b.mqttUrl, { clientId: 'pub', protocolVersion })
  undo.push(() => pub.end(true))
  await pub.publishAsync('room/1', 'one', { qos: 1 })
  await until('the message published on B reaches A', () => first.length === 1)

  // The same client id on B: A closes its connection, B resumes the session (its subscription).
  const { client: again, got: second } = await recording(b.mqttUrl, 'dev-1', protocolVersion)
  undo.push(() => again.end(true))
  await until('A closed the first connection', () => firstClosed)
  assert.equal(a.broker.connectedClients, 0)
  await pub.publishAsync('room/1', 'two', { qos: 1 })
  await until('the session on B gets the next message', () => second.length === 1)
  assert.deepEqual(second, ['room/1 two'])
  assert.deepEqual(first, ['room/1 one'], 'nothing more on the old connection')

  // Offline: what is published meanwhile is queued in Redis and handed over wherever it reconnects.
  await again.endAsync()
  for (const m of ['three', 'four']) await pub.publishAsync('room/1', m, { qos: 1 })
  // The live copies are still crossing Redis after the PUBACKs: let them pass
  // (nobody on A listens), else one may overtake the queue on reconnect.
  await new Promise((resolve) => setTimeout(resolve, 300))
  const { client: back, got: third } = await recording(a.mqttUrl, 'dev-1', protocolVersion)
  undo.push(() => back.end(true))
  // QoS 1 is at least once: a copy still on its way through Redis when the
  // session resumes would be delivered live too (the SDK drops duplicates by id).
  await until('the queued messages, on A', () => new Set(third).size === 2)
  assert.deepEqual([...new Set(third)], ['room/1 three', 'room/1 four'])
}

test('a message service that starts after clients connected to another broker knows they are online', async (t) => {
  const undo: Array<() => unknown> = []
  t.after(async () => { for (const fn of undo.reverse()) await fn() })
  const redis = await startRedis()
  undo.push(() => redis.stop())
  const users = [{ name: 'alice', password: 'alice-pw-1' }, { name: 'bob', password: 'bob-pw-12' }]
  const a = await startNode(['--redis', redis.url, '--bridge', 'off'], { users })
  undo.push(() => a.close())
  const alice = await ChatClient.connect(a.mqttUrl, 'alice', 'alice-pw-1')
  undo.push(() => alice.close())
  // The service's broker starts now: it missed alice's connect notice.
  const b = await startNode(['--redis', redis.url], { users })
  undo.push(() => b.close())
  const bob = await ChatClient.connect(b.mqttUrl, 'bob', 'bob-pw-12')
  undo.push(() => bob.close())
  const online = async (): Promise<boolean> => (await bob.req<{ users: Array<{ online: boolean }> }>('presence', { users: ['alice'] })).users[0]?.online === true
  const deadline = Date.now() + 5000
  while (!await online()) {
    if (Date.now() > deadline) assert.fail('alice, connected to the other broker, is not online for the new service')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  // And her disconnect from the other broker reaches it.
  await alice.close()
  const until2 = Date.now() + 5000
  while (await online()) {
    if (Date.now() > until2) assert.fail('alice still online after she left')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
})

for (const v of PROTOCOLS) test(named(v, 'Redis hung under two brokers: each still delivers to its own clients at once; messages between them resume when Redis does'), async (t) => { await redisHung(t, v) })

async function redisHung (t: TestContext, protocolVersion: 4 | 5): Promise<void> {
  const undo: Array<() => unknown> = []
  t.after(async () => { for (const fn of undo.reverse()) await fn() })
  const redis = await startRedis()
  undo.push(() => redis.stop())
  undo.push(() => { try { process.kill(redis.pid, 'SIGCONT') } catch { /* already gone */ } })
  // MQTT 5 publishers are held to the Receive Maximum (maxInflightInbound): one
  // with more PUBACKs outstanding is disconnected (0x93), and mqtt.js does not
  // keep to the server's; all 1,500 below are outstanding while Redis hangs.
  const args = ['--dev', '--redis', redis.url, '--bridge', 'off', '--publish-rate', '0', '--max-inflight-inbound', '2000']
  const a = await startNode(args)
  undo.push(() => a.close())
  const b = await startNode(args)
  undo.push(() => b.close())
  // Clean sessions: a persistent one's QoS 1 messages are queued in Redis first (the persistence).
  const { client: onA, got: gotA } = await recording(a.mqttUrl, 'sub-a', protocolVersion, true)
  undo.push(() => onA.end(true))
  const { client: onB, got: gotB } = await recording(b.mqttUrl, 'sub-b', protocolVersion, true)
  undo.push(() => onB.end(true))
  await onA.subscribeAsync('room/#', { qos: 1 })
  await onB.subscribeAsync('room/#', { qos: 1 })
  const pub = await connect(a.mqttUrl, { clientId: 'pub-a', protocolVersion })
  undo.push(() => pub.end(true))
  await pub.publishAsync('room/x', 'before', { qos: 1 })
  await until('both brokers deliver', () => gotA.length === 1 && gotB.length === 1)

  // More publishes than the routing lets wait for Redis (1,000): past them
  // publishers are held for Redis, until the breaker opens after 1 s.
  process.kill(redis.pid, 'SIGSTOP')
  const n = 1500
  const t0 = Date.now()
  await Promise.all(Array.from({ length: n }, (_, i) => pub.publishAsync('room/x', `hung ${i}`, { qos: 1 })))
  const took = Date.now() - t0
  await until('A delivers to its own client while Redis is hung', () => gotA.length === n + 1)
  assert.ok(took < 5000, `${n} publishes took ${took} ms with Redis hung (the breaker releases publishers after 1 s)`)

  process.kill(redis.pid, 'SIGCONT')
  // The breaker closes once Redis answers again: publishes cross again.
  const deadline = Date.now() + 10_000
  for (let i = 0; !gotB.some((m) => m.startsWith('room/x after')); i++) {
    if (Date.now() > deadline) assert.fail(`nothing reached B after Redis came back (B got ${JSON.stringify(gotB)})`)
    await pub.publishAsync('room/x', `after ${i}`, { qos: 1 })
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}

test('an MQTT 5 client taken over by a connection to another node on the same Redis is told DISCONNECT 0x8E first', async (t) => {
  const undo: Array<() => unknown> = []
  t.after(async () => { for (const fn of undo.reverse()) await fn() })
  const redis = await startRedis()
  undo.push(() => redis.stop())
  const args = ['--dev', '--redis', redis.url, '--bridge', 'off']
  const a = await startNode(args)
  undo.push(() => a.close())
  const b = await startNode(args)
  undo.push(() => b.close())
  const first = await v5Connect(a.ports.mqtt as number, { clientId: 'dev-5', clean: false, properties: { sessionExpiryInterval: 60 } })
  undo.push(() => { first.destroy() })
  const second = await v5Connect(b.ports.mqtt as number, { clientId: 'dev-5', clean: false, properties: { sessionExpiryInterval: 60 } })
  undo.push(() => { second.destroy() })
  assert.equal(second.connack.reasonCode, 0)
  const said = await first.next('disconnect')
  assert.equal(said.reasonCode, 0x8E)
  assert.match(String(said.properties?.reasonString), /another broker/)
  await first.closed
  await until('A let the first connection go', () => a.broker.connectedClients === 0)
})

/** The worker each MQTT connection of `clientId` was taken by, in order, from the workers' "client connected" lines. */
function workersOf (stderr: string, clientId: string): number[] {
  const out: number[] = []
  for (const line of stderr.split('\n')) {
    if (!line.includes('"client connected"')) continue
    const j = JSON.parse(line) as { clientId?: string, worker?: number }
    if (j.clientId === clientId && j.worker !== undefined) out.push(j.worker)
  }
  return out
}

test('warbler start --workers 2 --redis: an MQTT 5 client id connecting again is told DISCONNECT 0x8E on its old connection, on the same worker or the other', { timeout: 60_000 }, async (t) => {
  const undo: Array<() => unknown> = []
  t.after(async () => { for (const fn of undo.reverse()) await fn() })
  const redis = await startRedis()
  undo.push(() => redis.stop())
  const node = await spawnNode(['--dev', '--workers', '2', '--redis', redis.url, '--host', '127.0.0.1'])
  undo.push(() => node.stop('SIGKILL'))
  const pids = workerPids(node.stderr())
  undo.push(() => { for (const pid of pids.values()) if (alive(pid)) process.kill(pid, 'SIGKILL') })
  const port = node.ports.mqtt as number
  const connect5 = async (): Promise<V5Conn> => {
    const c = await v5Connect(port, { clientId: 'dev-w', clean: false, properties: { sessionExpiryInterval: 60 } })
    undo.push(() => { c.destroy() })
    assert.equal(c.connack.reasonCode, 0)
    return c
  }
  // Connections go to the workers in turn; each new one takes the session over
  // from the one before, until one did so from the other worker.
  let older = await connect5()
  await until('the first connection is logged', () => workersOf(node.stderr(), 'dev-w').length === 1, 10_000)
  let across = 0
  for (let i = 2; i <= 6 && across === 0; i++) {
    const newer = await connect5()
    await until('the connection is logged', () => workersOf(node.stderr(), 'dev-w').length === i, 10_000)
    const [was, is] = workersOf(node.stderr(), 'dev-w').slice(-2)
    const said = await older.next('disconnect', 10_000)
    assert.equal(said.reasonCode, 0x8E, `takeover from worker ${String(was)} to ${String(is)}`)
    if (was !== is) across++
    older = newer
  }
  assert.equal(across, 1, 'a connection on the other worker took the session over')
})
