/**
 * An MQTT 5 client is told why it is refused, in the protocol: CONNACK,
 * PUBACK/PUBREC, SUBACK and DISCONNECT reason codes with reason strings
 * (broker/reason-codes.ts). An MQTT 3.1.1 client gets its 3.1.1 answers,
 * side by side here and in the older tests.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { AedesPublishPacket } from 'aedes'
import { topics } from '@warbler/sdk/protocol'
import { connackCode, connect, startNode } from '../helpers/test-node.js'
import { v5Connect, type V5Conn } from '../helpers/v5-raw.js'

const USERS = ['alice', 'bob', 'carol'].map((name) => ({ name, password: `${name}-password-1` }))
const pw = (user: string): Buffer => Buffer.from(`${user}-password-1`)
type T = { after: (fn: () => unknown) => void }

async function v5 (t: T, port: number, connect: Record<string, unknown>): Promise<V5Conn> {
  const c = await v5Connect(port, connect)
  t.after(() => { c.socket.destroy() })
  return c
}

const reasonString = (p: { properties?: Record<string, unknown> }): string => p.properties?.reasonString as string | undefined ?? ''

test('CONNACK: MQTT 5 refusals carry their own reason code and a reason string; MQTT 3.1.1 keeps its codes', { timeout: 60_000 }, async (t) => {
  const node = await startNode(['--login-failures', '100'], { users: USERS })
  t.after(() => node.close())
  await node.identity.setDisabled('carol', true)
  const port = node.ports.mqtt as number
  const cases: Array<[string, Record<string, unknown>, number, number, RegExp]> = [
    ['wrong password', { clientId: 'alice-1', username: 'alice', password: Buffer.from('wrong-wrong') }, 0x86, 4, /bad user name or password/],
    ['client id of another user', { clientId: 'bob-1', username: 'alice', password: pw('alice') }, 0x85, 2, /client id must be "alice"/],
    ['anonymous outside --dev', { clientId: 'anon-1' }, 0x87, 5, /anonymous access is off/],
    ['disabled user with the right password', { clientId: 'carol-1', username: 'carol', password: pw('carol') }, 0x87, 4, /bad user name or password/]
  ]
  for (const [what, connect, v5code, v311code, why] of cases) {
    const c = await v5(t, port, connect)
    assert.equal(c.connack.reasonCode, v5code, what)
    assert.match(reasonString(c.connack), why, what)
    await c.closed
    const url = node.mqttUrl
    const opts = { clientId: connect.clientId as string, ...(connect.username !== undefined ? { username: connect.username as string, password: (connect.password as Buffer).toString() } : {}) }
    assert.equal(await connackCode(url, opts), v311code, `3.1.1: ${what}`)
  }
})

test('CONNACK: a login lockout is 0x97 (quota exceeded) and a connection rate 0x9F for MQTT 5; 4 and 3 for MQTT 3.1.1', { timeout: 60_000 }, async (t) => {
  const node = await startNode(['--login-failures', '1', '--conn-rate', '1', '--conn-burst', '3'], { users: USERS })
  t.after(() => node.close())
  const port = node.ports.mqtt as number
  const bad = { clientId: 'alice-x', username: 'alice', password: Buffer.from('wrong-wrong') }
  assert.equal((await v5(t, port, bad)).connack.reasonCode, 0x86)
  const locked = await v5(t, port, { clientId: 'alice-y', username: 'alice', password: pw('alice') })
  assert.equal(locked.connack.reasonCode, 0x97)
  assert.match(reasonString(locked.connack), /too many failed logins/)
  assert.equal(await connackCode(node.mqttUrl, { clientId: 'alice-z', username: 'alice', password: 'alice-password-1' }), 4)
  // The burst of 3 is spent (it refills by one a second): the address is soon over the rate.
  let rated = await v5(t, port, { clientId: 'alice-r', username: 'alice', password: pw('alice') })
  for (let i = 0; i < 5 && rated.connack.reasonCode !== 0x9F; i++) rated = await v5(t, port, { clientId: 'alice-r', username: 'alice', password: pw('alice') })
  assert.equal(rated.connack.reasonCode, 0x9F)
  assert.match(reasonString(rated.connack), /too many new connections/)
  assert.equal(await connackCode(node.mqttUrl, { clientId: 'alice-s', username: 'alice', password: 'alice-password-1' }), 3)
  assert.ok(node.stats.refusals.connection_rate >= 2)
  assert.ok(node.stats.refusals.login_rate_limited >= 2)
})

test('PUBACK: MQTT 5 refused publishes are answered 0x87 (not authorized) or 0x97 (the rate) with a reason string, never routed, and still noticed', { timeout: 60_000 }, async (t) => {
  const node = await startNode(['--max-payload', '1024', '--publish-rate', '1', '--publish-burst', '3'], { users: USERS })
  t.after(() => node.close())
  const port = node.ports.mqtt as number
  // Were a refused publish routed after all, it would reach the sink.
  const sunk: string[] = []
  const fn = (packet: AedesPublishPacket, cb: () => void): void => { sunk.push(packet.topic); cb() }
  await new Promise<void>((resolve) => node.broker.subscribe(topics.refused, fn, () => resolve()))
  const c = await v5(t, port, { clientId: 'alice-p', username: 'alice', password: pw('alice') })
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'wb/d/alice-p', qos: 0 }] })
  assert.deepEqual((await c.next('suback')).granted, [0])
  c.send({ cmd: 'publish', topic: 'wb/u/bob/out', payload: Buffer.from('{}'), qos: 1, messageId: 2, retain: false, dup: false })
  const denied = await c.next('puback')
  assert.deepEqual([denied.messageId, denied.reasonCode], [2, 0x87])
  assert.match(reasonString(denied), /alice may not publish to wb\/u\/bob\/out/)
  const notice = await c.next('publish')
  assert.match(String((notice as { payload?: Buffer }).payload), /"code":"not_authorized"/)
  c.send({ cmd: 'publish', topic: 'wb/u/alice/out', payload: Buffer.alloc(1025), qos: 2, messageId: 3, retain: false, dup: false })
  const big = await c.next('pubrec')
  // Not 0x95 (MQTT 5 allows none on PUBREC, and mqtt-packet's parser refuses one) nor
  // 0x97 (the rate's, which the SDK sends again): acknowledged, the notice says why.
  assert.deepEqual([big.messageId, big.reasonCode ?? 0], [3, 0])
  assert.equal(node.stats.refusals.payload_too_large, 1)
  // A client that asked for no problem information gets the code without the string.
  const quiet = await v5(t, port, { clientId: 'alice-q', username: 'alice', password: pw('alice'), properties: { requestProblemInformation: false } })
  quiet.send({ cmd: 'publish', topic: 'wb/u/bob/out', payload: Buffer.from('{}'), qos: 1, messageId: 1, retain: false, dup: false })
  const bare = await quiet.next('puback')
  assert.deepEqual([bare.reasonCode, bare.properties?.reasonString], [0x87, undefined])
  // The rate: a burst of 3 (two spent above), then refused with 0x97 (quota exceeded) and a reason string.
  const codes: number[] = []
  const strings: string[] = []
  for (let i = 10; i < 14; i++) {
    c.send({ cmd: 'publish', topic: 'wb/u/alice/out', payload: Buffer.from('x'), qos: 1, messageId: i, retain: false, dup: false })
    const ack = await c.next('puback')
    codes.push(ack.reasonCode ?? 0)
    if ((ack.reasonCode ?? 0) !== 0) strings.push(reasonString(ack))
  }
  assert.equal(codes[0], 0)
  assert.ok(codes.every((code) => code === 0 || code === 0x97), JSON.stringify(codes))
  assert.equal(codes.filter((code) => code === 0x97).length, node.stats.refusals.rate_limited, 'each publish over the rate so far answered 0x97')
  assert.ok(strings.every((s) => /over 1 publishes per second/.test(s)), JSON.stringify(strings))
  assert.equal(node.stats.refusals.not_authorized, 2)
  assert.equal(node.stats.refusals.payload_too_large, 1)
  assert.ok(node.stats.refusals.rate_limited >= 1)
  // A publish routed after the refused ones has arrived, so they would have too.
  c.send({ cmd: 'publish', topic: 'wb/u/alice/out', payload: Buffer.from('{}'), qos: 0, retain: false, dup: false })
  const bob = await connect(node.mqttUrl, { username: 'bob', password: 'bob-password-1', clientId: 'bob-1' })
  await bob.endAsync(true)
  // Only the refusals without a reason code go to the sink, as for MQTT 3.1.1: the payload's,
  // and the last QoS 0 publish's should the rate refuse it. Those answered 0x87 and 0x97 are never routed.
  const quota = codes.filter((code) => code === 0x97).length
  assert.ok(sunk.every((topic) => topic === topics.refused) && sunk.length === 1 + node.stats.refusals.rate_limited - quota, JSON.stringify(sunk))
})

test('SUBACK: a refused filter is 0x87 for MQTT 5, 0x80 for MQTT 3.1.1', { timeout: 30_000 }, async (t) => {
  const node = await startNode([], { users: USERS })
  t.after(() => node.close())
  const c = await v5(t, node.ports.mqtt as number, { clientId: 'alice-s', username: 'alice', password: pw('alice') })
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'wb/u/bob/inbox', qos: 1 }, { topic: 'wb/u/alice/inbox', qos: 1 }] })
  assert.deepEqual((await c.next('suback')).granted, [0x87, 1])
  const old = await connect(node.mqttUrl, { username: 'alice', password: 'alice-password-1', clientId: 'alice-o' })
  t.after(() => old.endAsync(true))
  const granted = await old.subscribeAsync('wb/u/bob/inbox', { qos: 1 }).catch((err: { packet?: { granted?: number[] } }) => err.packet?.granted?.map((qos) => ({ qos })))
  assert.equal(granted?.[0]?.qos, 0x80)
})

test('refusalDetail unspecified: refused publishes and filters are 0x80 without a reason string, still noticed; 0x9E kept; MQTT 3.1.1 unchanged', { timeout: 60_000 }, async (t) => {
  const node = await startNode(['--refusal-detail', 'unspecified', '--publish-rate', '1', '--publish-burst', '1'], { users: USERS })
  t.after(() => node.close())
  const port = node.ports.mqtt as number
  const c = await v5(t, port, { clientId: 'alice-u', username: 'alice', password: pw('alice') })
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'wb/d/alice-u', qos: 0 }, { topic: '$SYS/#', qos: 0 }, { topic: '$share/g/wb/d/alice-u', qos: 0 }] })
  assert.deepEqual((await c.next('suback')).granted, [0, 0x80, 0x9E])
  c.send({ cmd: 'publish', topic: 'wb/u/bob/out', payload: Buffer.from('{}'), qos: 1, messageId: 2, retain: false, dup: false })
  const denied = await c.next('puback')
  assert.deepEqual([denied.messageId, denied.reasonCode, denied.properties?.reasonString], [2, 0x80, undefined])
  assert.match(String((await c.next('publish') as { payload?: Buffer }).payload), /"code":"not_authorized"/)
  // The burst of 1 spent above: over the rate.
  for (let i = 3; i < 6; i++) c.send({ cmd: 'publish', topic: 'wb/u/alice/out', payload: Buffer.from('x'), qos: 1, messageId: i, retain: false, dup: false })
  const acks = [await c.next('puback'), await c.next('puback'), await c.next('puback')]
  assert.ok(acks.every((a) => (a.reasonCode ?? 0) === 0 || (a.reasonCode === 0x80 && a.properties?.reasonString === undefined)), JSON.stringify(acks))
  assert.equal(acks.filter((a) => a.reasonCode === 0x80).length, node.stats.refusals.rate_limited)
  assert.ok(node.stats.refusals.rate_limited >= 1)
  // MQTT 3.1.1 keeps its SUBACK 0x80 and PUBACK 0.
  const v4 = await connect(node.mqttUrl, { username: 'bob', password: 'bob-password-1', clientId: 'bob-u' })
  t.after(() => v4.end(true))
  await assert.rejects(v4.subscribeAsync('$SYS/#', { qos: 0 }), (e: unknown) => (e as { packet?: { granted?: number[] } }).packet?.granted?.[0] === 128)
})

test('DISCONNECT: 0x8E on takeover, 0x8D on a keep alive timeout, 0x95 for a packet over maxPacket, 0x8B when the node stops', { timeout: 60_000 }, async (t) => {
  const node = await startNode(['--max-packet', '4096', '--max-payload', '1024'], { users: USERS })
  let stopped = false
  t.after(async () => { if (!stopped) await node.close() })
  const port = node.ports.mqtt as number
  const login = { username: 'alice', password: pw('alice') }
  const first = await v5(t, port, { clientId: 'alice-t', ...login })
  await v5(t, port, { clientId: 'alice-t', ...login })
  assert.equal((await first.next('disconnect')).reasonCode, 0x8E)

  const idle = await v5(t, port, { clientId: 'alice-k', keepalive: 1, ...login })
  const timedOut = await idle.next('disconnect', 5000)
  assert.equal(timedOut.reasonCode, 0x8D)
  assert.match(reasonString(timedOut), /keep alive/)

  const big = await v5(t, port, { clientId: 'alice-b', ...login })
  big.socket.write(Buffer.from([0x30, 0x80, 0x80, 0x01])) // a PUBLISH of 16 KiB, header only
  const tooLarge = await big.next('disconnect')
  assert.equal(tooLarge.reasonCode, 0x95)
  assert.match(reasonString(tooLarge), /over the limit of 4096/)
  await big.closed

  const willing = await v5(t, port, { clientId: 'alice-w', will: { topic: 'wb/u/alice/will', payload: Buffer.from('bye'), qos: 0, retain: false }, ...login })
  const plain = await v5(t, port, { clientId: 'alice-n', ...login })
  const stopping = node.close()
  const [a, b] = await Promise.all([willing.next('disconnect'), plain.next('disconnect')])
  await stopping
  stopped = true
  assert.deepEqual([a.reasonCode, b.reasonCode], [0x8B, 0x8B])
})
