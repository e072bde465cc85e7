/**
 * What the service's Message Expiry Intervals rely on: aedes (2.0.0-beta.1)
 * drops a message whose expiry passed while it waited in an offline
 * session's queue, and tells the remaining lifetime of one that did not.
 * Published the way the embedded service publishes (bridge/transport.ts),
 * at QoS 1 so that the broker queues it at all (QoS 0 notices are never
 * queued for an offline session).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt, { type IPublishPacket } from 'mqtt'
import { embeddedTransport } from '../../bridge/transport.js'
import { connect, startNode } from '../helpers/test-node.js'

const PW = 'password-123'

test('a queued message whose Message Expiry Interval passed is not delivered at reconnect; one within it is, with what is left of it', async (t) => {
  const node = await startNode([], { users: [{ name: 'bob', password: PW }] })
  t.after(() => node.close())
  const session = { clientId: 'bob-q', username: 'bob', password: PW, protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 600 } }
  const first = await connect(node.mqttUrl, session)
  await first.subscribeAsync('wb/u/bob/inbox', { qos: 1 })
  await first.endAsync()
  const { publish } = embeddedTransport(node.broker, () => false)
  await publish('wb/u/bob/inbox', Buffer.from('{"t":"short"}'), 1, { messageExpiryInterval: 1 })
  const sentAt = Date.now()
  await publish('wb/u/bob/inbox', Buffer.from('{"t":"long"}'), 1, { messageExpiryInterval: 600 })
  await publish('wb/u/bob/inbox', Buffer.from('{"t":"forever"}'), 1)
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, sentAt + 1500 - Date.now())))
  const again = mqtt.connect(node.mqttUrl, { ...session, reconnectPeriod: 0 })
  t.after(() => again.endAsync(true))
  const got: IPublishPacket[] = []
  again.on('message', (_topic, _payload, packet) => { got.push(packet) })
  const end = Date.now() + 5000
  while (got.length < 2 && Date.now() < end) await new Promise((resolve) => setTimeout(resolve, 10))
  // The last one queued has arrived: everything before it was replayed by then.
  assert.deepEqual(got.map((p) => p.payload.toString()), ['{"t":"long"}', '{"t":"forever"}'])
  const left = got[0]?.properties?.messageExpiryInterval ?? 0
  assert.ok(left > 590 && left <= 600, `remaining expiry ${left}`)
  assert.equal(got[1]?.properties?.messageExpiryInterval, undefined)
})
