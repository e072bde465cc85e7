/* eslint-disable max-lines -- the scenarios of one feature, kept side by side with their shared setup */
/**
 * Authorization: the pure rules (topicMatches, filterWithin, Acl) and the
 * same rules enforced over MQTT with real clients.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { AedesPublishPacket } from 'aedes'
import type { MqttClient } from 'mqtt'
import { Acl, filterWithin, topicMatches } from '../../broker/acl.js'
import { parseAclRule } from '../../shared/config.js'
import type { Session } from '../../broker/session.js'
import { rmSync } from 'node:fs'
import { addUser, collect, collectUntil, connect, nextMessage, startNode, tempDir, type TestNode, withStore } from '../helpers/test-node.js'

const L = (s: string): string[] => s.split('/')

function session (user: string | null, clientId: string, admin = false, service = false): Session {
  return {
    user,
    admin,
    service,
    method: user === null ? 'anonymous' : 'password',
    clientId,
    address: '127.0.0.1',
    userPrefix: user === null ? null : `wb/u/${user}/`,
    publishBucket: null,
    lastNotice: 0,
    suppressedNotices: 0
  }
}

describe('topicMatches (MQTT 3.1.1 section 4.7)', () => {
  const cases: Array<[string, string, boolean]> = [
    ['a/b', 'a/b', true],
    ['a/b', 'a/c', false],
    ['a/b', 'a/b/c', false],
    ['a/b/c', 'a/b', false],
    ['a/+', 'a/b', true],
    ['a/+', 'a', false],
    ['a/+', 'a/b/c', false],
    ['a/+', 'a/', true], // an empty level is a level
    ['+/+', '/x', true],
    ['+', '/x', false],
    ['a/#', 'a', true], // '#' includes the parent level
    ['a/#', 'a/b/c', true],
    ['a/#', 'b', false],
    ['#', 'a/b', true],
    ['+/b/#', 'x/b', true],
    ['+/b/#', 'x/c/d', false],
    ['a/+/c', 'a/b/c', true],
    ['a/+/c', 'a/b/d', false]
  ]
  for (const [filter, topic, want] of cases) {
    test(`${filter} ${want ? 'matches' : 'does not match'} ${topic}`, () => {
      assert.equal(topicMatches(L(filter), L(topic)), want)
    })
  }
})

describe('filterWithin: every topic the filter matches is matched by the pattern', () => {
  const cases: Array<[string, string, boolean]> = [
    ['a/b', 'a/b', true],
    ['a/b', 'a/#', true],
    ['a', 'a/#', true],
    ['a/#', 'a/#', true],
    ['a/b/#', 'a/#', true],
    ['a/+', 'a/#', true],
    ['a/+', 'a/+', true],
    ['a/b', 'a/+', true],
    ['a/+/c', 'a/+/c', true],
    ['a/+/c', 'a/+/#', true],
    ['#', '#', true],
    ['+/x', '#', true],
    ['#', 'a/#', false], // would also match b
    ['a/#', 'a/+', false], // would also match a/b/c
    ['a/+', 'a/b', false], // would also match a/c
    ['a/#', 'a', false],
    ['a', 'a/+', false], // a/+ does not match a
    ['a/b/c', 'a/b', false],
    ['a/b', 'a/b/c', false],
    ['a/#', 'a/+/#', false], // a/# matches a, a/+/# does not
    ['+', 'a', false],
    ['b/#', 'a/#', false]
  ]
  for (const [filter, pattern, want] of cases) {
    test(`${filter} ${want ? 'is' : 'is not'} within ${pattern}`, () => {
      assert.equal(filterWithin(L(filter), L(pattern)), want)
    })
  }

  test('agrees with topicMatches on sample topics', () => {
    // A filter within a pattern: every sample topic it matches, the pattern matches too.
    const samples = ['a', 'a/b', 'a/c', 'a/b/c', 'a/b/d', 'b', 'b/c', 'a/', '/a', 'x/b/c']
    const filters = ['a', 'a/b', 'a/+', 'a/#', '+', '+/b/c', '+/+/+', '#', 'a/+/c', 'b/#', '+/#']
    for (const f of filters) {
      for (const p of filters) {
        if (!filterWithin(L(f), L(p))) continue
        for (const t of samples) {
          if (topicMatches(L(f), L(t))) assert.ok(topicMatches(L(p), L(t)), `${f} within ${p} but ${t} matches only the filter`)
        }
      }
    }
  })
})

// eslint-disable-next-line max-lines-per-function -- one scenario, its steps read in order top to bottom
describe('Acl decisions', () => {
  const alice = session('alice', 'alice-phone')
  const bob = session('bob', 'bob')
  const carol = session('carol', 'carol', true)
  const anon = session(null, 'sensor-1')
  const rules = ['readwrite devices/%u/#', 'read public/#', 'write ingest/%c', 'read mix/%u-%c', 'read anon/%u'].map(parseAclRule)
  const acl = new Acl(rules, false)
  const dev = new Acl(rules, true)

  test('publish in the chat space: only to one\'s own out topic', () => {
    assert.equal(acl.canPublish(alice, 'wb/u/alice/out'), 'allow')
    assert.equal(acl.canPublish(alice, 'wb/u/bob/out'), 'deny')
    assert.equal(acl.canPublish(alice, 'wb/u/alice/inbox'), 'deny')
    assert.equal(acl.canPublish(alice, 'wb/u/alice/other'), 'deny')
    assert.equal(acl.canPublish(alice, 'wb/d/alice-phone'), 'deny')
    assert.equal(acl.canPublish(alice, 'wb'), 'deny')
    assert.equal(acl.canPublish(alice, 'wb/x'), 'deny')
    for (const a of [acl, dev]) {
      for (const s of [alice, carol, anon]) {
        assert.equal(a.canPublish(s, 'wb/u/x/inbox'), 'deny')
        assert.equal(a.canPublish(s, 'wb/d/x'), 'deny')
        assert.equal(a.canPublish(s, '$SYS/broker/uptime'), 'deny')
        assert.equal(a.canPublish(s, '$WB/refused'), 'deny')
      }
    }
    // Anonymous (development mode) has no out topic.
    assert.equal(dev.canPublish(anon, 'wb/u/null/out'), 'deny')
    assert.equal(acl.canPublish(undefined, 'public/x'), 'deny')
  })

  test('publish outside the chat space: rules in normal mode, open in development mode', () => {
    assert.equal(acl.canPublish(alice, 'devices/alice/t'), 'allow')
    assert.equal(acl.canPublish(alice, 'devices/alice'), 'allow')
    assert.equal(acl.canPublish(alice, 'devices/bob/t'), 'deny')
    assert.equal(acl.canPublish(alice, 'public/news'), 'deny') // read-only rule
    assert.equal(acl.canPublish(alice, 'ingest/alice-phone'), 'allow') // %c
    assert.equal(acl.canPublish(alice, 'ingest/alice'), 'deny')
    assert.equal(acl.canPublish(bob, 'ingest/bob'), 'allow')
    assert.equal(acl.canPublish(alice, 'elsewhere'), 'deny')
    assert.equal(dev.canPublish(anon, 'elsewhere'), 'allow')
  })

  test('anonymous never matches a %u rule', () => {
    const a = new Acl(rules, false)
    assert.equal(a.canPublish(anon, 'devices/null/x'), 'deny')
    assert.equal(a.canPublish(anon, 'devices/%u/x'), 'deny')
    assert.equal(a.canPublish(anon, 'devices//x'), 'deny')
    assert.equal(a.canSubscribe(anon, 'devices/+/x'), 'deny')
    assert.equal(a.canSubscribe(anon, 'anon/'), 'deny')
    assert.equal(a.canSubscribe(anon, 'public/x'), 'allow') // a rule without %u still applies
    assert.equal(a.canPublish(anon, 'ingest/sensor-1'), 'allow') // %c still applies
  })

  test('%u and %c together in one level are both substituted', () => {
    assert.equal(acl.canSubscribe(alice, 'mix/alice-alice-phone'), 'allow')
    assert.equal(acl.canSubscribe(alice, 'mix/alice-%c'), 'deny')
    assert.equal(acl.canSubscribe(alice, 'mix/%u-alice-phone'), 'deny')
  })

  test('subscribe in the chat space: own user subtree and own device topic only', () => {
    // Client ids are bound to their user, so alice may follow the replies of her other devices.
    for (const f of ['wb/u/alice/inbox', 'wb/u/alice/#', 'wb/u/alice/+', 'wb/d/alice-phone', 'wb/d/alice', 'wb/d/alice-laptop']) {
      assert.equal(acl.canSubscribe(alice, f), 'allow', f)
    }
    for (const f of ['wb/u/bob/inbox', 'wb/u/+/inbox', 'wb/u/#', 'wb/#', 'wb/+/alice/inbox', 'wb/d/bob',
      'wb/d/bob', 'wb/d/alicex', 'wb/d/+', 'wb/d/#', 'wb/d/alice-phone/#', 'wb/u/alice', 'wb', 'wb/u/alicex/inbox']) {
      assert.equal(acl.canSubscribe(alice, f), 'deny', f)
      assert.equal(dev.canSubscribe(alice, f), 'deny', `dev ${f}`)
    }
    assert.equal(dev.canSubscribe(anon, 'wb/d/sensor-1'), 'allow')
    assert.equal(dev.canSubscribe(anon, 'wb/u/+/inbox'), 'deny')
    assert.equal(acl.canSubscribe(undefined, 'public/x'), 'deny')
  })

  test('subscribe outside the chat space: rules, with filters no wider than the rule', () => {
    assert.equal(acl.canSubscribe(alice, '#'), 'deny')
    assert.equal(acl.canSubscribe(alice, '+/alice/#'), 'deny')
    assert.equal(acl.canSubscribe(alice, 'public/#'), 'allow')
    assert.equal(acl.canSubscribe(alice, 'public/+/x'), 'allow')
    assert.equal(acl.canSubscribe(alice, 'public'), 'allow')
    assert.equal(acl.canSubscribe(alice, 'devices/alice/#'), 'allow')
    assert.equal(acl.canSubscribe(alice, 'devices/+/#'), 'deny')
    assert.equal(acl.canSubscribe(alice, 'ingest/alice-phone'), 'deny') // write-only rule
    assert.equal(dev.canSubscribe(anon, '#'), 'allow')
  })

  test('$SYS: admins only, and no other $-topic for anyone', () => {
    assert.equal(acl.canSubscribe(carol, '$SYS/#'), 'allow')
    assert.equal(acl.canSubscribe(carol, '$SYS/broker/clients/connected'), 'allow')
    assert.equal(acl.canSubscribe(carol, '$SYS'), 'allow')
    assert.equal(acl.canSubscribe(carol, '$SYSX/#'), 'deny')
    assert.equal(acl.canSubscribe(carol, '$WB/refused'), 'deny')
    assert.equal(acl.canSubscribe(carol, '$WB/#'), 'deny')
    assert.equal(acl.canSubscribe(alice, '$SYS/#'), 'deny')
    assert.equal(dev.canSubscribe(anon, '$SYS/#'), 'deny')
    assert.equal(acl.canForward(carol, '$SYS/broker/uptime'), 'allow')
    assert.equal(acl.canForward(alice, '$SYS/broker/uptime'), 'deny')
    assert.equal(acl.canForward(undefined, '$SYS/broker/uptime'), 'deny')
    assert.equal(acl.canForward(carol, '$WB/refused'), 'deny')
    assert.equal(acl.canForward(carol, '$SYS/2f1c/heartbeat'), 'deny') // aedes' internal notices
    assert.equal(acl.canForward(carol, '$SYS/2f1c/new/clients'), 'deny')
  })

  test('a service account writes inboxes and device topics and reads every user\'s sends and client notices', () => {
    const svc = session('bridge', 'bridge', false, true)
    assert.equal(acl.canPublish(svc, 'wb/u/alice/inbox'), 'allow')
    assert.equal(acl.canPublish(svc, 'wb/d/alice-phone'), 'allow')
    assert.equal(acl.canPublish(svc, 'wb/u/alice/out'), 'deny') // never sends as someone else
    assert.equal(acl.canPublish(svc, 'wb/u/alice/other'), 'deny')
    assert.equal(acl.canPublish(svc, '$SYS/broker/x'), 'deny')
    for (const f of ['wb/u/+/out/+', 'wb/u/alice/out/+', 'wb/u/alice/out/alice-phone', '$SYS/+/new/clients', '$SYS/+/disconnect/clients', '$SYS/+/heartbeat', '$SYS/+/warbler/clients']) {
      assert.equal(acl.canSubscribe(svc, f), 'allow', f)
    }
    for (const f of ['wb/#', 'wb/u/+/inbox', 'wb/u/+/out/#', '$SYS/#', '$SYS/broker/#', 'wb/d/+']) {
      assert.equal(acl.canSubscribe(svc, f), 'deny', f)
    }
    assert.equal(acl.canForward(svc, 'wb/u/alice/out/alice-phone'), 'allow')
    assert.equal(acl.canForward(svc, '$SYS/2f1c/new/clients'), 'allow')
    assert.equal(acl.canForward(svc, '$SYS/2f1c/disconnect/clients'), 'allow')
    // Presence: brokers' heartbeats and client lists (bridge/presence.ts); and it may ask for the lists.
    assert.equal(acl.canForward(svc, '$SYS/2f1c/heartbeat'), 'allow')
    assert.equal(acl.canForward(svc, '$SYS/2f1c/warbler/clients'), 'allow')
    assert.equal(acl.canForward(svc, '$SYS/2f1c/birth'), 'deny')
    assert.equal(acl.canPublish(svc, '$SYS/warbler/service/birth'), 'allow')
    assert.equal(acl.canPublish(svc, '$SYS/warbler/service/other'), 'deny')
    assert.equal(new Acl(rules, false, false).canPublish(svc, '$SYS/warbler/service/birth'), 'deny', 'not to a broker that runs its own service')
    assert.equal(acl.canPublish(carol, '$SYS/warbler/service/birth'), 'deny')
    assert.equal(acl.canForward(svc, '$SYS/broker/uptime'), 'deny')
    assert.equal(acl.canForward(svc, 'wb/u/alice/inbox'), 'deny')
    assert.equal(acl.canForward(svc, 'wb/d/alice-phone'), 'deny')
    // Users are not services: none of this is open to them.
    assert.equal(acl.canSubscribe(alice, 'wb/u/+/out/+'), 'deny')
    assert.equal(acl.canSubscribe(carol, '$SYS/+/new/clients'), 'allow') // admins subscribe to $SYS...
    assert.equal(acl.canForward(carol, '$SYS/2f1c/new/clients'), 'deny') // ...but read only the broker tree
    assert.equal(acl.canForward(alice, 'wb/u/bob/out/bob'), 'deny')
  })

  test('forward: a chat packet reaches only its user (or its device), whatever the subscription', () => {
    assert.equal(acl.canForward(alice, 'wb/u/alice/inbox'), 'allow')
    assert.equal(acl.canForward(alice, 'wb/u/bob/inbox'), 'deny')
    assert.equal(acl.canForward(alice, 'wb/u/alicex/inbox'), 'deny')
    assert.equal(acl.canForward(alice, 'wb/d/alice-phone'), 'allow')
    assert.equal(acl.canForward(alice, 'wb/d/alice'), 'allow')
    assert.equal(acl.canForward(alice, 'wb/d/bob-phone'), 'deny')
    assert.equal(acl.canForward(anon, 'wb/u/bob/inbox'), 'deny')
    assert.equal(acl.canForward(anon, 'wb/d/sensor-1'), 'allow')
    assert.equal(acl.canForward(anon, 'wb/d/bob'), 'deny')
    assert.equal(acl.canForward(carol, 'wb/u/bob/inbox'), 'deny')
    assert.equal(acl.canForward(alice, 'public/x'), 'allow')
  })
})

// ---------------------------------------------------------------------------
// Over MQTT
// ---------------------------------------------------------------------------

const USERS = [
  { name: 'alice', password: 'alice-pw-1' },
  { name: 'bob', password: 'bob-pw-1' },
  { name: 'carol', password: 'carol-pw-1', admin: true }
]

async function login (t: { after: (fn: () => unknown) => void }, node: TestNode, user: string, clientId = user): Promise<MqttClient> {
  const u = USERS.find((x) => x.name === user) as { password: string }
  const c = await connect(node.mqttUrl, { username: user, password: u.password, clientId })
  t.after(() => c.endAsync(true))
  return c
}

/** The SUBACK return code for one filter (mqtt.js rejects on 128, with the SUBACK attached). */
async function grant (c: MqttClient, filter: string): Promise<number> {
  try {
    const granted = await c.subscribeAsync(filter, { qos: 1 })
    return granted[0]?.qos as number
  } catch (err) {
    const code = (err as { packet?: { granted?: number[] } }).packet?.granted?.[0]
    if (code === undefined) throw err
    return code
  }
}

