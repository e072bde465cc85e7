/**
 * Every configurable limit: hit it, see the refusal the client can read, the
 * counter, and that nobody else is affected.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt, { type MqttClient } from 'mqtt'
import type { IConnackPacket, ISubackPacket } from 'mqtt-packet'
import { collect, connackCode, connect, nextMessage, startNode } from '../helpers/test-node.js'
import mqttPacket from 'mqtt-packet'
import { connectPacket, publishBytes, type RawClient, rawConnect, rawSocket, remainingLength } from '../helpers/raw.js'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function until (cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(10)
  }
}

function closeAll (t: { after: (fn: () => unknown) => void }, ...clients: MqttClient[]): void {
  t.after(() => { for (const c of clients) c.end(true) })
}

/** Reconnect a persistent session, listening from the first byte, and collect for `ms`. */
async function reconnectCollecting (url: string, clientId: string, ms: number): Promise<{ client: MqttClient, got: Array<{ topic: string, payload: Buffer }> }> {
  const client = mqtt.connect(url, { clientId, clean: false, reconnectPeriod: 0, protocolVersion: 4 })
  const got: Array<{ topic: string, payload: Buffer }> = []
  client.on('message', (topic, payload) => { got.push({ topic, payload }) })
  await new Promise<void>((resolve, reject) => { client.once('connect', () => resolve()); client.once('error', reject) })
  await sleep(ms)
  return { client, got }
}

interface Notice { t: string, code: string, message: string, topic?: string, mid?: number, suppressed?: number }

test('maxPayload: an oversized QoS 1 publish is acknowledged, never routed, and answered with payload_too_large', async (t) => {
  const node = await startNode(['--dev', '--max-payload', '1024', '--max-packet', '65536'])
  t.after(() => node.close())
  const other = await connect(node.mqttUrl, { clientId: 'other' })
  const pub = await connect(node.mqttUrl, { clientId: 'big' })
  closeAll(t, other, pub)
  await other.subscribeAsync('room/1', { qos: 1 })
  await pub.subscribeAsync('wb/d/big', { qos: 0 })

  const notice = nextMessage(pub, (topic) => topic === 'wb/d/big')
  const ack = await pub.publishAsync('room/1', Buffer.alloc(1025, 0x61), { qos: 1 })
  const n = JSON.parse((await notice).payload.toString()) as Notice
  assert.equal(n.t, 'error')
  assert.equal(n.code, 'payload_too_large')
  assert.equal(n.topic, 'room/1')
  assert.equal(typeof n.mid, 'number')
  if (ack !== undefined && 'messageId' in ack) assert.equal(n.mid, ack.messageId)
  assert.equal(node.stats.refusals.payload_too_large, 1)
  assert.equal(node.stats.publishDropped, 1)

  // Exactly at the limit passes; the first thing `other` sees is that one, so
  // the oversized publish (sent before it, same publisher) was never routed.
  const first = nextMessage(other)
  await pub.publishAsync('room/1', Buffer.alloc(1024, 0x62), { qos: 1 })
  const got = await first
  assert.equal(got.payload.length, 1024)
  assert.equal(got.payload[0], 0x62)
  assert.equal(node.stats.refusals.payload_too_large, 1)
})

test('maxPacket: a packet declaring a huge remaining length closes only its connection, before any body', async (t) => {
  const node = await startNode(['--dev', '--max-payload', '1024', '--max-packet', '4096'])
  t.after(() => node.close())
  const sub = await connect(node.mqttUrl, { clientId: 'sub' })
  const pub = await connect(node.mqttUrl, { clientId: 'pub' })
  closeAll(t, sub, pub)
  await sub.subscribeAsync('room/2', { qos: 1 })

  const raw = await rawConnect(node.ports.mqtt as number, { clientId: 'huge' })
  t.after(() => raw.destroy())
  // Only the fixed header of a 100 MB PUBLISH: the body never comes.
  raw.send(Buffer.concat([Buffer.from([0x30]), remainingLength(100 * 1024 * 1024)]))
  await raw.closed
  assert.equal(node.stats.refusals.packet_too_large, 1)

  // A packet just above the limit, sent whole, is refused the same way.
  const raw2 = await rawConnect(node.ports.mqtt as number, { clientId: 'huge2' })
  t.after(() => raw2.destroy())
  raw2.send(Buffer.concat([Buffer.from([0x30]), remainingLength(4097), Buffer.alloc(4097, 0)]))
  await raw2.closed
  assert.equal(node.stats.refusals.packet_too_large, 2)

  const got = nextMessage(sub)
  await pub.publishAsync('room/2', 'still here', { qos: 1 })
  assert.equal((await got).payload.toString(), 'still here')
  assert.ok(sub.connected && pub.connected)
})

