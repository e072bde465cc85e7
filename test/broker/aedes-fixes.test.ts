/**
 * The MQTT 5 bugs of aedes 2.0.0-beta.1 that broker/aedes-fixes.ts,
 * subscription-ids.ts and packet-size.ts fix from outside, each as Eclipse
 * Paho's MQTT 5 client tests found it: real MQTT 5 clients (mqtt.js, and
 * packets made by hand where what goes over the wire is the point) against a
 * node in development mode.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { MqttClient } from 'mqtt'
import type { IPublishPacket, Packet } from 'mqtt-packet'
import { v5Connect } from '../helpers/v5-raw.js'
import { connect, startNode, type TestNode } from '../helpers/test-node.js'

type T = { after: (fn: () => unknown) => void }

async function v5 (t: T, node: TestNode, clientId: string): Promise<MqttClient> {
  const c = await connect(node.mqttUrl, { protocolVersion: 5, clientId })
  t.after(() => c.endAsync(true))
  return c
}

/** The next message on `topic`, with the PUBLISH packet as mqtt.js parsed it. */
function nextPacket (c: MqttClient, topic: string, timeoutMs = 5000): Promise<IPublishPacket> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { c.off('message', on); reject(new Error(`no message on ${topic} within ${timeoutMs} ms`)) }, timeoutMs)
    const on = (t: string, _p: Buffer, packet: IPublishPacket): void => {
      if (t !== topic) return
      clearTimeout(timer)
      c.off('message', on)
      resolve(packet)
    }
    c.on('message', on)
  })
}

let node: TestNode
let port: number
before(async () => {
  node = await startNode(['--dev'])
  port = node.ports.mqtt as number
})
after(async () => { await node.close() })

test('a session resumed with Clean Start 0 and no Session Expiry Interval gets its queue, and still ends with the connection', { timeout: 30_000 }, async (t) => {
  const sub = await v5Connect(port, { clientId: 'fix-queue', clean: true, properties: { sessionExpiryInterval: 300 } })
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'fixq/+', qos: 2 }] })
  await sub.next('suback')
  sub.send({ cmd: 'disconnect', reasonCode: 0 })
  await sub.closed

  const pub = await v5(t, node, 'fix-queue-pub')
  await pub.publishAsync('fixq/1', 'one', { qos: 1 })
  await pub.publishAsync('fixq/2', 'two', { qos: 2 })

  const resumed = await v5Connect(port, { clientId: 'fix-queue', clean: false })
  t.after(() => { resumed.destroy() })
  assert.equal((resumed.connack as { sessionPresent: boolean }).sessionPresent, true)
  const got: string[] = []
  for (let i = 0; i < 2; i++) {
    const p = await resumed.next('publish') as IPublishPacket
    got.push(`${p.topic} ${String(p.payload)} qos ${p.qos}`)
    if (p.qos === 1) resumed.send({ cmd: 'puback', messageId: p.messageId })
    else {
      resumed.send({ cmd: 'pubrec', messageId: p.messageId })
      await resumed.next('pubrel')
      resumed.send({ cmd: 'pubcomp', messageId: p.messageId })
    }
  }
  assert.deepEqual(got.sort(), ['fixq/1 one qos 1', 'fixq/2 two qos 2'])
  resumed.send({ cmd: 'disconnect', reasonCode: 0 })
  await resumed.closed

  // Its Session Expiry Interval was 0: the session ended with that connection.
  const again = await v5Connect(port, { clientId: 'fix-queue', clean: false })
  t.after(() => { again.destroy() })
  assert.equal((again.connack as { sessionPresent: boolean }).sessionPresent, false)
})

for (const delay of [0, 1]) {
  test(`a will (Will Delay Interval ${delay}) is published without the Will Delay Interval, with its other properties`, { timeout: 30_000 }, async (t) => {
    const sub = await v5(t, node, `fix-will-sub-${delay}`)
    await sub.subscribeAsync(`fixw/${delay}`, { qos: 1 })
    const arrived = nextPacket(sub, `fixw/${delay}`, 10_000)
    const dying = await v5Connect(port, {
      clientId: `fix-will-${delay}`,
      properties: { sessionExpiryInterval: 10 },
      will: { topic: `fixw/${delay}`, payload: Buffer.from('gone'), qos: 1, retain: false, properties: { willDelayInterval: delay, userProperties: { a: '2' }, contentType: 'text/plain' } }
    })
    dying.destroy()
    const p = await arrived
    assert.equal(String(p.payload), 'gone')
    assert.equal((p.properties as Record<string, unknown> | undefined)?.willDelayInterval, undefined, 'MQTT 5 allows the Will Delay Interval in a CONNECT only')
    assert.deepEqual({ ...p.properties?.userProperties }, { a: '2' })
    assert.equal(p.properties?.contentType, 'text/plain')
  })
}

test('a message matching two subscriptions of a client carries both Subscription Identifiers; one matching carries its own', { timeout: 30_000 }, async (t) => {
  const sub = await v5(t, node, 'fix-si-sub')
  await sub.subscribeAsync('fixs/a', { qos: 1, properties: { subscriptionIdentifier: 2 } })
  await sub.subscribeAsync('fixs/#', { qos: 1, properties: { subscriptionIdentifier: 3 } })
  const pub = await v5(t, node, 'fix-si-pub')
  const both = nextPacket(sub, 'fixs/a')
  await pub.publishAsync('fixs/a', 'x', { qos: 1 })
  const ids = (await both).properties?.subscriptionIdentifier
  assert.deepEqual(Array.isArray(ids) ? [...ids].sort() : ids, [2, 3])
  const one = nextPacket(sub, 'fixs/b')
  await pub.publishAsync('fixs/b', 'y', { qos: 1 })
  assert.equal((await one).properties?.subscriptionIdentifier, 3)
})

test('a PUBLISH larger than the Maximum Packet Size a client gave is not sent to it, nor kept for its session; smaller ones are', { timeout: 30_000 }, async (t) => {
  const connect = { clientId: 'fix-max', properties: { maximumPacketSize: 64, sessionExpiryInterval: 300 } }
  const small = await v5Connect(port, connect)
  t.after(() => { small.destroy() })
  small.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'fixm/t', qos: 1 }] })
  await small.next('suback')
  const pub = await v5(t, node, 'fix-max-pub')
  await pub.publishAsync('fixm/t', 'x'.repeat(100), { qos: 1 })
  await pub.publishAsync('fixm/t', 'y'.repeat(10), { qos: 0 })
  const p = await small.next('publish') as IPublishPacket
  assert.equal(String(p.payload), 'y'.repeat(10))
  assert.deepEqual(small.received.filter((r: Packet) => r.cmd === 'publish' || r.cmd === 'disconnect'), [])
  // The session resumed without a maximum: the large message was not kept to be sent again.
  small.send({ cmd: 'disconnect', reasonCode: 0 })
  await small.closed
  const again = await v5Connect(port, { clientId: 'fix-max', clean: false, properties: { sessionExpiryInterval: 300 } })
  t.after(() => { again.destroy() })
  assert.equal((again.connack as { sessionPresent: boolean }).sessionPresent, true)
  await pub.publishAsync('fixm/t', 'z'.repeat(10), { qos: 1 })
  const q = await again.next('publish') as IPublishPacket
  assert.equal(String(q.payload), 'z'.repeat(10))
})
