/**
 * A persistent session that reconnects while its messages keep flowing gets
 * what was queued for it first and then what arrives live: each message once
 * (a re-delivery of one it never acknowledged comes flagged DUP), in the order
 * it was published (MQTT orders the messages of one topic from one
 * publisher). aedes starts delivering live messages as soon as the CONNACK is
 * out, while it still sends the queue, and a message routed during the
 * reconnect is both queued and live: live messages overtook queued ones, came
 * twice, and the second copy made aedes close the connection (delivery.ts).
 *
 * The publisher here outruns a subscriber that keeps leaving, so its queue
 * grows. With a bound on the queue (`offlineQueue`) the part past it is
 * refused; what was refused while the session was connected or reconnecting
 * still reaches it live, and that used to cut the connection ("no such
 * packet": offline-bound.ts), after which the queue filled and ~1,200 of
 * 3,000 messages never arrived.
 */
import assert from 'node:assert/strict'
import { type TestContext, test } from 'node:test'
import mqtt, { type MqttClient } from 'mqtt'
import { startRedis } from '../helpers/redis.js'
import { connect, startNode } from '../helpers/test-node.js'

const TOTAL = 3000
const CYCLES = 6

test('a persistent session resuming while messages flow gets its queue, then the live ones: each once, in order', async (t) => {
  // A bound the flow cannot reach: every message must arrive.
  const { got, refused, cutOff } = await resumeUnderFlow(t, ['--offline-queue', '100000'])
  assert.equal(refused, 0)
  assert.equal(cutOff, 0, 'the connection was cut')
  assert.equal(got.length, TOTAL)
})

test('past the queue bound, a resuming session is not cut off: it gets each message at most once, in order, and only what was refused is missing', async (t) => {
  const { got, refused, cutOff } = await resumeUnderFlow(t, ['--offline-queue', '50'])
  assert.ok(refused > 0, 'the flow never reached the bound')
  assert.equal(cutOff, 0, 'the connection was cut')
  assert.ok(TOTAL - got.length <= refused, `${TOTAL - got.length} missing but only ${refused} refused`)
})

test('with sessions in Redis: each once, in order', async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  // A session resumes from Redis at a round trip or two per queued message,
  // slower than this publisher sends: the queue takes longer to drain.
  const { got, refused, cutOff } = await resumeUnderFlow(t, ['--redis', redis.url, '--offline-queue', '100000'], 60_000)
  assert.equal(refused, 0)
  assert.equal(cutOff, 0, 'the connection was cut')
  assert.equal(got.length, TOTAL)
})

test('with sessions in Redis, past the queue bound: not cut off, and only what was refused is missing', async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  const { got, refused, cutOff } = await resumeUnderFlow(t, ['--redis', redis.url, '--offline-queue', '50'])
  assert.ok(refused > 0, 'the flow never reached the bound')
  assert.equal(cutOff, 0, 'the connection was cut')
  assert.ok(TOTAL - got.length <= refused, `${TOTAL - got.length} missing but only ${refused} refused`)
})

test('with sessions in Redis and many other persistent subscribers: a message the resumed queue carried does not come again live', async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  // aedes queues each message for every persistent subscriber in turn, a
  // Redis round trip each, and routes it after the last one: with many of
  // them, a session that resumes meanwhile reads the message from its queue
  // well before its live copy comes (resumeUnderFlow fails on a repeat
  // without DUP).
  const { got, refused, cutOff } = await resumeUnderFlow(t, ['--redis', redis.url, '--offline-queue', '100000'], 60_000, { total: 600, others: 60 })
  assert.equal(refused, 0)
  assert.equal(cutOff, 0, 'the connection was cut')
  assert.equal(got.length, 600)
})

/**
 * A steady flow of `total` (TOTAL) messages to one persistent subscriber that leaves
 * and comes back CYCLES times; checks order and duplicates, and returns what
 * arrived, how many were refused by the bound and how often the server cut
 * the subscriber off. `others`: persistent sessions subscribed to the same
 * topic and offline throughout, for which every message is queued too.
 */
