/**
 * The message service contract for MQTT 5 clients: a request's Response
 * Topic and Correlation Data, the Message Expiry Interval of typing and
 * presence notices, and the user properties of chat messages (kept,
 * delivered, bounded). Run against each arrangement (embedded and
 * `warbler bridge`), like contract.ts: the properties must survive every
 * path a publish takes to the service and back.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt'
import type { ErrorFrame, MessageFrame, ResultFrame, SingleFrame } from '../../sdk/src/protocol.js'
import { PRESENCE_EXPIRY_S, TYPING_EXPIRY_S, USER_PROPERTIES_MAX_BYTES, USER_PROPERTIES_MAX_PAIRS } from '../../sdk/src/protocol.js'
import type { ChatClient } from '../helpers/chat-client.js'
import { connect } from '../helpers/test-node.js'
import { PW, setupArrangement, type Start } from './contract.js'

interface Got { topic: string, frame: SingleFrame, packet: IPublishPacket }

/** Every frame a client receives, with the MQTT packet it came in (its properties). */
function packetsOn (client: MqttClient): Got[] {
  const got: Got[] = []
  client.on('message', (topic, payload, packet) => {
    const f = JSON.parse(payload.toString('utf8')) as SingleFrame | { t: 'batch', frames: SingleFrame[] }
    for (const one of f.t === 'batch' ? f.frames : [f]) got.push({ topic, frame: one, packet })
  })
  return got
}

async function until<T> (pred: () => T | undefined, what: string, ms = 5000): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = pred()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** A request published with MQTT 5 properties on the user's out topic. */
async function request (x: ChatClient, id: string, op: string, params: Record<string, unknown>, properties: Record<string, unknown>): Promise<void> {
  await x.mqtt.publishAsync(`wb/u/${x.user}/out`, JSON.stringify({ t: 'req', id, op, ...params }), { qos: 1, properties })
}

const answerTo = (id: string) => (g: Got): boolean => (g.frame.t === 'res' && g.frame.id === id) || (g.frame.t === 'error' && g.frame.ref === id)

