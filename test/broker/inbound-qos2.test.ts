/**
 * The inbound QoS 2 store is bounded per client id (maxInflightInbound) and
 * emptied when a clean session ends, as aedes 1.2 did and aedes
 * 2.0.0-beta.1 no longer does: raw MQTT clients sending QoS 2 PUBLISH
 * without PUBREL, against the in-memory persistence and a real Redis.
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { type TestContext, test } from 'node:test'
import memoryPersistence from 'aedes-persistence'
import { Redis } from 'ioredis'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { incomingStore } from '../../broker/aedes-internals.js'
import { type IncomingPersistence, trackInbound } from '../../broker/inbound-qos2.js'
import { type RawClient, rawConnect } from '../helpers/raw.js'
import { startRedis } from '../helpers/redis.js'
import { startNode, type TestNode } from '../helpers/test-node.js'

function qos2 (topic: string, messageId: number): Buffer {
  return mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.from('held'), qos: 2, messageId, dup: false, retain: false })
}

/** Send QoS 2 publishes with ids first..last in one write, never PUBREL. */
function flood (c: RawClient, first: number, last: number): void {
  const parts: Buffer[] = []
  for (let id = first; id <= last; id++) parts.push(qos2('flood/x', id))
  c.send(Buffer.concat(parts))
}

async function pubrecs (c: RawClient, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await c.next((p: Packet) => p.cmd === 'pubrec')
}

async function until (what: string, check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setImmediate(resolve))
  }
}

/** Whether the broker's persistence still holds the client id's QoS 2 packet id. */
async function stored (node: TestNode, clientId: string, messageId: number): Promise<boolean> {
  const store = incomingStore(node.broker) as unknown as IncomingPersistence
  return await store.incomingGetPacket({ id: clientId }, { messageId }).then(() => true, () => false)
}

async function started (t: TestContext, args: string[]): Promise<TestNode> {
  const node = await startNode(['--dev', '--max-inflight-inbound', '5', ...args])
  t.after(() => node.close())
  return node
}

test('the in-memory incoming store: bounded reserve, release on delete, nothing left of a cleaned client id', async () => {
  const p = (memoryPersistence as unknown as () => IncomingPersistence)()
  const inbound = trackInbound(p, true)
  const client = { id: 'c1' }
  for (const messageId of [1, 2, 3]) {
    assert.equal(inbound.reserve('c1', messageId, 3), true)
    await p.incomingStorePacket(client, { messageId })
  }
  assert.equal(inbound.reserve('c1', 4, 3), false, 'a fourth id is over a bound of 3')
  assert.equal(inbound.reserve('c1', 2, 3), true, 'an id already held (a retransmission) is not one more')
  assert.equal(inbound.held('c1'), 3)
  await p.incomingDelPacket(client, { messageId: 1 })
  assert.equal(inbound.held('c1'), 2)
  assert.equal(inbound.reserve('c1', 4, 3), true, 'a PUBREL makes room')
  await p.incomingStorePacket(client, { messageId: 4 })
  await inbound.cleanIncoming('c1')
  assert.equal(inbound.clients(), 0)
  for (const messageId of [2, 3, 4]) {
    await assert.rejects(p.incomingGetPacket(client, { messageId }), /no such packet/)
  }
})

test('maxInflightInbound: past the bound of QoS 2 publishes without PUBREL the connection is closed and nothing more is stored', async (t) => {
  const node = await started(t, [])
  const port = node.ports.mqtt as number
  // A persistent session keeps its store after the close: the bound must hold across connections.
  const c = await rawConnect(port, { clientId: 'hoarder', clean: false })
  flood(c, 1, 5)
  await pubrecs(c, 5)
  assert.equal(node.inbound.held('hoarder'), 5)
  assert.equal(node.stats.refusals.awaiting_pubrel, 0)
  flood(c, 6, 30)
  await c.closed
  assert.ok(node.stats.refusals.awaiting_pubrel >= 1)
  assert.equal(node.inbound.held('hoarder'), 5)
  assert.equal(await stored(node, 'hoarder', 6), false)

  // Again and again on new connections of the same client id: the store stays at the bound.
  for (let round = 0; round < 20; round++) {
    const again = await rawConnect(port, { clientId: 'hoarder', clean: false })
    flood(again, 100 + round * 50, 140 + round * 50)
    await again.closed
  }
  assert.equal(node.inbound.held('hoarder'), 5)
  for (const id of [1, 5]) assert.equal(await stored(node, 'hoarder', id), true)

  // A retransmission of a held id is still answered (not one more), and PUBREL makes room.
  const d = await rawConnect(port, { clientId: 'hoarder', clean: false })
  d.send(qos2('flood/x', 3))
  await pubrecs(d, 1)
  d.send(mqttPacket.generate({ cmd: 'pubrel', messageId: 3 }))
  await d.next((p: Packet) => p.cmd === 'pubcomp')
  assert.equal(node.inbound.held('hoarder'), 4)
  d.send(qos2('flood/x', 7))
  await pubrecs(d, 1)
  assert.equal(d.isClosed(), false)
  assert.equal(node.inbound.held('hoarder'), 5)
  d.destroy()
  await d.closed
})

