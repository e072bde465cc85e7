// The SDK's pure parts, without a server: reconnect delays, the sequencer
// (order, duplicates, gaps), option checks and the payload codec.
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { backoffDelay } from '../../sdk/src/backoff.js'
import { decodeFrame, encodeFrame } from '../../sdk/src/codec.js'
import { InvalidArgumentError } from '../../sdk/src/errors.js'
import { type ClientOptions, resolveOptions } from '../../sdk/src/client-options.js'
import { Encoding, type MessageFrame } from '../../sdk/src/protocol.js'
import { Sequencer } from '../../sdk/src/sequencer.js'
import { WarblerClient } from '../../sdk/src/client.js'

describe('backoffDelay', () => {
  const o = { minDelay: 100, maxDelay: 5000 }

  test('stays within [min, min(max, min * 2^n)] for any random draw', () => {
    for (let n = 0; n < 40; n++) {
      const ceiling = Math.min(o.maxDelay, o.minDelay * 2 ** n)
      assert.equal(backoffDelay(n, o, () => 0), o.minDelay, `attempt ${n}, random 0`)
      assert.equal(backoffDelay(n, o, () => 0.999999), o.minDelay + 0.999999 * (ceiling - o.minDelay), `attempt ${n}, random ~1`)
      for (let i = 0; i < 20; i++) {
        const d = backoffDelay(n, o)
        assert.ok(d >= o.minDelay && d <= ceiling, `attempt ${n}: ${d} outside [${o.minDelay}, ${ceiling}]`)
      }
    }
  })

  test('the ceiling doubles per attempt up to the maximum (full jitter spreads below it)', () => {
    const top = (n: number): number => backoffDelay(n, o, () => 1)
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7].map(top), [100, 200, 400, 800, 1600, 3200, 5000, 5000])
    assert.equal(top(1000), 5000, 'huge attempt counts do not overflow')
    assert.equal(backoffDelay(3, o, () => 0.5), 100 + 0.5 * 700)
    assert.equal(backoffDelay(0, { minDelay: 50, maxDelay: 50 }, () => 0.7), 50)
  })
})

function msg (conv: string, seq: number): MessageFrame {
  return { t: 'msg', id: `${conv}#${seq}`, conv, seq, from: 'alice', ts: seq, body: `m${seq}` }
}

/** A sequencer over a fake archive: `fill` answers from `archive` (like history `after`, `limit`). */
function harness (archive: MessageFrame[] = [], initial: Record<string, number> = {}, limit = 200): {
  seq: Sequencer
  got: MessageFrame[]
  fills: Array<[string, number]>
  idle: () => Promise<void>
} {
  const got: MessageFrame[] = []
  const fills: Array<[string, number]> = []
  let inflight = 0
  const seq = new Sequencer((m) => got.push(m), async (conv, after) => {
    fills.push([conv, after])
    inflight++
    await new Promise((resolve) => setImmediate(resolve))
    inflight--
    return archive.filter((m) => m.conv === conv && m.seq > after).sort((a, b) => a.seq - b.seq).slice(0, limit)
  }, initial)
  const idle = async (): Promise<void> => {
    for (let i = 0; i < 1000; i++) {
      await new Promise((resolve) => setImmediate(resolve))
      if (inflight === 0) { await new Promise((resolve) => setImmediate(resolve)); if (inflight === 0) return }
    }
    throw new Error('fills never settled')
  }
  return { seq, got, fills, idle }
}

const seqs = (ms: MessageFrame[], conv = 'c'): number[] => ms.filter((m) => m.conv === conv).map((m) => m.seq)

