/**
 * The broker keeps no more QoS 1/2 PUBLISHes in flight to an MQTT 5 client
 * than the Receive Maximum of its CONNECT (broker/receive-window.ts): the rest
 * wait in order, QoS 0 passes, acknowledgements (PUBACK, PUBCOMP, a failed
 * PUBREC) let the next go, the waiting ones are bounded by offlineQueue, and a
 * resumed session gets what was left in order under the new window.
 *
 * "Nothing more arrived" is read after a round trip on the subscriber's own
 * connection (PINGREQ, or a QoS 1 publish of its own): every publisher's
 * PUBACK is written once its message is routed to the subscriber, so what the
 * broker wrote to the subscriber before that round trip has arrived by its end.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt, { type MqttClient } from 'mqtt'
import mqttPacket from 'mqtt-packet'
import { connect, startNode, type TestNode } from '../helpers/test-node.js'
import { v5Connect, type V5Conn } from '../helpers/v5-raw.js'

type T = { after: (fn: () => unknown) => void }

async function until (what: string, check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

async function raw (t: T, node: TestNode, connect: Record<string, unknown>): Promise<V5Conn> {
  const c = await v5Connect(node.ports.mqtt as number, connect)
  t.after(() => { c.destroy() })
  assert.equal(c.connack.reasonCode, 0)
  return c
}

async function publisher (t: T, node: TestNode): Promise<MqttClient> {
  const pub = await connect(node.mqttUrl, { clientId: 'pub', protocolVersion: 5 })
  t.after(() => pub.end(true))
  return pub
}

function payloadOf (p: object): string {
  return String((p as { payload?: Buffer }).payload)
}

/** The PUBLISHes the connection received, up to a PINGREQ's answer (taken out of `received`). */
async function publishesSoFar (c: V5Conn): Promise<Array<{ payload: string, messageId: number, dup: boolean }>> {
  c.send({ cmd: 'pingreq' })
  await c.next('pingresp')
  const got: Array<{ payload: string, messageId: number, dup: boolean }> = []
  for (let i = 0; i < c.received.length;) {
    const p = c.received[i] as { cmd: string, payload?: Buffer, messageId?: number, dup?: boolean }
    if (p.cmd !== 'publish') { i++; continue }
    c.received.splice(i, 1)
    got.push({ payload: String(p.payload), messageId: p.messageId ?? 0, dup: p.dup === true })
  }
  return got
}

test('Receive Maximum 2: two QoS 1 messages in flight, the rest in order as PUBACKs come; QoS 0 is not held', { timeout: 30_000 }, async (t) => {
  const node = await startNode(['--dev'])
  t.after(() => node.close())
  const sub = await raw(t, node, { clientId: 'sub', properties: { receiveMaximum: 2 } })
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'room/w', qos: 1 }] })
  assert.deepEqual((await sub.next('suback')).granted, [1])
  const pub = await publisher(t, node)
  for (let i = 1; i <= 5; i++) await pub.publishAsync('room/w', `m${i}`, { qos: 1 })
  const first = await publishesSoFar(sub)
  assert.deepEqual(first.map((p) => p.payload), ['m1', 'm2'])

  // QoS 0 goes past the full window.
  await pub.publishAsync('room/w', 'q0', { qos: 0 })
  await until('the QoS 0 message', () => sub.received.some((p) => p.cmd === 'publish'))
  assert.deepEqual((await publishesSoFar(sub)).map((p) => p.payload), ['q0'])

  // One PUBACK, one more message.
  sub.send({ cmd: 'puback', messageId: first[0]?.messageId })
  const third = await sub.next('publish')
  assert.equal(payloadOf(third), 'm3')
  assert.deepEqual(await publishesSoFar(sub), [])

  // A PUBACK for an id not in flight frees nothing.
  sub.send({ cmd: 'puback', messageId: 60_000 })
  assert.deepEqual(await publishesSoFar(sub), [])

  sub.send({ cmd: 'puback', messageId: first[1]?.messageId })
  sub.send({ cmd: 'puback', messageId: third.messageId })
  await until('m4 and m5', () => sub.received.filter((p) => p.cmd === 'publish').length >= 2)
  assert.deepEqual((await publishesSoFar(sub)).map((p) => p.payload), ['m4', 'm5'])
})

test('Receive Maximum 1 with QoS 2: PUBREC 0 keeps the slot until PUBCOMP; a PUBREC with an error code frees it', { timeout: 30_000 }, async (t) => {
  const node = await startNode(['--dev'])
  t.after(() => node.close())
  const sub = await raw(t, node, { clientId: 'sub2', properties: { receiveMaximum: 1 } })
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'room/q2', qos: 2 }] })
  assert.deepEqual((await sub.next('suback')).granted, [2])
  const pub = await publisher(t, node)
  for (let i = 1; i <= 3; i++) await pub.publishAsync('room/q2', `m${i}`, { qos: 2 })
  const [m1] = await publishesSoFar(sub)
  assert.deepEqual([m1?.payload], ['m1'])
  assert.deepEqual(await publishesSoFar(sub), [])

  sub.send({ cmd: 'pubrec', messageId: m1?.messageId })
  await sub.next('pubrel')
  assert.deepEqual(await publishesSoFar(sub), [], 'PUBREC 0: still in flight until PUBCOMP')
  sub.send({ cmd: 'pubcomp', messageId: m1?.messageId })
  const m2 = await sub.next('publish')
  assert.equal(payloadOf(m2), 'm2')

  sub.send({ cmd: 'pubrec', messageId: m2.messageId, reasonCode: 0x80 })
  const m3 = await sub.next('publish')
  assert.equal(payloadOf(m3), 'm3')
})