async function resumeUnderFlow (t: TestContext, flags: string[], patienceMs = 15_000, opts: { total?: number, others?: number } = {}): Promise<{ got: number[], refused: number, cutOff: number }> {
  const total = opts.total ?? TOTAL
  const node = await startNode(['--dev', '--publish-rate', '0', ...flags])
  t.after(() => node.close())
  let cutOff = 0
  let lastArrival = 0
  const got: number[] = []
  /** Messages sent again because their PUBACK never came (the subscriber left as they arrived): flagged DUP. */
  const resent = new Set<number>()
  const unflagged: number[] = []
  const until = async (what: string, check: () => boolean, ms = patienceMs): Promise<void> => {
    const deadline = Date.now() + ms
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; got ${got.length}, the last ${String(got.at(-1))}`)
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  }
  const open = async (): Promise<MqttClient> => {
    const c = mqtt.connect(node.mqttUrl, { clientId: 'resume-sub', clean: false, reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4 })
    c.on('message', (_topic, payload, packet) => {
      lastArrival = Date.now()
      const v = Number(payload.toString())
      if (!got.includes(v)) got.push(v)
      else if (packet.dup) resent.add(v)
      else unflagged.push(v)
    })
    await new Promise<void>((resolve, reject) => { c.once('connect', () => resolve()); c.once('error', reject) })
    c.on('close', () => { if (!c.disconnecting) cutOff++ })
    return c
  }
  let sub = await open()
  await sub.subscribeAsync('resume/flow', { qos: 1 })
  // After the subscriber: aedes queues a message for its sessions in the order they subscribed.
  for (let i = 0; i < (opts.others ?? 0); i++) {
    const other = await connect(node.mqttUrl, { clientId: `resume-other-${i}`, clean: false })
    await other.subscribeAsync('resume/flow', { qos: 1 })
    await other.endAsync()
  }
  const pub = await connect(node.mqttUrl)
  t.after(() => pub.end(true))
  // A steady flow, bounded in count; the subscriber leaves and comes back
  // several times meanwhile, each time with a queue waiting for it.
  let flowing = true
  let published = 0
  const flow = (async () => {
    for (let i = 0; i < total; i++) {
      await pub.publishAsync('resume/flow', String(i), { qos: 1 })
      published++
      if (i % 50 === 0) await new Promise((resolve) => setTimeout(resolve, 1))
    }
    flowing = false
  })()
  // Past the bound fewer than total arrive: once the flow is over, a quiet
  // half second means nothing more is coming.
  const quiet = (): boolean => !flowing && Date.now() - lastArrival > 500
  for (let c = 0; c < CYCLES; c++) {
    const seen = got.length
    await until(`100 more messages in cycle ${c}`, () => got.length >= Math.min(total, seen + 100) || quiet())
    await sub.endAsync()
    // Messages queue meanwhile: more than a bound of 50 holds, counted rather
    // than timed, so that a slow (loaded) machine still reaches the bound.
    const left = published
    await until(`80 messages queued in cycle ${c}`, () => published >= Math.min(total, left + 80) || !flowing)
    sub = await open()
  }
  await flow
  const refused = (): number => node.stats.refusals.offline_queue_full
  // Everything not refused arrives (a refused one may still come live).
  await until('every message', () => got.length >= total || (got.length >= total - refused() && quiet()))
  await sub.endAsync()
  const late: string[] = []
  got.forEach((v, i) => { if (i > 0 && v < (got[i - 1] as number)) late.push(got.slice(Math.max(0, i - 3), i + 3).join(' ')) })
  assert.deepEqual(late.slice(0, 5), [], `${late.length} messages arrived after a later one`)
  assert.deepEqual(unflagged, [], 'a message came twice without DUP')
  return { got, refused: refused(), cutOff }
}