/** Watch what the broker routes on a topic, from inside the process (no ACL involved). */
async function watch (t: { after: (fn: () => unknown) => void }, node: TestNode, topic: string): Promise<Array<{ topic: string, payload: string }>> {
  const seen: Array<{ topic: string, payload: string }> = []
  const fn = (packet: AedesPublishPacket, cb: () => void): void => {
    seen.push({ topic: packet.topic, payload: Buffer.from(packet.payload).toString() })
    cb()
  }
  await new Promise<void>((resolve) => node.broker.subscribe(topic, fn, () => resolve()))
  t.after(() => new Promise<void>((resolve) => node.broker.unsubscribe(topic, fn, () => resolve())))
  return seen
}

function servicePublish (node: TestNode, topic: string, payload: string): Promise<void> {
  return new Promise((resolve, reject) => {
    node.broker.publish({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 0, retain: false, dup: false }, (err?: Error) => err ? reject(err) : resolve())
  })
}

async function until (cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

// eslint-disable-next-line max-lines-per-function -- one scenario, its steps read in order top to bottom
describe('over MQTT, normal mode', { timeout: 30_000 }, () => {
  let node: TestNode
  before(async () => {
    node = await startNode(['--acl', 'readwrite devices/%u/#', '--acl', 'read public/#', '--acl', 'readwrite cid/%c/#'], { users: USERS })
  })
  after(() => node?.close())

  test('a spoofed publish is acknowledged, never routed, and answered with not_authorized on the device topic', async (t) => {
    const routed = await watch(t, node, 'wb/u/+/out/#') // the broker may append the sender's client id
    const alice = await login(t, node, 'alice', 'alice-laptop')
    assert.equal(await grant(alice, 'wb/d/alice-laptop'), 1)
    const notice = nextMessage(alice, (topic) => topic === 'wb/d/alice-laptop')
    await alice.publishAsync('wb/u/bob/out', '{"t":"msg","to":"carol","body":"as bob"}', { qos: 1 }) // PUBACK arrives
    const frame = JSON.parse((await notice).payload.toString()) as Record<string, unknown>
    assert.equal(frame.t, 'error')
    assert.equal(frame.code, 'not_authorized')
    assert.equal(frame.topic, 'wb/u/bob/out')
    assert.equal(typeof frame.message, 'string')
    assert.equal(typeof frame.mid, 'number')
    // Positive control on the same connection: her own out topic is routed.
    await alice.publishAsync('wb/u/alice/out', '{"t":"msg","body":"as alice"}', { qos: 1 })
    await until(() => routed.length > 0)
    await collect(alice, 100)
    assert.deepEqual(routed.map((m) => m.topic.split('/').slice(0, 4).join('/')), ['wb/u/alice/out'])
    assert.ok(node.stats.refusals.not_authorized >= 1)
  })

  test('nobody, not even an admin, publishes to an inbox, a device topic or $SYS', async (t) => {
    const routed = await watch(t, node, '#')
    const sysRouted = await watch(t, node, '$SYS/#')
    for (const user of ['alice', 'carol']) {
      const c = await login(t, node, user, `${user}-pub`)
      for (const topic of ['wb/u/bob/inbox', `wb/u/${user}/inbox`, 'wb/u/bob/feed', `wb/u/${user}/feed`, 'wb/d/bob', `wb/d/${user}-pub`, `wb/d/${user}-pub/feed`, '$SYS/broker/version', '$SYS/x']) {
        await c.publishAsync(topic, '{"t":"msg","body":"forged"}', { qos: 1 })
      }
    }
    const c = await login(t, node, 'bob', 'bob-ctl')
    await c.publishAsync('devices/bob/temp', '21', { qos: 1 })
    await until(() => routed.some((m) => m.topic === 'devices/bob/temp'))
    const forged = routed.filter((m) => m.payload.includes('forged'))
    assert.deepEqual(forged, [])
    assert.deepEqual(sysRouted.filter((m) => m.payload.includes('forged')), [])
    // Every device-topic notice went only to the sender's own client id (its plain and feed topics).
    for (const m of routed.filter((x) => x.topic.startsWith('wb/d/'))) {
      assert.ok(['wb/d/alice-pub', 'wb/d/carol-pub', 'wb/d/alice-pub/feed', 'wb/d/carol-pub/feed'].includes(m.topic), m.topic)
      assert.equal((JSON.parse(m.payload) as { code: string }).code, 'not_authorized')
    }
  })

  test('subscriptions: own inbox, own subtree, own device; nothing of others', async (t) => {
    const alice = await login(t, node, 'alice', 'alice-phone')
    for (const f of ['wb/u/bob/inbox', 'wb/u/bob/feed', 'wb/u/+/inbox', 'wb/u/+/feed', 'wb/#', 'wb/d/bob-phone', 'wb/d/bob-phone/feed', 'wb/d/+/feed', 'wb/d/alicex', 'wb/d/alice-phone/x', '#', '+/+/+/inbox', '$SYS/#', '$SYS/broker/uptime', 'devices/bob/#']) {
      assert.equal(await grant(alice, f), 128, f)
    }
    for (const f of ['wb/u/alice/inbox', 'wb/u/alice/feed', 'wb/u/alice/#', 'wb/d/alice-phone', 'wb/d/alice-phone/feed', 'public/#', 'devices/alice/#', 'cid/alice-phone/x']) {
      assert.equal(await grant(alice, f), 1, f)
    }
    // The connection survives the refusals and receives what is hers.
    const got = nextMessage(alice, (t) => t === 'wb/u/alice/inbox')
    await servicePublish(node, 'wb/u/alice/inbox', '{"t":"msg","body":"hi alice"}')
    assert.equal((await got).payload.toString(), '{"t":"msg","body":"hi alice"}')
  })

  test('ACL rules from config grant exactly what they say', async (t) => {
    const alice = await login(t, node, 'alice', 'alice-dev')
    const bob = await login(t, node, 'bob', 'bob-dev')
    assert.equal(await grant(bob, 'devices/bob/#'), 1)
    assert.equal(await grant(bob, 'public/#'), 1)
    assert.equal(await grant(bob, 'cid/bob-dev/#'), 1)
    assert.equal(await grant(bob, 'wb/d/bob-dev'), 1)
    // Up to bob's end marker, published after everything else was acknowledged (and so routed).
    const received = collectUntil(bob, (topic) => topic === 'cid/bob-dev/end')
    await alice.publishAsync('devices/bob/x', 'into bob', { qos: 1 }) // refused: not her %u
    await alice.publishAsync('public/news', 'alice news', { qos: 1 }) // refused: read-only
    await alice.publishAsync('cid/bob-dev/x', 'into bob cid', { qos: 1 }) // refused: not her %c
    await bob.publishAsync('devices/bob/self', 'bob self', { qos: 1 }) // allowed
    await bob.publishAsync('cid/bob-dev/y', 'bob cid', { qos: 1 }) // allowed by %c
    await bob.publishAsync('cid/bob-dev/end', '', { qos: 1 })
    const got = (await received).map((m) => `${m.topic} ${m.payload.toString()}`)
    assert.deepEqual(got.sort(), ['cid/bob-dev/y bob cid', 'devices/bob/self bob self'])
    // A service publish on public/ reaches readers.
    const news = nextMessage(alice, (t) => t === 'public/news')
    assert.equal(await grant(alice, 'public/#'), 1)
    await servicePublish(node, 'public/news', 'from the service')
    assert.equal((await news).payload.toString(), 'from the service')
  })

  test('$SYS/# as a user is refused; as an admin it is granted', async (t) => {
    const alice = await login(t, node, 'alice', 'alice-sys')
    const carol = await login(t, node, 'carol', 'carol-sys')
    assert.equal(await grant(alice, '$SYS/#'), 128)
    assert.equal(await grant(carol, '$SYS/#'), 1)
    assert.equal(await grant(carol, '#'), 128) // admins get no blanket '#' without a rule
  })
})

describe('over MQTT, development mode', { timeout: 30_000 }, () => {
  test('an anonymous "#" subscriber sees ordinary topics but never inboxes, device topics or $SYS', async (t) => {
    const node = await startNode(['--dev', '--sys-interval', '1'], { users: USERS })
    t.after(() => node.close())
    const anon = await connect(node.mqttUrl, { clientId: 'sniffer' })
    t.after(() => anon.endAsync(true))
    assert.equal(await grant(anon, '#'), 1)
    assert.equal(await grant(anon, '+/+/+/inbox'), 1) // allowed in dev, but forward still filters
    assert.equal(await grant(anon, '$SYS/#'), 128)
    assert.equal(await grant(anon, 'wb/u/bob/inbox'), 128)
    const bob = await login(t, node, 'bob', 'bob-phone')
    assert.equal(await grant(bob, 'wb/u/bob/inbox'), 1)
    const bobGot = nextMessage(bob, (t) => t === 'wb/u/bob/inbox')
    const sniffed = collect(anon, 1300) // spans at least one $SYS tick
    await servicePublish(node, 'wb/u/bob/inbox', '{"t":"msg","body":"secret"}')
    await servicePublish(node, 'wb/d/bob-phone', '{"t":"ack"}')
    await servicePublish(node, 'sensors/room1', '22.5')
    await bobGot
    const topics = (await sniffed).map((m) => m.topic)
    assert.ok(topics.includes('sensors/room1'), 'positive control: an ordinary topic arrives')
    assert.deepEqual(topics.filter((x) => x.startsWith('wb/') || x.startsWith('$')), [])
    // The anonymous client may not send as anyone, and publishes elsewhere freely.
    const pubs = await watch(t, node, 'wb/#')
    await anon.publishAsync('wb/u/bob/out', '{"t":"msg"}', { qos: 1 })
    await anon.publishAsync('wb/u/bob/inbox', '{"t":"msg"}', { qos: 1 })
    await anon.publishAsync('anything/goes', 'x', { qos: 1 })
    await collect(anon, 100)
    assert.deepEqual(pubs.filter((m) => m.topic !== 'wb/d/sniffer' && m.topic !== 'wb/d/sniffer/feed'), [])
    assert.ok(pubs.length >= 1, 'the refusal is answered on the sender\'s own device topic')
  })
})

describe('over MQTT, a service account', { timeout: 30_000 }, () => {
  test('writes inboxes and device topics, reads client notices, and nothing of users\' inboxes', async (t) => {
    const dataDir = tempDir()
    t.after(() => rmSync(dataDir, { recursive: true, force: true }))
    for (const u of USERS) await addUser(dataDir, u)
    await withStore(dataDir, (st) => st.addUser('bridge', 'bridge-pw-1', false, true))
    const node = await startNode(['--bridge', 'off'], { dataDir })
    t.after(() => node.close())
    const svc = await connect(node.mqttUrl, { username: 'bridge', password: 'bridge-pw-1', clientId: 'bridge' })
    t.after(() => svc.endAsync(true))
    for (const f of ['wb/u/+/out/+', '$SYS/+/new/clients', '$SYS/+/disconnect/clients']) assert.equal(await grant(svc, f), 1, f)
    for (const f of ['wb/u/+/inbox', 'wb/#', '$SYS/#', '#']) assert.equal(await grant(svc, f), 128, f)

    const hello = nextMessage(svc, (topic) => /^\$SYS\/[^/]+\/new\/clients$/.test(topic))
    const alice = await login(t, node, 'alice', 'alice-phone')
    assert.equal((await hello).payload.toString(), 'alice-phone')
    assert.equal(await grant(alice, 'wb/u/alice/inbox'), 1)
    assert.equal(await grant(alice, 'wb/d/alice-phone'), 1)
    const inbox = nextMessage(alice, (topic) => topic === 'wb/u/alice/inbox')
    await svc.publishAsync('wb/u/alice/inbox', '{"t":"msg","from":"bob"}', { qos: 1 })
    assert.equal((await inbox).payload.toString(), '{"t":"msg","from":"bob"}')
    const ack = nextMessage(alice, (topic) => topic === 'wb/d/alice-phone')
    await svc.publishAsync('wb/d/alice-phone', '{"t":"ack"}', { qos: 1 })
    assert.equal((await ack).payload.toString(), '{"t":"ack"}')
    // It may not send as a user.
    const routed = await watch(t, node, 'wb/u/+/out/#')
    await svc.publishAsync('wb/u/alice/out', '{"t":"msg"}', { qos: 1 })
    await collect(svc, 100)
    assert.deepEqual(routed, [])
  })
})