describe('Sequencer', () => {
  test('start takes an unknown conversation as seen up to a seq; a known one keeps its own', async () => {
    const h = harness([], { known: 2 })
    h.seq.start('c', 5)
    h.seq.start('known', 9)
    for (const s of [3, 5, 6, 7]) h.seq.offer(msg('c', s))
    for (const s of [3, 4]) h.seq.offer(msg('known', s))
    h.seq.expect('c', 5)
    await h.idle()
    assert.deepEqual(seqs(h.got), [6, 7])
    assert.deepEqual(seqs(h.got, 'known'), [3, 4])
    assert.deepEqual(h.fills, [])
    assert.deepEqual(h.seq.state(), { known: 4, c: 7 })
  })

  test('delivers in order and drops duplicates, per conversation, without fetching', async () => {
    const h = harness()
    for (const s of [1, 2, 2, 3, 1, 3, 4]) h.seq.offer(msg('c', s))
    for (const s of [7, 8, 8]) h.seq.offer(msg('d', s)) // an unknown conversation starts at its first message
    await h.idle()
    assert.deepEqual(seqs(h.got), [1, 2, 3, 4])
    assert.deepEqual(seqs(h.got, 'd'), [7, 8])
    assert.deepEqual(h.fills, [])
    assert.deepEqual(h.seq.state(), { c: 4, d: 8 })
  })

  test('a gap is held, filled through the fill callback, then delivered in order', async () => {
    const archive = [1, 2, 3, 4, 5, 6].map((s) => msg('c', s))
    const h = harness(archive, { c: 1 })
    h.seq.offer(msg('c', 2))
    h.seq.offer(msg('c', 5)) // 3 and 4 are missing
    h.seq.offer(msg('c', 6))
    assert.deepEqual(seqs(h.got), [2])
    assert.ok(h.seq.hasGap('c'))
    await h.idle()
    assert.deepEqual(seqs(h.got), [2, 3, 4, 5, 6])
    assert.deepEqual(h.fills, [['c', 2]], 'one fetch for the gap, from the last delivered seq')
    assert.equal(h.seq.hasGap('c'), false)
  })

  test('a gap the server has nothing for is skipped', async () => {
    const archive = [1, 2, 5, 6].map((s) => msg('c', s)) // 3, 4 removed by retention
    const h = harness(archive, { c: 2 })
    h.seq.offer(msg('c', 5))
    await h.idle()
    assert.deepEqual(seqs(h.got), [5, 6], 'skips to the held message, and takes what the fetch brought after it')
    h.seq.offer(msg('c', 7))
    assert.deepEqual(seqs(h.got), [5, 6, 7])
    assert.equal(h.seq.hasGap('c'), false)
  })

  test('a long gap is fetched in pages; a conversation behind the server (expect) catches up', async () => {
    const archive = Array.from({ length: 25 }, (_, i) => msg('c', i + 1))
    const h = harness(archive, { c: 0 }, 10)
    h.seq.offer(msg('c', 25))
    await h.idle()
    assert.deepEqual(seqs(h.got), Array.from({ length: 25 }, (_, i) => i + 1))
    assert.deepEqual(h.fills.map(([, a]) => a), [0, 10, 20])

    const h2 = harness(archive, { c: 3 }, 10)
    h2.seq.expect('c', 25)
    h2.seq.expect('unknown', 9) // never seen: left alone
    await h2.idle()
    assert.deepEqual(seqs(h2.got), Array.from({ length: 22 }, (_, i) => i + 4))
    assert.deepEqual(h2.fills.map(([c, a]) => `${c}:${a}`), ['c:3', 'c:13', 'c:23'])
    assert.equal(h2.seq.hasGap('c'), false)
  })

  test('a failed fetch is retried by the next message or retryGaps', async () => {
    let fail = true
    const got: number[] = []
    const archive = [1, 2, 3, 4].map((s) => msg('c', s))
    // eslint-disable-next-line @typescript-eslint/require-await -- a failed fetch must be a rejected promise, as a real one is
    const s = new Sequencer((m) => got.push(m.seq), async (_conv, after) => {
      if (fail) throw new Error('connection lost')
      return archive.filter((m) => m.seq > after)
    }, { c: 1 })
    s.offer(msg('c', 4))
    await new Promise((resolve) => setImmediate(resolve))
    assert.deepEqual(got, [])
    fail = false
    s.retryGaps()
    await new Promise((resolve) => setImmediate(resolve))
    assert.deepEqual(got, [2, 3, 4])
  })
})