test('publishRate/publishBurst: a flood is cut to the allowed rate, refused with rate-limited rate_limited notices', async (t) => {
  const rate = 20
  const burst = 10
  const node = await startNode(['--dev', '--publish-rate', String(rate), '--publish-burst', String(burst)])
  t.after(() => node.close())
  const sub = await connect(node.mqttUrl, { clientId: 'sub' })
  const flood = await connect(node.mqttUrl, { clientId: 'flood' })
  const calm = await connect(node.mqttUrl, { clientId: 'calm' })
  closeAll(t, sub, flood, calm)
  await sub.subscribeAsync('room/3', { qos: 1 })
  await flood.subscribeAsync('wb/d/flood', { qos: 0 })

  const notices: Notice[] = []
  flood.on('message', (topic, payload) => { if (topic === 'wb/d/flood') notices.push(JSON.parse(payload.toString()) as Notice) })
  const routed: string[] = []
  sub.on('message', (_topic, payload) => { routed.push(payload.toString()) })

  const total = 300
  const started = Date.now()
  await Promise.all(Array.from({ length: total }, (_, i) => flood.publishAsync('room/3', `m${i}`, { qos: 1 })))
  const elapsed = (Date.now() - started) / 1000
  // Another client's bucket is its own.
  await calm.publishAsync('room/3', 'calm', { qos: 1 })
  await until(() => routed.includes('calm'), 5000, 'the calm message')

  const fromFlood = routed.filter((m) => m !== 'calm')
  const allowed = burst + Math.ceil(rate * elapsed) + 1
  assert.ok(fromFlood.length >= burst, `at least the burst is routed (${fromFlood.length})`)
  assert.ok(fromFlood.length <= allowed, `routed ${fromFlood.length}, allowed at most ${allowed} in ${elapsed}s`)
  assert.equal(node.stats.refusals.rate_limited, total - fromFlood.length)
  assert.ok(node.stats.publishDropped >= node.stats.refusals.rate_limited)

  await sleep(150)
  assert.ok(notices.length >= 1)
  for (const n of notices) {
    assert.equal(n.code, 'rate_limited')
    assert.equal(n.topic, 'room/3')
  }
  // The notices are rate-limited too: far fewer than the refusals.
  assert.ok(notices.length < node.stats.refusals.rate_limited / 4, `${notices.length} notices for ${node.stats.refusals.rate_limited} refusals`)
})

test('maxConnections: past the limit CONNACK 3, counted; a freed slot is usable again', async (t) => {
  const node = await startNode(['--dev', '--max-connections', '3'])
  t.after(() => node.close())
  const clients = [await connect(node.mqttUrl), await connect(node.mqttUrl), await connect(node.mqttUrl)]
  closeAll(t, ...clients)
  assert.equal(await connackCode(node.mqttUrl), 3)
  assert.equal(node.stats.refusals.connection_limit, 1)
  await (clients[0] as MqttClient).endAsync()
  await until(() => node.broker.connectedClients < 3, 5000, 'the disconnect')
  assert.equal(await connackCode(node.mqttUrl), 0)
})

test('connRate/connBurst: per source address; another address is unaffected', async (t) => {
  const node = await startNode(['--dev', '--conn-rate', '1', '--conn-burst', '3'])
  t.after(() => node.close())
  for (let i = 0; i < 3; i++) assert.equal(await connackCode(node.mqttUrl), 0)
  assert.equal(await connackCode(node.mqttUrl), 3)
  assert.equal(node.stats.refusals.connection_rate, 1)
  // 127.0.0.2 is another source address on loopback, with its own bucket.
  const other = await rawConnect(node.ports.mqtt as number, { localAddress: '127.0.0.2', clientId: 'elsewhere' })
  t.after(() => other.destroy())
  assert.equal(other.socket.localAddress, '127.0.0.2')
  const raw = await rawSocket(node.ports.mqtt as number)
  t.after(() => raw.destroy())
  raw.send(connectPacket({ clientId: 'again' }))
  const ack = await raw.next((p) => p.cmd === 'connack') as IConnackPacket
  assert.equal(ack.returnCode, 3)
  assert.equal(node.stats.refusals.connection_rate, 2)
})

let nextMid = 1
/** SUBSCRIBE on a raw connection; the granted codes of its SUBACK. */
async function subscribeRaw (raw: RawClient, filters: string[], qos: 0 | 1 = 1): Promise<number[]> {
  const messageId = nextMid++
  raw.send({ cmd: 'subscribe', messageId, subscriptions: filters.map((topic) => ({ topic, qos })) })
  const suback = await raw.next((p) => p.cmd === 'suback' && p.messageId === messageId) as ISubackPacket
  return suback.granted as number[]
}

