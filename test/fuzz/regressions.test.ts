/**
 * What the fuzzer found, pinned down as plain tests (the fuzzer may not draw
 * the same input on every run):
 * - a chat body nested thousands of levels deep overflowed the stack while
 *   the archive stringified it, inside the batch transaction: the whole batch
 *   failed with `internal`, other users' sends and requests included; one a
 *   few hundred levels deep was stored. Bodies are now limited to 64 levels;
 * - a search for text holding U+0000 failed with `internal` (FTS5 took the
 *   NUL for the end of its query);
 * - refusals aedes makes itself were not counted: CONNACK 1 for MQTT 5 (then
 *   `protocol_version`; aedes 2 accepts MQTT 5), CONNACK 2 for an MQTT 3.1 client id over 64
 *   characters (`client_id_rejected`), and the disconnect for a PUBREC of a
 *   persistent session naming a packet id never sent (`malformed_packet`).
 *
 * - failed password logins from many addresses (each within the per-address
 *   limits) filled libuv's thread pool with scrypt checks, and SQLite, which
 *   runs in the same pool, waited behind them: everyone's sends were
 *   acknowledged seconds late. Password checks now run at most two at once
 *   (broker/auth.ts); a crowd beyond the queue gets CONNACK 3 (`login_busy`).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt from 'mqtt'
import mqttPacket from 'mqtt-packet'
import type { AckFrame, ErrorFrame } from '../../sdk/src/protocol.js'
import { ChatClient } from '../helpers/chat-client.js'
import { connectPacket, type RawClient, rawConnect, rawSocket } from '../helpers/raw.js'
import { connackCode, startNode } from '../helpers/test-node.js'

const PW = 'password-123'
const users = ['alice', 'bob', 'mallory'].map((name) => ({ name, password: PW }))
const deep = (n: number): string => '['.repeat(n) + ']'.repeat(n)

test('a body nested too deep is refused alone; sends batched with it are stored; 64 levels pass', async (t) => {
  const node = await startNode(['--publish-rate', '0'], { users })
  t.after(() => node.close())
  const alice = await ChatClient.connect(node.mqttUrl, 'alice', PW)
  const mallory = await ChatClient.connect(node.mqttUrl, 'mallory', PW)
  t.after(async () => { await alice.close(); await mallory.close() })
  // As text: a client's JSON.stringify would overflow too.
  const sendDeep = async (depth: number): Promise<AckFrame | ErrorFrame> => {
    const cid = `deep-${depth}`
    await mallory.publishRaw(`{"t":"msg","cid":"${cid}","to":"bob","body":${deep(depth)}}`)
    return await mallory.until(() => mallory.frames.find((f) => (f.frame.t === 'ack' && f.frame.cid === cid) || (f.frame.t === 'error' && f.frame.ref === cid))?.frame as AckFrame | ErrorFrame | undefined)
  }
  for (const depth of [65, 1000, 20_000]) {
    // Published together, so the writer batches them together.
    const [bad, good] = await Promise.all([sendDeep(depth), alice.send({ to: 'bob' }, `next to ${depth}`)])
    assert.equal(bad.t, 'error', `depth ${depth} refused`)
    assert.deepEqual([(bad).code, (bad).ref], ['bad_request', `deep-${depth}`])
    assert.equal(good.t, 'ack', `the send next to depth ${depth} is stored: ${JSON.stringify(good)}`)
  }
  const ok = await sendDeep(64)
  assert.equal(ok.t, 'ack')
  assert.equal((ok).seq, 1, 'the first message of d:bob:mallory')
  assert.equal(node.service?.counters.refusals.internal ?? 0, 0)
})

test('search for text with U+0000 and other odd characters answers, never internal', async (t) => {
  const node = await startNode([], { users })
  t.after(() => node.close())
  const alice = await ChatClient.connect(node.mqttUrl, 'alice', PW)
  t.after(() => alice.close())
  await alice.sendOk({ to: 'bob' }, 'needle in a haystack')
  for (const q of ['\u0000', 'needle\u0000', '"\u0000"', 'NEAR(', '"', '*', '\u0001needle', 'needle \ud800']) {
    const r = await alice.req<{ messages: unknown[] }>('search', { q })
    assert.ok(Array.isArray(r.messages), JSON.stringify(q))
  }
  assert.equal((await alice.req<{ messages: unknown[] }>('search', { q: 'needle\u0000' })).messages.length, 1)
})

test('refusals aedes makes itself are counted: a long MQTT 3.1 client id, an empty one without clean session, a PUBREC for nothing; MQTT 5 is accepted', async (t) => {
  const node = await startNode([], { users })
  t.after(() => node.close())
  const port = node.ports.mqtt as number
  const connack = async (bytes: Buffer): Promise<number> => {
    const c = await rawSocket(port)
    c.send(bytes)
    const p = await c.next((x) => x.cmd === 'connack')
    await c.closed
    return (p as { returnCode?: number, reasonCode?: number }).returnCode ?? (p as { reasonCode?: number }).reasonCode ?? -1
  }

  // MQTT 5 is accepted (aedes 2): nothing refused, so nothing counted; a
  // protocol level mqtt-packet does not parse never reaches aedes' check.
  assert.equal(await connackCode(node.mqttUrl, { protocolVersion: 5, clientId: 'alice-v5', username: 'alice', password: PW }), 0)
  assert.equal(node.stats.refusals.protocol_version, 0)

  const emptyBefore = node.stats.refusals.client_id_rejected
  // By hand (mqtt-packet will not build it): MQTT 3.1.1, empty client id, clean session 0, no user name.
  const empty = Buffer.from([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x00, 0, 60, 0, 0])
  assert.equal(await connack(empty), 2)
  assert.equal(node.stats.refusals.client_id_rejected, emptyBefore + 1)

  const before = node.stats.refusals.client_id_rejected
  const v3 = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQIsdp', protocolVersion: 3, clean: true, clientId: 'alice-' + 'x'.repeat(60), keepalive: 60, username: 'alice', password: Buffer.from(PW) }, { protocolVersion: 3 })
  assert.equal(await connack(v3), 2)
  assert.equal(node.stats.refusals.client_id_rejected, before + 1)

  const malformed = node.stats.refusals.malformed_packet
  const c = await rawConnect(port, { clientId: 'alice-pubrec', clean: false, username: 'alice', password: PW })
  c.send({ cmd: 'pubrec', messageId: 4242 })
  await c.closed
  assert.equal(node.stats.refusals.malformed_packet, malformed + 1)
})

test('failed password logins from many addresses do not hold up the archive', async (t) => {
  // Default limits: each address stays under --login-failures and --conn-rate.
  const node = await startNode([], { users })
  const sockets: RawClient[] = []
  t.after(async () => { for (const s of sockets) s.destroy(); await node.close() })
  const alice = await ChatClient.connect(node.mqttUrl, 'alice', PW)
  t.after(() => alice.close())
  await alice.sendOk({ to: 'bob' }, 'before')
  for (let i = 0; i < 200; i++) {
    const s = await rawSocket(node.ports.mqtt as number, { localAddress: `127.0.0.${2 + (i % 100)}` })
    s.send(connectPacket({ clientId: `bob-guess${i}`, username: 'bob', password: `guess-${i}` }))
    sockets.push(s)
  }
  const started = Date.now()
  const ack = await alice.send({ to: 'bob' }, 'during')
  assert.equal(ack.t, 'ack')
  assert.ok(Date.now() - started < 1000, `acknowledged in ${Date.now() - started} ms while 200 password checks wait`)
})

test('an MQTT 5 client whose QoS 1 will goes to a topic it may not publish to: refused and counted when it drops, and the broker goes on', async (t) => {
  // Found by the fuzzer (seed 2705906575): answering the refused will with
  // PUBACK 0x87 threw (a will has no packet id) and ended the process.
  const node = await startNode(['--publish-rate', '0'], { users })
  t.after(() => node.close())
  const port = node.ports.mqtt as number
  const before = node.stats.refusals.not_authorized
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'mallory-will', username: 'mallory', password: PW, protocolVersion: 5, reconnectPeriod: 0, will: { topic: 'wb/u/alice/in', payload: Buffer.from('x'), qos: 1, retain: false } })
  c.stream.destroy() // dropped, not disconnected: the will goes out
  const deadline = Date.now() + 5000
  while (node.stats.refusals.not_authorized === before) {
    if (Date.now() > deadline) assert.fail('the will was not refused')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  const again = await rawConnect(port, { clientId: 'mallory-after', username: 'mallory', password: PW })
  again.destroy()
})