test('a clean session that ends leaves no inbound QoS 2 packets (in memory), however many client ids cycle', async (t) => {
  const node = await started(t, [])
  const port = node.ports.mqtt as number
  for (let i = 0; i < 30; i++) {
    const c = await rawConnect(port, { clientId: `cycle-${i}` })
    flood(c, 1, 3)
    await pubrecs(c, 3)
    assert.equal(node.inbound.held(`cycle-${i}`), 3)
    c.destroy()
    await c.closed
  }
  await until('the clean sessions to be cleared', () => node.inbound.clients() === 0)
  for (const id of [1, 2, 3]) assert.equal(await stored(node, 'cycle-29', id), false)
})

test('a clean session that ends leaves no inbound QoS 2 keys in Redis; a persistent one keeps them', async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  const node = await started(t, ['--redis', redis.url])
  const db = new Redis(redis.url)
  t.after(() => db.quit())
  const port = node.ports.mqtt as number
  const keys = async (): Promise<string[]> => (await db.keys('incoming:*')).sort()

  const c = await rawConnect(port, { clientId: 'clean-one' })
  flood(c, 1, 3)
  await pubrecs(c, 3)
  assert.equal((await keys()).length, 3)
  c.send(mqttPacket.generate({ cmd: 'disconnect' }))
  await c.closed
  await until('the keys of the clean session to go', async () => (await keys()).length === 0)

  const p = await rawConnect(port, { clientId: 'kept-one', clean: false })
  flood(p, 1, 2)
  await pubrecs(p, 2)
  p.send(mqttPacket.generate({ cmd: 'disconnect' }))
  await p.closed
  await until('the persistent session\'s connection to be gone', () => node.broker.connectedClients === 0)
  assert.equal(node.inbound.held('kept-one'), 2)
  assert.deepEqual(await keys(), ['incoming:kept-one:1', 'incoming:kept-one:2'])
})

test('maxInflightInbound with MQTT 5 (its Receive Maximum): one more QoS 2 publish is DISCONNECT 0x93 and not stored', async (t) => {
  const node = await started(t, [])
  const socket = net.connect({ port: node.ports.mqtt as number, host: '127.0.0.1' })
  t.after(() => { socket.destroy() })
  const parser = mqttPacket.parser({ protocolVersion: 5 })
  const got: Packet[] = []
  parser.on('packet', (p: Packet) => { got.push(p) })
  socket.on('data', (d: Buffer) => { parser.parse(d) })
  const v5 = { protocolVersion: 5 } as const
  socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'five', keepalive: 60 }, v5))
  const parts: Buffer[] = []
  for (let id = 1; id <= 6; id++) parts.push(mqttPacket.generate({ cmd: 'publish', topic: 'flood/x', payload: Buffer.from('held'), qos: 2, messageId: id, dup: false, retain: false }, v5))
  socket.write(Buffer.concat(parts))
  await until('five PUBRECs and a DISCONNECT', () => got.filter((p) => p.cmd === 'pubrec').length === 5 && got.some((p) => p.cmd === 'disconnect'))
  const refused = got.filter((p) => p.cmd === 'disconnect' && (p as { reasonCode?: number }).reasonCode === 0x93)
  assert.equal(refused.length, 1)
  assert.equal(got.some((p) => p.cmd === 'pubrec' && (p as { messageId?: number }).messageId === 6), false)
  assert.equal(node.inbound.held('five'), 5)
  assert.equal(await stored(node, 'five', 6), false)
  assert.equal(node.stats.refusals.receive_maximum, 1)
  await until('the connection closed', () => socket.destroyed || socket.readableEnded)
})