test('maxSubscriptions: SUBACK 0x80 past the limit, also within one SUBSCRIBE of a persistent session', async (t) => {
  const node = await startNode(['--dev', '--max-subscriptions', '3'])
  t.after(() => node.close())
  const c = await rawConnect(node.ports.mqtt as number, { clientId: 'subs' })
  t.after(() => c.destroy())
  assert.deepEqual(await subscribeRaw(c, ['a/1', 'a/2', 'a/3']), [1, 1, 1])
  assert.deepEqual(await subscribeRaw(c, ['a/4']), [128])
  // Subscribing again to a filter it holds is not a new subscription.
  assert.deepEqual(await subscribeRaw(c, ['a/2'], 0), [0])
  assert.equal(node.stats.refusals.too_many_subscriptions, 1)

  // A persistent session stores subscriptions asynchronously: one SUBSCRIBE
  // with many filters must not slip past the limit.
  const raw = await rawConnect(node.ports.mqtt as number, { clientId: 'persist', clean: false })
  t.after(() => raw.destroy())
  assert.deepEqual(await subscribeRaw(raw, ['p/1', 'p/2', 'p/3', 'p/4', 'p/5']), [1, 1, 1, 128, 128])
  // Nor several SUBSCRIBEs in one write.
  const raw2 = await rawConnect(node.ports.mqtt as number, { clientId: 'persist2', clean: false })
  t.after(() => raw2.destroy())
  raw2.socket.write(Buffer.concat(['q/1', 'q/2', 'q/3', 'q/4', 'q/5'].map((topic, i) =>
    mqttPacket.generate({ cmd: 'subscribe', messageId: 100 + i, subscriptions: [{ topic, qos: 1 }] }))))
  const grants: number[] = []
  for (let i = 0; i < 5; i++) grants.push(...((await raw2.next((p) => p.cmd === 'suback' && p.messageId === 100 + i)) as ISubackPacket).granted as number[])
  assert.deepEqual(grants, [1, 1, 1, 128, 128])
  // Later SUBSCRIBEs see all three.
  assert.deepEqual(await subscribeRaw(raw, ['p/6']), [128])
  // Unsubscribing frees a slot.
  raw.send({ cmd: 'unsubscribe', messageId: 9, unsubscriptions: ['p/1'] })
  await raw.next((p) => p.cmd === 'unsuback')
  assert.deepEqual(await subscribeRaw(raw, ['p/7']), [1])
  assert.equal(node.stats.refusals.too_many_subscriptions, 1 + 2 + 2 + 1)
})

test('maxTopicLevels: a deep filter gets SUBACK 0x80; a deep publish is not routed; nobody else is affected', async (t) => {
  const node = await startNode(['--dev', '--max-topic-levels', '4'])
  t.after(() => node.close())
  const sub = await connect(node.mqttUrl, { clientId: 'deep' })
  const pub = await connect(node.mqttUrl, { clientId: 'pub' })
  closeAll(t, sub, pub)
  await sub.subscribeAsync('a/#', { qos: 1 })
  const raw = await rawConnect(node.ports.mqtt as number, { clientId: 'deepsub' })
  t.after(() => raw.destroy())
  assert.deepEqual(await subscribeRaw(raw, ['a/b/c/d', 'a/b/c/d/e', 'a/+/c/d/#']), [1, 128, 128])
  assert.ok(!raw.isClosed())
  assert.equal(node.stats.refusals.subscribe_denied, 2)

  // 5 levels: over our limit, refused with a notice like any publish it may
  // not make; 150 levels: over aedes' hard ceiling (its matcher would throw),
  // the connection is closed. Neither is routed, nothing crashes.
  const deep = await connect(node.mqttUrl, { clientId: 'deeppub' })
  closeAll(t, deep)
  await deep.subscribeAsync('wb/d/deeppub', { qos: 0 })
  const seen = collect(sub, 300)
  const notice = nextMessage(deep, (topic) => topic === 'wb/d/deeppub')
  await deep.publishAsync('a/b/c/d/e', 'too deep', { qos: 1 })
  const n = JSON.parse((await notice).payload.toString()) as Notice
  assert.equal(n.code, 'not_authorized')
  assert.equal(n.topic, 'a/b/c/d/e')
  assert.match(n.message, /levels/)
  const deeper = await rawConnect(node.ports.mqtt as number, { clientId: 'deeper' })
  t.after(() => deeper.destroy())
  deeper.send(publishBytes(Array.from({ length: 150 }, () => 'a').join('/'), 'far too deep', 1))
  await deeper.closed
  const messages = await seen
  assert.deepEqual(messages.filter((m) => m.payload.toString().includes('deep')), [])
  const got = nextMessage(sub)
  await pub.publishAsync('a/b/c/d', 'ok', { qos: 1 })
  assert.equal((await got).payload.toString(), 'ok')
})

