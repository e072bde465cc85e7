/**
 * The $SYS/broker tree: what an admin sees (Mosquitto's tree plus Warbler's
 * own figures), that values move with traffic, and who may not see it.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { MqttClient } from 'mqtt'
import { collect, connect, nextMessage, startNode, type TestNode } from '../helpers/test-node.js'

const USERS = [
  { name: 'alice', password: 'alice-pw-1' },
  { name: 'bob', password: 'bob-pw-1' },
  { name: 'carol', password: 'carol-pw-1', admin: true }
]

function pw (user: string): string {
  return (USERS.find((u) => u.name === user) as { password: string }).password
}

/** Topics every operator dashboard built for Mosquitto reads, relative to $SYS/broker/. */
const MOSQUITTO_TOPICS = [
  'version', 'uptime',
  'clients/connected', 'clients/disconnected', 'clients/maximum', 'clients/total', 'clients/expired',
  'messages/received', 'messages/sent',
  'publish/messages/received', 'publish/messages/sent', 'publish/messages/dropped',
  'bytes/received', 'bytes/sent',
  'subscriptions/count', 'retained messages/count',
  'heap/current', 'heap/maximum',
  ...['messages/received', 'messages/sent', 'bytes/received', 'bytes/sent', 'connections', 'publish/received', 'publish/sent', 'publish/dropped']
    .flatMap((l) => ['1min', '5min', '15min'].map((w) => `load/${l}/${w}`))
]

const WARBLER_TOPICS = [
  'warbler/connections/total', 'warbler/publish/inflight', 'warbler/publish/backpressure_waits',
  'warbler/refused/not_authorized', 'warbler/refused/login_failed', 'warbler/refused/subscribe_denied',
  'warbler/refused/payload_too_large', 'warbler/refused/rate_limited',
  'warbler/logins/password', 'warbler/logins/jwt', 'warbler/logins/device_token'
]

/** The latest value of every $SYS/broker topic a client has received, kept up to date. */
function track (c: MqttClient): { values: Map<string, string>, until: (key: string, pred: (v: string) => boolean, ms?: number) => Promise<string> } {
  const values = new Map<string, string>()
  const waiters = new Set<() => void>()
  c.on('message', (topic, payload) => {
    if (!topic.startsWith('$SYS/broker/')) return
    values.set(topic.slice('$SYS/broker/'.length), payload.toString())
    for (const w of waiters) w()
  })
  const until = (key: string, pred: (v: string) => boolean, ms = 10_000): Promise<string> => new Promise((resolve, reject) => {
    const check = (): void => {
      const v = values.get(key)
      if (v !== undefined && pred(v)) {
        clearTimeout(timer)
        waiters.delete(check)
        resolve(v)
      }
    }
    const timer = setTimeout(() => { waiters.delete(check); reject(new Error(`$SYS/broker/${key} never satisfied the condition; last ${String(values.get(key))}`)) }, ms)
    waiters.add(check)
    check()
  })
  return { values, until }
}

async function login (t: { after: (fn: () => unknown) => void }, node: TestNode, user: string, clientId = user, clean = true): Promise<MqttClient> {
  const c = await connect(node.mqttUrl, { username: user, password: pw(user), clientId, clean })
  t.after(() => c.endAsync(true))
  return c
}

test('an admin subscribed to $SYS/broker/# gets the whole tree at once, and figures move with traffic', { timeout: 20_000 }, async (t) => {
  const node = await startNode(['--sys-interval', '1'], { users: USERS })
  t.after(() => node.close())
  const carol = await login(t, node, 'carol', 'carol-ops')
  const sys = track(carol)
  const granted = await carol.subscribeAsync('$SYS/broker/#', { qos: 0 })
  assert.equal(granted[0]?.qos, 0)
  // Retained values arrive at once; wait for the one of the first tick after login.
  await sys.until('clients/connected', (v) => v === '1')
  // That tick may still be on its way (its first topics delivered, the rest
  // not yet, on a loaded machine): every topic is there within the bound.
  await Promise.all([...MOSQUITTO_TOPICS, ...WARBLER_TOPICS].map(async (k) => await sys.until(k, () => true)))
  assert.match(sys.values.get('version') as string, /^warbler \d+\.\d+\.\d+/)
  assert.match(sys.values.get('uptime') as string, /^\d+ seconds$/)
  for (const k of [...MOSQUITTO_TOPICS, ...WARBLER_TOPICS]) {
    if (k === 'version' || k === 'uptime') continue
    const v = sys.values.get(k) as string
    assert.match(v, /^\d+(\.\d+)?$/, `$SYS/broker/${k} is a plain number, got ${v}`)
  }
  assert.ok(Number(sys.values.get('heap/current')) > 1_000_000)
  assert.ok(Number(sys.values.get('heap/maximum')) >= Number(sys.values.get('heap/current')))
  assert.ok(Number(sys.values.get('bytes/received')) > 0)
  await sys.until('warbler/logins/password', (v) => v === '1') // a tick may be half published when retained values are sent

  // A second client connects and sends traffic; all the figures move by the next tick.
  const before = Number(sys.values.get('messages/received'))
  const bytesBefore = Number(sys.values.get('bytes/received'))
  const up = parseInt(sys.values.get('uptime') as string, 10)
  const alice = await login(t, node, 'alice', 'alice-phone')
  for (let i = 0; i < 5; i++) await alice.publishAsync('wb/u/alice/out', `{"t":"msg","n":${i}}`, { qos: 1 })
  await alice.publishAsync('wb/u/bob/out', '{"t":"msg"}', { qos: 1 }) // refused: not_authorized
  assert.equal(await alice.subscribeAsync('$SYS/#').then(() => 0, () => 128), 128)
  await Promise.all([
    sys.until('clients/connected', (v) => v === '2'),
    sys.until('clients/maximum', (v) => Number(v) >= 2),
    sys.until('clients/total', (v) => Number(v) >= 2),
    sys.until('warbler/logins/password', (v) => v === '2'),
    sys.until('warbler/connections/total', (v) => v === '2'),
    sys.until('messages/received', (v) => Number(v) >= before + 6),
    sys.until('publish/messages/received', (v) => Number(v) >= before + 6),
    sys.until('bytes/received', (v) => Number(v) > bytesBefore),
    sys.until('load/messages/received/1min', (v) => Number(v) > 0),
    sys.until('load/connections/1min', (v) => Number(v) > 0),
    sys.until('warbler/refused/not_authorized', (v) => v === '1'),
    sys.until('warbler/refused/subscribe_denied', (v) => v === '1'),
    sys.until('uptime', (v) => parseInt(v, 10) > up)
  ])
})