test('an mqtt.js MQTT 5 client that answers late never has more than its Receive Maximum unacknowledged, and gets every message in order', { timeout: 30_000 }, async (t) => {
  const node = await startNode(['--dev'])
  t.after(() => node.close())
  const got: string[] = []
  const sub = await mqtt.connectAsync(node.mqttUrl, {
    clientId: 'late',
    protocolVersion: 5,
    reconnectPeriod: 0,
    properties: { receiveMaximum: 2 },
    // Each PUBACK a turn late (mqtt.js reads nothing more meanwhile).
    customHandleAcks: (_topic, message, _packet, done) => { got.push(message.toString()); setImmediate(() => { done(0) }) }
  })
  t.after(() => sub.end(true))
  await sub.subscribeAsync('room/h', { qos: 1 })
  // What the broker wrote, read off the socket as it comes, against the PUBACKs sent.
  let unacknowledged = 0
  let most = 0
  const wire = mqttPacket.parser({ protocolVersion: 5 })
  wire.on('packet', (p) => { if (p.cmd === 'publish') most = Math.max(most, ++unacknowledged) })
  sub.stream.on('data', (d: Buffer) => { wire.parse(d) })
  sub.on('packetsend', (p) => { if (p.cmd === 'puback') unacknowledged-- })
  const pub = await publisher(t, node)
  const n = 200
  await Promise.all(Array.from({ length: n }, (_, i) => pub.publishAsync('room/h', `m${i}`, { qos: 1 })))
  await until('every message', () => got.length === n, 15_000)
  assert.deepEqual(got, Array.from({ length: n }, (_, i) => `m${i}`))
  assert.ok(most <= 2, `at most 2 unacknowledged on the wire, saw ${most}`)
  assert.equal(most, 2)
})

test('a persistent session resumes what its window held back: in order, under the new window, then nothing is left', { timeout: 30_000 }, async (t) => {
  const node = await startNode(['--dev'])
  t.after(() => node.close())
  const session = { clientId: 'resume', clean: false, properties: { receiveMaximum: 2, sessionExpiryInterval: 300 } }
  const sub = await raw(t, node, session)
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'room/r', qos: 1 }] })
  await sub.next('suback')
  const pub = await publisher(t, node)
  for (let i = 1; i <= 5; i++) await pub.publishAsync('room/r', `m${i}`, { qos: 1 })
  assert.deepEqual((await publishesSoFar(sub)).map((p) => p.payload), ['m1', 'm2'])
  sub.destroy()
  await sub.closed
  await until('the disconnect', () => node.broker.connectedClients === 1)

  const back = await raw(t, node, session)
  assert.equal((back.connack as { sessionPresent?: boolean }).sessionPresent, true)
  let pending = await publishesSoFar(back)
  assert.deepEqual(pending.map((p) => [p.payload, p.dup]), [['m1', true], ['m2', true]])
  const seen: string[] = []
  while (pending.length > 0) {
    for (const p of pending) { seen.push(p.payload); back.send({ cmd: 'puback', messageId: p.messageId }) }
    if (seen.length < 5) await until('the next message', () => back.received.some((p) => p.cmd === 'publish'))
    pending = await publishesSoFar(back)
    assert.ok(pending.length <= 2, `at most 2 in flight, got ${pending.length}`)
  }
  assert.deepEqual(seen, ['m1', 'm2', 'm3', 'm4', 'm5'])

  // All acknowledged: a third connection gets nothing, and new messages flow.
  back.destroy()
  await back.closed
  await until('the second disconnect', () => node.broker.connectedClients === 1)
  const again = await raw(t, node, session)
  assert.deepEqual(await publishesSoFar(again), [])
  await pub.publishAsync('room/r', 'live', { qos: 1 })
  assert.equal(payloadOf(await again.next('publish')), 'live')
})

test('what waits for the window is bounded by offlineQueue; the rest is counted as offline_queue_full', { timeout: 30_000 }, async (t) => {
  const node = await startNode(['--dev', '--offline-queue', '3'])
  t.after(() => node.close())
  const sub = await raw(t, node, { clientId: 'bounded', properties: { receiveMaximum: 1 } })
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'room/b', qos: 1 }] })
  await sub.next('suback')
  const pub = await publisher(t, node)
  for (let i = 1; i <= 6; i++) await pub.publishAsync('room/b', `m${i}`, { qos: 1 })
  // 1 in flight, 3 waiting, 2 refused.
  assert.equal(node.stats.refusals.offline_queue_full, 2)
  const seen: string[] = []
  let pending = await publishesSoFar(sub)
  while (pending.length > 0) {
    for (const p of pending) { seen.push(p.payload); sub.send({ cmd: 'puback', messageId: p.messageId }) }
    if (seen.length < 4) await until('the next message', () => sub.received.some((p) => p.cmd === 'publish'))
    pending = await publishesSoFar(sub)
  }
  assert.deepEqual(seen, ['m1', 'm2', 'm3', 'm4'])
})

test('MQTT 3.1.1 clients have no Receive Maximum: every QoS 1 message is sent at once', { timeout: 30_000 }, async (t) => {
  const node = await startNode(['--dev'])
  t.after(() => node.close())
  const held: string[] = []
  const sub = await connect(node.mqttUrl, { clientId: 'v4' })
  t.after(() => sub.end(true))
  sub.on('message', (_t, p) => { held.push(p.toString()) })
  await sub.subscribeAsync('room/v4', { qos: 1 })
  const pub = await publisher(t, node)
  for (let i = 0; i < 5; i++) await pub.publishAsync('room/v4', `m${i}`, { qos: 1 })
  await until('five messages', () => held.length === 5)
})