test('offlineQueue: a persistent session gets at most offlineQueue messages; the rest is counted', async (t) => {
  const limit = 5
  const node = await startNode(['--dev', '--offline-queue', String(limit)])
  t.after(() => node.close())
  const away = await connect(node.mqttUrl, { clientId: 'away', clean: false })
  await away.subscribeAsync('room/q', { qos: 1 })
  await away.endAsync()
  await until(() => node.broker.connectedClients === 0, 5000, 'the disconnect')

  const pub = await connect(node.mqttUrl, { clientId: 'pub' })
  closeAll(t, pub)
  for (let i = 0; i < limit + 3; i++) await pub.publishAsync('room/q', `m${i}`, { qos: 1 })
  assert.equal(node.stats.refusals.offline_queue_full, 3)

  const { client: back, got } = await reconnectCollecting(node.mqttUrl, 'away', 500)
  closeAll(t, back)
  assert.deepEqual(got.map((m) => m.payload.toString()), ['m0', 'm1', 'm2', 'm3', 'm4'])

  // Delivered and acknowledged: the queue is empty again and takes new ones.
  const next = nextMessage(back)
  await pub.publishAsync('room/q', 'live', { qos: 1 })
  assert.equal((await next).payload.toString(), 'live')
  await back.endAsync()
  await until(() => node.broker.connectedClients === 1, 5000, 'the second disconnect')
  for (let i = 0; i < limit; i++) await pub.publishAsync('room/q', `n${i}`, { qos: 1 })
  assert.equal(node.stats.refusals.offline_queue_full, 3)
  const { client: again, got: got2 } = await reconnectCollecting(node.mqttUrl, 'away', 500)
  closeAll(t, again)
  assert.deepEqual(got2.map((m) => m.payload.toString()), ['n0', 'n1', 'n2', 'n3', 'n4'])

  // Online, a burst larger than the bound (more unacknowledged messages than
  // it may queue) is still delivered live, and the session stays connected.
  const before = node.stats.refusals.offline_queue_full
  const burst: string[] = []
  again.on('message', (_t, p) => { burst.push(p.toString()) })
  await Promise.all(Array.from({ length: 30 }, (_, i) => pub.publishAsync('room/q', `b${i}`, { qos: 1 })))
  await until(() => burst.length >= 30, 5000, 'the burst')
  assert.deepEqual(burst, Array.from({ length: 30 }, (_, i) => `b${i}`))
  assert.ok(again.connected)
  assert.ok(node.stats.refusals.offline_queue_full > before, 'the part past the bound was not queued')
})

test('a message not forwarded to a persistent session (ACL) never takes another message out of its queue', async (t) => {
  // In development mode an anonymous client may subscribe to '#', but chat
  // topics of a user are never forwarded to it: each such message is
  // queued for its persistent session and then not forwarded.
  const node = await startNode(['--dev', '--publish-rate', '0'], { users: [{ name: 'bob', password: 'bob-password-1' }] })
  t.after(() => node.close())
  const port = node.ports.mqtt as number
  const p = await rawConnect(port, { clientId: 'p', clean: false })
  t.after(() => p.destroy())
  assert.deepEqual(await subscribeRaw(p, ['#']), [1])
  const x = await connect(node.mqttUrl, { clientId: 'x' })
  const bob = await connect(node.mqttUrl, { clientId: 'bob', username: 'bob', password: 'bob-password-1' })
  closeAll(t, x, bob)
  const n = 50
  await Promise.all(Array.from({ length: n }, async (_, i) => {
    await Promise.all([
      x.publishAsync('room/a', `m${i}`, { qos: 1 }),
      bob.publishAsync('wb/u/bob/out', JSON.stringify({ t: 'msg', i }), { qos: 1 })
    ])
  }))
  const live = (c: RawClient): string[] => c.received.flatMap((q) => q.cmd === 'publish' ? [q.payload.toString()] : [])
  await until(() => live(p).length >= n, 5000, 'the live messages')
  assert.ok(!p.isClosed())
  assert.deepEqual(live(p).sort(), Array.from({ length: n }, (_, i) => `m${i}`).sort())

  // p never acknowledged anything: all of them come again, and only them.
  p.destroy()
  await until(() => node.broker.connectedClients === 2, 5000, 'the disconnect')
  const again = await rawConnect(port, { clientId: 'p', clean: false })
  t.after(() => again.destroy())
  await until(() => live(again).length >= n, 5000, 'the replay')
  await sleep(100)
  assert.deepEqual(live(again).sort(), Array.from({ length: n }, (_, i) => `m${i}`).sort())
})