describe('options', () => {
  const good: ClientOptions = { url: 'mqtt://127.0.0.1:1883', username: 'alice', password: 'pw' }

  test('defaults', () => {
    const o = resolveOptions(good)
    assert.equal(o.device, 'sdk')
    assert.deepEqual(o.reconnect, { minDelay: 250, maxDelay: 30_000 })
    assert.equal(o.keepalive, 20)
    assert.equal(o.compressThreshold, 1024)
    assert.equal(o.startAt, 'beginning')
    assert.ok(Object.isFrozen(o))
  })

  const bad: Array<[string, Partial<ClientOptions> | Record<string, unknown>]> = [
    ['url', { url: 'http://x' }],
    ['url', { url: 42 }],
    ['username', { username: 'Alice' }],
    ['username', { username: 'bob-phone' }],
    ['token and password', { token: 'eyJ.a.b' }],
    ['token and password', { password: undefined }],
    ['password', { password: '' }],
    ['token', { password: undefined, token: '' }],
    ['refreshToken', { refreshToken: 'yes' }],
    ['device', { device: 'my phone' }],
    ['device', { device: 'x'.repeat(31) }],
    ['outbox', { outbox: { load: () => Promise.resolve([]) } }],
    ['since', { since: { 'd:a:b': -1 } }],
    ['since', { since: { 'd:a:b': 1.5 } }],
    ['since', { since: [] }],
    ['reconnect.minDelay', { reconnect: { minDelay: 0 } }],
    ['reconnect.maxDelay', { reconnect: { maxDelay: 1.5 } }],
    ['reconnect.maxDelay', { reconnect: { minDelay: 1000, maxDelay: 500 } }],
    ['keepalive', { keepalive: 0 }],
    ['connectTimeout', { connectTimeout: 10 }],
    ['requestTimeout', { requestTimeout: Infinity }],
    ['compressThreshold', { compressThreshold: -1 }],
    ['syncLimit', { syncLimit: 501 }],
    ['waitOnFirstConnect', { waitOnFirstConnect: 'yes' }],
    ['startAt', { startAt: 'recent' }],
    ['startAt', { startAt: true }]
  ]
  for (const [field, change] of bad) {
    test(`a bad ${field} is refused by name (${JSON.stringify(change)})`, () => {
      const o = { ...good, ...change }
      assert.throws(() => resolveOptions(o), (e: unknown) => {
        assert.ok(e instanceof InvalidArgumentError, String(e))
        assert.equal(e.code, 'invalid_argument')
        assert.ok(e.message.startsWith(field) || e.message.includes(field), `"${e.message}" should name ${field}`)
        return true
      })
      // The client's constructor checks the same, before any connection.
      assert.throws(() => new WarblerClient(o), InvalidArgumentError)
    })
  }
})

describe('codec', () => {
  test('a frame below the threshold is plain JSON, above it deflate with the 0x01 marker; both decode', async () => {
    const small = { t: 'msg', cid: 'a', to: 'bob', body: 'hi' }
    const plain = await encodeFrame(small, 1024)
    assert.equal(plain[0], Encoding.json)
    assert.deepEqual(JSON.parse(new TextDecoder().decode(plain)), small)
    assert.deepEqual(await decodeFrame(plain), small)

    const big = { t: 'msg', cid: 'b', to: 'bob', body: 'la '.repeat(2000) }
    const packed = await encodeFrame(big, 1024)
    assert.equal(packed[0], Encoding.deflate)
    assert.ok(packed.length < JSON.stringify(big).length / 10, `compressed to ${packed.length} bytes`)
    assert.deepEqual(await decodeFrame(packed), big)

    assert.equal((await encodeFrame(big, 0))[0], Encoding.json, 'threshold 0: never compress')
  })

  test('incompressible data above the threshold stays plain', async () => {
    const random = Array.from({ length: 600 }, () => Math.random().toString(36).slice(2)).join('')
    const f = { t: 'msg', body: random }
    const out = await encodeFrame(f, 16)
    if (out[0] === Encoding.deflate) assert.ok(out.length < JSON.stringify(f).length)
    assert.deepEqual(await decodeFrame(out), f)
  })

  test('a plain JSON server frame decodes (with leading whitespace, as mosquitto_pub may send); others are refused', async () => {
    const ack = '{"t":"ack","cid":"a-1","conv":"d:alice:bob","seq":1,"id":"x","ts":1}'
    assert.deepEqual(await decodeFrame(new TextEncoder().encode(ack)), JSON.parse(ack))
    assert.deepEqual(await decodeFrame(new TextEncoder().encode(`\n  ${ack}`)), JSON.parse(ack))
    await assert.rejects(decodeFrame(new TextEncoder().encode('hello')))
    await assert.rejects(decodeFrame(Uint8Array.of(Encoding.lz4, 1, 2, 3)))
    await assert.rejects(decodeFrame(new Uint8Array(0)))
  })
})
