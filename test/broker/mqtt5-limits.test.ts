/**
 * What an MQTT 5 CONNACK says the broker takes, from Warbler's settings,
 * and that the broker holds clients to it: Maximum Packet Size (maxPacket),
 * Receive Maximum (maxInflightInbound, enforced with DISCONNECT 0x93), Topic
 * Alias Maximum, Server Keep Alive (serverKeepAlive, maxKeepAlive) and the
 * Session Expiry Interval cap (maxSessionExpiry); each cap that trips is
 * counted (warbler_mqtt5_caps_total).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ConfigError, resolveConfig } from '../../shared/config.js'
import { startNode } from '../helpers/test-node.js'
import { v5Connect, type V5Conn } from '../helpers/v5-raw.js'

const USERS = [{ name: 'alice', password: 'alice-password-1' }]
const login = { username: 'alice', password: Buffer.from('alice-password-1') }
type T = { after: (fn: () => unknown) => void }

async function until (check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

async function v5 (t: T, port: number, connect: Record<string, unknown>): Promise<V5Conn> {
  const c = await v5Connect(port, { ...login, ...connect })
  t.after(() => { c.socket.destroy() })
  return c
}

const props = (c: V5Conn): Record<string, unknown> => c.connack.properties ?? {}

test('the CONNACK says the Maximum Packet Size, Receive Maximum and Topic Alias Maximum of the settings, no shared subscriptions, wildcards available', { timeout: 30_000 }, async (t) => {
  const node = await startNode(['--dev', '--max-packet', '300000', '--max-inflight-inbound', '20', '--topic-alias-maximum', '5'], { users: USERS })
  t.after(() => node.close())
  const c = await v5(t, node.ports.mqtt as number, { clientId: 'alice-c' })
  assert.equal(c.connack.reasonCode, 0)
  const p = props(c)
  assert.equal(p.maximumPacketSize, 300000)
  assert.equal(p.receiveMaximum, 20)
  assert.equal(p.topicAliasMaximum, 5)
  assert.equal(p.sharedSubscriptionAvailable, false)
  // Absent means available (MQTT 5 section 3.2.2.3.12): wildcard filters are granted.
  assert.equal(p.wildcardSubscriptionAvailable, undefined)
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'room/+', qos: 1 }] })
  assert.deepEqual((await c.next('suback')).granted, [1])
  // Nothing capped: no Server Keep Alive, no Session Expiry Interval said back.
  assert.equal(p.serverKeepAlive, undefined)
  assert.equal(p.sessionExpiryInterval, undefined)
  // A packet of exactly maxPacket bytes (with its fixed header) is taken; one byte more closes with 0x95.
  const body = 300000 - 1 - 3 - 2 - 'room/x'.length - 1
  c.send({ cmd: 'publish', topic: 'room/x', payload: Buffer.alloc(body), qos: 0, retain: false, dup: false })
  c.send({ cmd: 'pingreq' })
  await c.next('pingresp')
  c.send({ cmd: 'publish', topic: 'room/x', payload: Buffer.alloc(body + 1), qos: 0, retain: false, dup: false })
  assert.equal((await c.next('disconnect')).reasonCode, 0x95)
})

test('serverKeepAlive: every MQTT 5 client gets it as Server Keep Alive, and is timed by it', { timeout: 30_000 }, async (t) => {
  const node = await startNode(['--dev', '--server-keep-alive', '1'], { users: USERS })
  t.after(() => node.close())
  const c = await v5(t, node.ports.mqtt as number, { clientId: 'alice-k', keepalive: 120 })
  assert.equal(props(c).serverKeepAlive, 1)
  assert.equal(node.stats.caps.server_keep_alive, 1)
  // Silent past 1.5 s: the broker keeps its own keep alive, not the client's 120 s.
  assert.equal((await c.next('disconnect', 10_000)).reasonCode, 0x8D)
  const same = await v5(t, node.ports.mqtt as number, { clientId: 'alice-s', keepalive: 1 })
  assert.equal(props(same).serverKeepAlive, 1)
  assert.equal(node.stats.caps.server_keep_alive, 1, 'asked for what it got: not a cap')
})

test('maxKeepAlive: a client asking none or more gets the cap; one asking less keeps its own; counted', { timeout: 30_000 }, async (t) => {
  const node = await startNode(['--max-keep-alive', '30'], { users: USERS })
  t.after(() => node.close())
  const port = node.ports.mqtt as number
  assert.equal(props(await v5(t, port, { clientId: 'alice-0', keepalive: 0 })).serverKeepAlive, 30)
  assert.equal(props(await v5(t, port, { clientId: 'alice-1', keepalive: 100 })).serverKeepAlive, 30)
  assert.equal(props(await v5(t, port, { clientId: 'alice-2', keepalive: 10 })).serverKeepAlive, undefined)
  assert.equal(node.stats.caps.keep_alive, 2)
  const text = await node.registry.metrics()
  assert.match(text, /warbler_mqtt5_caps_total\{cap="keep_alive"\} 2/)
})

test('maxSessionExpiry: a longer Session Expiry Interval is capped and the CONNACK says so; 7 days by default', { timeout: 30_000 }, async (t) => {
  const node = await startNode(['--max-session-expiry', '3600'], { users: USERS })
  t.after(() => node.close())
  const port = node.ports.mqtt as number
  assert.equal(props(await v5(t, port, { clientId: 'alice-l', properties: { sessionExpiryInterval: 86400 } })).sessionExpiryInterval, 3600)
  assert.equal(props(await v5(t, port, { clientId: 'alice-m', properties: { sessionExpiryInterval: 60 } })).sessionExpiryInterval, undefined)
  assert.equal(node.stats.caps.session_expiry, 1)
  const byDefault = await startNode([], { users: USERS })
  t.after(() => byDefault.close())
  const forever = await v5(t, byDefault.ports.mqtt as number, { clientId: 'alice-f', properties: { sessionExpiryInterval: 0xFFFFFFFF } })
  assert.equal(props(forever).sessionExpiryInterval, 7 * 24 * 3600)
})

test('maxPendingSessions: past it, a disconnected session with an expiry ends at once and a delayed will goes out at once, each counted', { timeout: 30_000 }, async (t) => {
  const node = await startNode(['--dev', '--max-pending-sessions', '2'], { users: USERS })
  t.after(() => node.close())
  const port = node.ports.mqtt as number
  const keep = { clean: false, properties: { sessionExpiryInterval: 600 } }
  // Three sessions, each subscribed (so there is a session to keep) and then gone.
  for (const id of ['alice-p1', 'alice-p2', 'alice-p3']) {
    const c = await v5(t, port, { clientId: id, ...keep })
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'room/p', qos: 1 }] })
    await c.next('suback')
    c.send({ cmd: 'disconnect', reasonCode: 0 })
    await c.closed
  }
  await until(() => node.stats.caps.pending_sessions === 1, 5000, 'the third session past the cap, counted')
  const present = async (id: string): Promise<boolean> => {
    const c = await v5(t, port, { clientId: id, ...keep })
    const p = (c.connack as { sessionPresent?: boolean }).sessionPresent === true
    c.destroy()
    await c.closed
    return p
  }
  assert.equal(await present('alice-p3'), false, 'the session past the cap ended at its disconnect')
  assert.equal(await present('alice-p1'), true, 'the sessions within the cap are kept')
  // A will delayed past the cap goes out at once (a fresh node: the sessions above fill its cap).
  const other = await startNode(['--dev', '--max-pending-sessions', '2'], { users: USERS })
  t.after(() => other.close())
  const port2 = other.ports.mqtt as number
  const watcher = await v5(t, port2, { clientId: 'alice-w' })
  watcher.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'room/will', qos: 0 }] })
  await watcher.next('suback')
  for (const id of ['alice-d1', 'alice-d2', 'alice-d3']) {
    const w = await v5(t, port2, { clientId: id, ...keep, will: { topic: 'room/will', payload: Buffer.from(id), qos: 0, retain: false, properties: { willDelayInterval: 600 } } })
    w.destroy()
    await w.closed
  }
  const got = await watcher.next('publish')
  assert.equal(String((got as { payload?: Buffer }).payload), 'alice-d3', 'the will past the cap went out at once, the others wait their delay')
  assert.equal(other.stats.caps.delayed_wills, 1)
})

test('Receive Maximum is enforced: one QoS 1 or 2 publish more than it unacknowledged is DISCONNECT 0x93', { timeout: 30_000 }, async (t) => {
  const node = await startNode(['--dev', '--max-inflight-inbound', '3'], { users: USERS })
  t.after(() => node.close())
  const port = node.ports.mqtt as number
  for (const qos of [2, 1]) {
    const c = await v5(t, port, { clientId: `alice-rm${qos}` })
    assert.equal(props(c).receiveMaximum, 3)
    // Three QoS 2 publishes never released (no PUBREL): all three within the window.
    for (let id = 1; id <= 3; id++) {
      c.send({ cmd: 'publish', topic: 'room/rm', payload: Buffer.from('x'), qos: 2, messageId: id, retain: false, dup: false })
      assert.equal((await c.next('pubrec')).reasonCode, 0)
    }
    // A retransmission of one of them is not one more.
    c.send({ cmd: 'publish', topic: 'room/rm', payload: Buffer.from('x'), qos: 2, messageId: 2, retain: false, dup: true })
    assert.equal((await c.next('pubrec')).reasonCode, 0)
    c.send({ cmd: 'publish', topic: 'room/rm', payload: Buffer.from('x'), qos, messageId: 4, retain: false, dup: false })
    const d = await c.next('disconnect')
    assert.equal(d.reasonCode, 0x93, `QoS ${qos}`)
    assert.match(String(d.properties?.reasonString), /Receive Maximum/)
    await c.closed
  }
  assert.equal(node.stats.refusals.receive_maximum, 2)
  // Released ones leave the window: PUBREL, PUBCOMP, and there is room again.
  const r = await v5(t, port, { clientId: 'alice-rel' })
  for (let id = 1; id <= 6; id++) {
    r.send({ cmd: 'publish', topic: 'room/rm', payload: Buffer.from('x'), qos: 2, messageId: id, retain: false, dup: false })
    assert.equal((await r.next('pubrec')).reasonCode, 0)
    r.send({ cmd: 'pubrel', messageId: id })
    await r.next('pubcomp')
  }
})

test('bad values of the new settings are refused, naming the setting', () => {
  const cases: Array<[string[], string]> = [
    [['--server-keep-alive', '-1'], 'serverKeepAlive'],
    [['--max-keep-alive', '70000'], 'maxKeepAlive'],
    [['--max-session-expiry', 'week'], 'maxSessionExpiry'],
    [['--max-pending-sessions', '-5'], 'maxPendingSessions']
  ]
  for (const [args, field] of cases) {
    assert.throws(() => resolveConfig(args, {}), (err: unknown) => err instanceof ConfigError && err.field === field && err.message.startsWith(`invalid setting ${field}:`), field)
  }
})
