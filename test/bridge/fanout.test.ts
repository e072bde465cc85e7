/**
 * The fan-out's own rules, on its inputs and outputs alone: how frames are
 * cut into batch frames, which topics a frame goes to, and that deliveries
 * keep commit order while subscriber lookups are pending. (The contract
 * tests check the same end to end, over a real broker.)
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { batchPayloads, Fanout, type Audience } from '../../bridge/fanout.js'
import type { StoredMessage, StoredReceipt } from '../../bridge/archive/writer.js'
import { BATCH_MAX_BYTES, BATCH_MAX_FRAMES, type SingleFrame } from '../../sdk/src/protocol.js'

function framesOf (payloads: Buffer[]): SingleFrame[] {
  return payloads.flatMap((p) => {
    const f = JSON.parse(p.toString('utf8')) as { t: string, frames?: SingleFrame[] }
    return f.t === 'batch' ? f.frames as SingleFrame[] : [f as SingleFrame]
  })
}

function stored (conv: string, seq: number, recipients: string[], body: unknown = `m${seq}`): StoredMessage {
  return { frame: { t: 'msg', id: `id${seq}`, conv, seq, from: 'ann', ts: 1, cid: `c${seq}`, body }, recipients } as unknown as StoredMessage
}

test('batchPayloads: a lone frame as itself; batches cut at the frame and byte limits, in order, never nested', () => {
  assert.deepEqual(batchPayloads(['{"t":"msg","seq":1}']).map(String), ['{"t":"msg","seq":1}'])
  const many = Array.from({ length: BATCH_MAX_FRAMES * 2 + 3 }, (_, i) => JSON.stringify({ t: 'msg', seq: i + 1 }))
  const cut = batchPayloads(many)
  assert.equal(cut.length, 3)
  assert.deepEqual(framesOf(cut).map((f) => (f as { seq: number }).seq), many.map((_, i) => i + 1))
  const big = JSON.stringify({ t: 'msg', seq: 1, body: 'x'.repeat(BATCH_MAX_BYTES) })
  const small = JSON.stringify({ t: 'msg', seq: 2, body: 'y'.repeat(BATCH_MAX_BYTES / 3) })
  const mixed = batchPayloads([small, small, small, big, small])
  for (const p of mixed) {
    const f = JSON.parse(p.toString('utf8')) as { t: string }
    assert.ok(f.t !== 'batch' || p.length <= BATCH_MAX_BYTES, `a batch of ${p.length} bytes`)
  }
  assert.equal(mixed.filter((p) => p.toString('utf8') === big).length, 1, 'the long frame travels alone, as itself')
  assert.equal(framesOf(mixed).length, 5)
})

test('deliveries go to the topics with subscribers, and keep commit order while lookups are pending', async () => {
  const published: Array<{ topic: string, payload: Buffer }> = []
  const publish = (topic: string, payload: Buffer): Promise<void> => { published.push({ topic, payload }); return Promise.resolve() }
  // ann reads the feed, bob the inbox; carol's lookups answer late (as a persistence lookup may).
  const audience: Audience = {
    live: () => false,
    any: (topic) => {
      if (topic.startsWith('wb/u/carol/')) return new Promise((resolve) => setTimeout(() => { resolve(topic.endsWith('/feed')) }, 30))
      return topic === 'wb/u/ann/feed' || topic === 'wb/u/bob/inbox'
    }
  }
  const counters = { deliveries: 0 }
  const f = new Fanout(publish, audience, counters)
  const first = f.deliver([stored('g:1', 1, ['ann', 'bob', 'carol']), stored('g:1', 2, ['ann', 'bob', 'carol'])])
  const second = f.deliver([stored('d:ann:bob', 1, ['ann', 'bob'])]) // no slow lookup, but after the first
  await Promise.all([...first.values(), ...second.values()])
  assert.equal(counters.deliveries, 8)
  const seen = published.map((p) => `${p.topic} ${framesOf([p.payload]).map((m) => `${(m as { conv: string }).conv}#${(m as { seq: number }).seq}`).join(',')}`)
  assert.deepEqual(seen, [
    'wb/u/ann/feed g:1#1,g:1#2',
    'wb/u/bob/inbox g:1#1',
    'wb/u/bob/inbox g:1#2',
    'wb/u/carol/feed g:1#1,g:1#2',
    'wb/u/ann/feed d:ann:bob#1',
    'wb/u/bob/inbox d:ann:bob#1'
  ])
})

test('without an audience every frame goes to both topics; acks of one loop turn share one batch frame per device', async () => {
  const published: Array<{ topic: string, payload: Buffer }> = []
  const f = new Fanout((topic, payload) => { published.push({ topic, payload }); return Promise.resolve() }, undefined, { deliveries: 0 })
  await Promise.all(f.deliver([stored('d:ann:bob', 1, ['bob']), stored('d:ann:bob', 2, ['bob'])]).values())
  assert.deepEqual(published.map((p) => p.topic), ['wb/u/bob/inbox', 'wb/u/bob/inbox', 'wb/u/bob/feed'])
  published.length = 0
  const ack = (seq: number): { t: 'ack', cid: string, conv: string, seq: number, id: string, ts: number } => ({ t: 'ack', cid: `c${seq}`, conv: 'd:ann:bob', seq, id: `id${seq}`, ts: 1 })
  await Promise.all([f.ack('ann-phone', ack(1)), f.ack('ann-phone', ack(2)), f.ack('ann-tab', ack(3))])
  const byTopic = new Map<string, number[]>()
  for (const p of published) byTopic.set(p.topic, [...(byTopic.get(p.topic) ?? []), ...framesOf([p.payload]).map((a) => (a as { seq: number }).seq)])
  assert.deepEqual(Object.fromEntries(byTopic), {
    'wb/d/ann-phone/feed': [1, 2],
    'wb/d/ann-phone': [1, 2],
    'wb/d/ann-tab/feed': [3],
    'wb/d/ann-tab': [3]
  })
  assert.equal(published.filter((p) => p.topic === 'wb/d/ann-phone/feed').length, 1, 'one publish for both acks')
})

test('a commit\'s receipts follow its messages: in the batch frame on a feed, at QoS 0 on an inbox; a device topic and its feed each get answers when each is read', async () => {
  const published: Array<{ topic: string, payload: Buffer, qos: 0 | 1 }> = []
  const publish = (topic: string, payload: Buffer, qos: 0 | 1): Promise<void> => { published.push({ topic, payload, qos }); return Promise.resolve() }
  // ann reads her feed, bob his inbox; one connection reads ann-pub's device topic, another its feed.
  const live = new Set(['wb/d/ann-pub', 'wb/d/ann-pub/feed', 'wb/d/bob-app/feed'])
  const audience: Audience = { live: (topic) => live.has(topic), any: (topic) => topic === 'wb/u/ann/feed' || topic === 'wb/u/bob/inbox' }
  const f = new Fanout(publish, audience, { deliveries: 0 })
  const receipt: StoredReceipt = { frame: { t: 'receipt', conv: 'd:ann:bob', user: 'ann', read: 1, delivered: 1 }, recipients: ['ann', 'bob'] }
  await Promise.all(f.deliver([stored('d:ann:bob', 1, ['ann', 'bob'])], [receipt]).values())
  assert.deepEqual(published.map((p) => [p.topic, p.qos, framesOf([p.payload]).map((x) => x.t).join(',')]), [
    ['wb/u/ann/feed', 1, 'msg,receipt'],
    ['wb/u/bob/inbox', 1, 'msg'],
    ['wb/u/bob/inbox', 0, 'receipt']
  ])
  // A commit of receipts alone (an explicit read): QoS 0 on both.
  published.length = 0
  f.deliver([], [receipt]) // lookups that answer at once: published at once
  assert.deepEqual(published.map((p) => [p.topic, p.qos]), [['wb/u/ann/feed', 0], ['wb/u/bob/inbox', 0]])
  // Device answers: to each topic read; to the feed alone when only it is read; to both when none is read here.
  published.length = 0
  await f.toDevice('ann-pub', { t: 'res', id: 'r1', data: {} }, 1)
  await f.toDevice('bob-app', { t: 'res', id: 'r2', data: {} }, 1)
  await f.toDevice('bob-away', { t: 'res', id: 'r3', data: {} }, 1)
  assert.deepEqual(published.map((p) => p.topic), ['wb/d/ann-pub', 'wb/d/ann-pub/feed', 'wb/d/bob-app/feed', 'wb/d/bob-away', 'wb/d/bob-away/feed'])
  published.length = 0
  await f.ack('ann-pub', { t: 'ack', cid: 'c1', conv: 'd:ann:bob', seq: 1, id: 'id1', ts: 1 })
  assert.deepEqual(published.map((p) => p.topic).sort(), ['wb/d/ann-pub', 'wb/d/ann-pub/feed'])
})