// eslint-disable-next-line max-lines-per-function -- the contract: each case a few lines, in one list
export function mqtt5Contract (name: string, start: Start): void {
  test(`${name}: a request with a Response Topic is answered there, with its Correlation Data; without one, on the device topic as before`, async (t) => {
    const { c } = await setupArrangement(start, t)
    const alice = await c('alice', { protocolVersion: 5 })
    await alice.sendOk({ to: 'bob' }, 'hi')
    const got = packetsOn(alice.mqtt)
    await alice.mqtt.subscribeAsync('wb/d/alice-rpc', { qos: 1 })
    await request(alice, 'q1', 'history', { conv: 'd:alice:bob' }, { responseTopic: 'wb/d/alice-rpc', correlationData: Buffer.from([1, 2, 3]) })
    const answer = await until(() => got.find(answerTo('q1')), 'the answer on the response topic')
    assert.equal(answer.topic, 'wb/d/alice-rpc')
    assert.equal((answer.frame as ResultFrame).t, 'res')
    assert.equal(((answer.frame as ResultFrame).data as { messages: MessageFrame[] }).messages[0]?.body, 'hi')
    assert.deepEqual([...(answer.packet.properties?.correlationData ?? [])], [1, 2, 3])
    // A refusal of such a request goes there too, with the same Correlation Data.
    await request(alice, 'q2', 'history', { conv: 'nope' }, { responseTopic: 'wb/d/alice-rpc', correlationData: Buffer.from('c2') })
    const refusal = await until(() => got.find(answerTo('q2')), 'the refusal on the response topic')
    assert.equal(refusal.topic, 'wb/d/alice-rpc')
    assert.equal((refusal.frame as ErrorFrame).code, 'bad_request')
    assert.equal(refusal.packet.properties?.correlationData?.toString(), 'c2')
    // Without a Response Topic, the device topic (an MQTT 3.1.1 request is the same).
    await request(alice, 'q3', 'unread', {}, {})
    assert.equal((await until(() => got.find(answerTo('q3')), 'the plain answer')).topic, `wb/d/${alice.clientId}`)
    assert.equal(got.filter((g) => answerTo('q1')(g) || answerTo('q2')(g)).length, 2, 'nothing but the response topic got them')
  })

  test(`${name}: a Response Topic that is not one of the requester's device topics is refused on the device topic, and nobody else gets an answer`, async (t) => {
    const { c } = await setupArrangement(start, t)
    const alice = await c('alice', { protocolVersion: 5 })
    const bob = await c('bob', { device: 'x' })
    await bob.mqtt.subscribeAsync('wb/u/bob/#', { qos: 1 })
    const bobGot = packetsOn(bob.mqtt)
    const got = packetsOn(alice.mqtt)
    const wrong = ['wb/d/bob-x', 'wb/u/bob/inbox', 'wb/u/alice/inbox', 'wb/u/alice/out', 'elsewhere/alice', 'wb/d/aliceX']
    for (const [i, topic] of wrong.entries()) await request(alice, `w${i}`, 'unread', {}, { responseTopic: topic, correlationData: Buffer.from('x') })
    for (const [i, topic] of wrong.entries()) {
      const r = await until(() => got.find(answerTo(`w${i}`)), `the refusal of ${topic}`)
      assert.equal(r.topic, `wb/d/${alice.clientId}`, topic)
      assert.equal((r.frame as ErrorFrame).code, 'not_authorized', topic)
      assert.match((r.frame as ErrorFrame).message, /response topic .* is not one of alice's/)
    }
    // An end marker for bob: a request of his own, answered after all of alice's.
    await bob.req('unread')
    assert.deepEqual(bobGot.filter((g) => g.frame.t === 'res' || g.frame.t === 'error').map((g) => g.topic), ['wb/d/bob-x'], 'bob got only his own answer')
  })

  test(`${name}: typing and presence notices carry a Message Expiry Interval`, async (t) => {
    const { c } = await setupArrangement(start, t)
    const bob = await c('bob', { protocolVersion: 5 })
    const got = packetsOn(bob.mqtt)
    const alice = await c('alice')
    await alice.sendOk({ to: 'bob' }, 'hi')
    await alice.publishRaw(JSON.stringify({ t: 'typing', conv: 'd:alice:bob' }), 0)
    const typing = await until(() => got.find((g) => g.frame.t === 'typing'), 'the typing notice')
    const expiry = typing.packet.properties?.messageExpiryInterval ?? 0
    assert.ok(expiry > 0 && expiry <= TYPING_EXPIRY_S, `typing expiry ${expiry}`)
    await alice.close()
    const presence = await until(() => got.find((g) => g.frame.t === 'presence' && g.frame.user === 'alice'), 'alice going offline', 10_000)
    const p = presence.packet.properties?.messageExpiryInterval ?? 0
    assert.ok(p > 0 && p <= PRESENCE_EXPIRY_S, `presence expiry ${p}`)
  })

  test(`${name}: a persistent MQTT 5 session offline while a typing notice is sent does not get it after the expiry; the messages it missed it gets`, async (t) => {
    const { a, c } = await setupArrangement(start, t)
    const alice = await c('alice')
    await alice.sendOk({ to: 'bob' }, 'first')
    const session = { clientId: 'bob-v5', username: 'bob', password: PW, protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 600 } }
    const first = await connect(a.mqttUrl, session)
    await first.subscribeAsync('wb/u/bob/inbox', { qos: 1 })
    await first.endAsync()
    await alice.publishRaw(JSON.stringify({ t: 'typing', conv: 'd:alice:bob' }), 0)
    const typedAt = Date.now()
    await alice.sendOk({ to: 'bob' }, 'while away')
    // Back after the typing notice expired.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, typedAt + TYPING_EXPIRY_S * 1000 + 500 - Date.now())))
    // Listening before CONNACK: the queued messages follow it at once.
    const again = mqtt.connect(a.mqttUrl, { ...session, reconnectPeriod: 0 })
    const got = packetsOn(again)
    t.after(() => again.endAsync(true))
    await until(() => got.find((g) => g.frame.t === 'msg' && g.frame.body === 'while away'), 'the queued message')
    // A request answered on its device topic after the queue was replayed marks the end.
    await again.subscribeAsync('wb/d/bob-v5', { qos: 1 })
    await again.publishAsync('wb/u/bob/out', JSON.stringify({ t: 'req', id: 'end', op: 'unread' }), { qos: 1 })
    await until(() => got.find(answerTo('end')), 'the end marker')
    assert.deepEqual(got.filter((g) => g.frame.t === 'typing'), [], 'no stale typing notice')
  })

  test(`${name}: a chat message keeps its sender's MQTT 5 user properties: delivered live, on the inbox as properties too, and in history`, async (t) => {
    const { c } = await setupArrangement(start, t)
    const alice = await c('alice', { protocolVersion: 5 })
    const bob = await c('bob', { protocolVersion: 5 })
    const feed = await c('bob', { protocolVersion: 5, feed: true })
    const got = packetsOn(bob.mqtt)
    const fed = packetsOn(feed.mqtt)
    const props = { kind: 'note', tag: ['a', 'b'] }
    await alice.mqtt.publishAsync('wb/u/alice/out', JSON.stringify({ t: 'msg', cid: 'p1', to: 'bob', body: 'with props' }), { qos: 1, properties: { userProperties: props } })
    const live = await until(() => got.find((g) => g.frame.t === 'msg'), 'the message on the inbox')
    assert.deepEqual((live.frame as MessageFrame).props, props)
    assert.deepEqual({ ...live.packet.properties?.userProperties }, props) // mqtt-packet's object has no prototype
    const onFeed = await until(() => fed.find((g) => g.frame.t === 'msg'), 'the message on the feed')
    assert.deepEqual((onFeed.frame as MessageFrame).props, props)
    const page = await bob.req('history', { conv: 'd:alice:bob' })
    assert.deepEqual(page.messages[0]?.props, props)
    assert.deepEqual((await bob.req('sync', {})).messages[0]?.props, props)
    // A message without them has none.
    await alice.sendOk({ to: 'bob' }, 'plain')
    assert.equal((await bob.req('history', { conv: 'd:alice:bob' })).messages[1]?.props, undefined)
  })

  test(`${name}: too many or too large user properties are refused with bad_request, naming the limit, and nothing is stored`, async (t) => {
    const { c } = await setupArrangement(start, t)
    const alice = await c('alice', { protocolVersion: 5 })
    const tooMany = Object.fromEntries(Array.from({ length: USER_PROPERTIES_MAX_PAIRS + 1 }, (_, i) => [`k${i}`, 'v']))
    const tooLarge = { big: 'x'.repeat(USER_PROPERTIES_MAX_BYTES) }
    const cases: Array<[string, Record<string, string>, RegExp]> = [['many', tooMany, /more than the limit of 16/], ['large', tooLarge, /over the limit of 1024/]]
    for (const [cid, userProperties, why] of cases) {
      await alice.mqtt.publishAsync('wb/u/alice/out', JSON.stringify({ t: 'msg', cid, to: 'bob', body: 'x' }), { qos: 1, properties: { userProperties } })
      const r = await alice.until(() => alice.frames.find((f) => f.frame.t === 'error' && f.frame.ref === cid)?.frame as ErrorFrame | undefined, 5000, `refusal of ${cid}`)
      assert.equal(r.code, 'bad_request')
      assert.match(r.message, why)
    }
    await alice.sendOk({ to: 'bob' }, 'the only one')
    assert.deepEqual((await alice.req('history', { conv: 'd:alice:bob' })).messages.map((m) => m.body), ['the only one'])
  })
}