test('persistent sessions count as disconnected clients, and every subscription is counted', { timeout: 20_000 }, async (t) => {
  const node = await startNode([], { users: USERS }) // --sys-interval 0: the snapshot is read directly
  t.after(() => node.close())
  const bob = await login(t, node, 'bob', 'bob-tablet', false)
  await bob.subscribeAsync(['wb/u/bob/inbox', 'wb/d/bob-tablet'], { qos: 1 })
  const alice = await login(t, node, 'alice', 'alice-phone') // clean session
  await alice.subscribeAsync(['wb/u/alice/inbox', 'wb/d/alice-phone', 'wb/u/alice/#'], { qos: 1 })
  let v = await node.sys()
  assert.equal(v['clients/connected'], '2')
  assert.equal(v['clients/disconnected'], '0')
  assert.equal(v['clients/total'], '2')
  assert.equal(v['subscriptions/count'], '5')

  const closed = new Promise<void>((resolve) => node.broker.once('clientDisconnect', () => resolve()))
  await bob.endAsync()
  await closed
  v = await node.sys()
  assert.equal(v['clients/connected'], '1')
  assert.equal(v['clients/disconnected'], '1', 'bob\'s persistent session is registered but disconnected')
  assert.equal(v['clients/total'], '2')
  assert.equal(v['clients/maximum'], '2')
  assert.equal(v['subscriptions/count'], '5')
})

test('a non-admin never receives $SYS, and --sys-interval 0 publishes nothing', { timeout: 20_000 }, async (t) => {
  const node = await startNode(['--sys-interval', '1'], { users: USERS })
  t.after(() => node.close())
  const alice = await login(t, node, 'alice', 'alice-phone')
  assert.equal(await alice.subscribeAsync('$SYS/#').then(() => 0, () => 128), 128)
  assert.equal(await alice.subscribeAsync('$SYS/broker/uptime').then(() => 0, () => 128), 128)
  await alice.subscribeAsync('wb/u/alice/inbox', { qos: 0 })
  const seen = collect(alice, 1200) // spans at least one tick
  const control = nextMessage(alice, (topic) => topic === 'wb/u/alice/inbox')
  node.broker.publish({ cmd: 'publish', topic: 'wb/u/alice/inbox', payload: Buffer.from('{"t":"msg"}'), qos: 0, retain: false, dup: false }, () => {})
  await control
  assert.deepEqual((await seen).map((m) => m.topic), ['wb/u/alice/inbox'])

  const quiet = await startNode(['--sys-interval', '0'], { users: USERS })
  t.after(() => quiet.close())
  const carol = await login(t, quiet, 'carol', 'carol-ops')
  await carol.subscribeAsync(['$SYS/#', 'wb/u/carol/inbox'], { qos: 0 })
  const got = collect(carol, 300)
  quiet.broker.publish({ cmd: 'publish', topic: 'wb/u/carol/inbox', payload: Buffer.from('{"t":"msg"}'), qos: 0, retain: false, dup: false }, () => {})
  assert.deepEqual((await got).map((m) => m.topic), ['wb/u/carol/inbox'])
})

test('an admin sees only the $SYS/broker tree, not aedes\' internal $SYS/{id} notices', { timeout: 20_000 }, async (t) => {
  const node = await startNode(['--sys-interval', '1'], { users: USERS })
  t.after(() => node.close())
  const carol = await login(t, node, 'carol', 'carol-ops')
  await carol.subscribeAsync('$SYS/#', { qos: 0 })
  const seen = collect(carol, 1200)
  const alice = await login(t, node, 'alice', 'alice-phone') // aedes announces $SYS/{id}/new/clients
  await alice.endAsync()
  const topics = (await seen).map((m) => m.topic)
  assert.ok(topics.includes('$SYS/broker/clients/connected'), 'positive control')
  assert.deepEqual(topics.filter((x) => !x.startsWith('$SYS/broker/')), [])
})
