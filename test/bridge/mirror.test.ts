/**
 * The Redis mirror of hot data (`--redis`), on a real redis-server: the
 * documented keys with their content, caps and TTLs; the newest history page
 * served from Redis and equal to SQLite's; a FLUSHALL or a gap healed from
 * SQLite; Redis killed (-9) and restarted, or hung (SIGSTOP), while senders
 * keep sending: no send fails or waits for Redis, nothing is lost, history
 * stays right, the mirror resumes, and waiting writes stay bounded.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Redis } from 'ioredis'
import type { AckFrame, MessageFrame } from '../../sdk/src/protocol.js'
import { createLogger } from '../../shared/log.js'
import { RECENT, RedisMirror } from '../../bridge/redis-mirror.js'
import type { StoredMessage } from '../../bridge/archive/writer.js'
import { ChatClient } from '../helpers/chat-client.js'
import { startRedis, type RedisServer } from '../helpers/redis.js'
import type { Socket } from 'node:net'
import { rmSync } from 'node:fs'
import { startNode, type TestNode, tempDir } from '../helpers/test-node.js'

const PW = 'password-123'
const USERS = ['alice', 'bob', 'carol'].map((name) => ({ name, password: PW }))
const DAY = 86400

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function waitFor<T> (what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v !== undefined && v !== false) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

interface Setup {
  redis: RedisServer
  node: TestNode
  /** An independent client to look at what the node wrote. */
  r: Redis
  mirror: RedisMirror
  c: (user: string) => Promise<ChatClient>
}

async function setup (t: { after: (fn: () => Promise<void>) => void }, args: string[] = []): Promise<Setup> {
  const redis = await startRedis()
  const node = await startNode(['--redis', redis.url, '--publish-rate', '0', ...args], { users: USERS })
  const r = new Redis(redis.url, { maxRetriesPerRequest: 1 })
  r.on('error', () => {})
  const clients: ChatClient[] = []
  t.after(async () => {
    try { process.kill(redis.pid, 'SIGCONT') } catch { /* already gone */ }
    for (const x of clients) await x.close().catch(() => {})
    await node.close()
    r.disconnect()
    await redis.stop()
  })
  // The service's options are private; the test reads the mirror it was given.
  const mirror = (node.service as unknown as { opts: { mirror?: RedisMirror } }).opts.mirror
  assert.ok(mirror !== undefined, 'the embedded service has a Redis mirror')
  return {
    redis,
    node,
    r,
    mirror,
    c: async (user) => {
      const x = await ChatClient.connect(node.mqttUrl, user, PW)
      clients.push(x)
      // mqtt.js leaves Nagle on: without this each send-then-ack round trip waits for a delayed ACK.
      ;(x.mqtt.stream as Socket).setNoDelay(true)
      return x
    }
  }
}

const frames = (raw: string[]): MessageFrame[] => raw.map((x) => JSON.parse(x) as MessageFrame)
const seqs = (ms: MessageFrame[]): number[] => ms.map((m) => m.seq)
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i)

async function ttl (r: Redis, key: string): Promise<number> { return await r.ttl(key) }

test('after a chat the documented keys hold the right content, capped and expiring', async (t) => {
  const { r, c, node } = await setup(t)
  const alice = await c('alice')
  const bob = await c('bob')
  const carol = await c('carol')
  const acks: AckFrame[] = []
  for (let i = 1; i <= 60; i++) acks.push(await alice.sendOk({ to: 'bob' }, `m${i}`))
  const fromBob = await bob.sendOk({ to: 'alice' }, 'back')
  const g = (await alice.req<{ conv: string }>('group.create', { name: 'mirror', members: ['bob', 'carol'] })).conv
  for (let i = 1; i <= 3; i++) await alice.sendOk({ conv: g }, `g${i}`)
  for (let i = 1; i <= 5; i++) await alice.sendOk({ to: 'carol' }, `c${i}`)
  await carol.req('read', { conv: 'd:alice:carol', seq: 2 })
  // Mirror writes are fire and forget: wait for the last one.
  await waitFor('the last mirror write', async () => (await r.hget('wb:unread:carol', 'd:alice:carol')) === '3')

  // wb:recent:{conv}: the last 50, newest first, 7 days.
  const recent = frames(await r.lrange('wb:recent:d:alice:bob', 0, -1))
  assert.equal(recent.length, RECENT)
  assert.deepEqual(seqs(recent), range(12, 61).reverse())
  assert.deepEqual(recent[0], { t: 'msg', id: fromBob.id, conv: 'd:alice:bob', seq: 61, from: 'bob', ts: fromBob.ts, body: 'back', cid: fromBob.cid })
  assert.equal(recent[1]?.id, acks[59]?.id)
  const hist = await node.service?.reader.history('d:alice:bob', { limit: RECENT })
  assert.deepEqual(recent.slice().reverse(), hist?.messages, 'the same frames as SQLite')
  assert.ok(await ttl(r, 'wb:recent:d:alice:bob') > 7 * DAY - 60)
  assert.deepEqual(seqs(frames(await r.lrange(`wb:recent:${g}`, 0, -1))), [4, 3, 2, 1])

  // wb:convs:{user}: conversations by last activity (ms), 30 days.
  const convs = await r.zrange('wb:convs:alice', 0, -1, 'WITHSCORES')
  assert.deepEqual(convs.filter((_, i) => i % 2 === 0), ['d:alice:bob', g, 'd:alice:carol'])
  assert.equal(Number(convs[1]), fromBob.ts)
  assert.deepEqual(await r.zrange('wb:convs:carol', 0, -1), [g, 'd:alice:carol'])
  assert.ok(await ttl(r, 'wb:convs:alice') > 30 * DAY - 60)

  // wb:unread:{user}: what SQLite counts, 30 days.
  for (const u of [alice, bob, carol]) {
    const sqlite = await u.req<{ conversations: Record<string, number> }>('unread')
    const mirrored = Object.fromEntries(Object.entries(await r.hgetall(`wb:unread:${u.user}`)).map(([k, v]): [string, number] => [k, Number(v)]).filter(([, v]) => v !== 0))
    assert.deepEqual(mirrored, sqlite.conversations, `${u.user}: unread counts as in SQLite`)
  }
  assert.deepEqual(await r.hgetall('wb:unread:carol'), { [g]: '4', 'd:alice:carol': '3' })
  assert.ok(await ttl(r, 'wb:unread:bob') > 30 * DAY - 60)

  // wb:online:{user} while connected (TTL), wb:seen:{user} after.
  assert.equal(await r.get('wb:online:alice'), '1')
  const onlineTtl = await ttl(r, 'wb:online:alice')
  assert.ok(onlineTtl > 0 && onlineTtl <= 300, `online TTL ${onlineTtl}`)
  const before = Date.now()
  await alice.close()
  await waitFor('alice offline in Redis', async () => (await r.exists('wb:online:alice')) === 0)
  const seen = Number(await r.get('wb:seen:alice'))
  assert.ok(seen >= before - 1000 && seen <= Date.now(), `last seen ${seen}`)
  assert.ok(await ttl(r, 'wb:seen:alice') > 30 * DAY - 60)
})

test('the newest history page is served from Redis, equal to SQLite; a FLUSHALL or a gap falls back to SQLite and is rebuilt', async (t) => {
  const { r, c, node, mirror } = await setup(t)
  const alice = await c('alice')
  const bob = await c('bob')
  for (let i = 1; i <= 30; i++) await alice.sendOk({ to: 'bob' }, `h${i}`)
  await waitFor('the recent list', async () => (await r.llen('wb:recent:d:alice:bob')) === 30)
  const reader = node.service?.reader
  assert.ok(reader !== undefined)
  const page = async (limit?: number): Promise<{ messages: MessageFrame[], more: boolean }> =>
    await bob.req('history', { conv: 'd:alice:bob', ...(limit !== undefined ? { limit } : {}) })

  let { hits, misses } = mirror.stats
  const p20 = await page(20)
  assert.equal(mirror.stats.hits, hits + 1, 'served from Redis')
  assert.deepEqual(p20, await reader.history('d:alice:bob', { limit: 20 }))
  assert.deepEqual(seqs(p20.messages), range(11, 30))
  const all = await page()
  assert.equal(mirror.stats.hits, hits + 2)
  assert.deepEqual(all, { messages: (await reader.history('d:alice:bob', { limit: 50 })).messages, more: false })
  // Pages other than the newest come from SQLite.
  assert.deepEqual(await bob.req('history', { conv: 'd:alice:bob', before: 11, limit: 5 }), await reader.history('d:alice:bob', { before: 11, limit: 5 }))
  assert.equal(mirror.stats.hits, hits + 2)

  // Redis loses everything: the read misses, SQLite answers, the list is rebuilt.
  await r.flushall()
  ;({ hits, misses } = mirror.stats)
  assert.deepEqual(await page(20), p20)
  assert.equal(mirror.stats.misses, misses + 1)
  await waitFor('the rebuilt list', async () => (await r.llen('wb:recent:d:alice:bob')) === 30)
  assert.deepEqual(await page(20), p20)
  assert.equal(mirror.stats.hits, hits + 1, 'served from Redis again')

  // A gap (a lost write) or a stale head is never served.
  await r.lrem('wb:recent:d:alice:bob', 1, await r.lindex('wb:recent:d:alice:bob', 5) as string)
  ;({ hits, misses } = mirror.stats)
  assert.deepEqual(await page(20), p20)
  assert.equal(mirror.stats.misses, misses + 1)
  await waitFor('the rebuilt list', async () => (await r.llen('wb:recent:d:alice:bob')) === 30)
  await r.lpop('wb:recent:d:alice:bob')
  assert.deepEqual(await page(20), p20)
  assert.equal(mirror.stats.misses, misses + 2)
  await waitFor('the rebuilt list', async () => (await r.llen('wb:recent:d:alice:bob')) === 30)
  assert.deepEqual(await page(30), { messages: (await reader.history('d:alice:bob', { limit: 30 })).messages, more: false })
  assert.equal(mirror.stats.hits, hits + 1)
  // Pages larger than the mirror holds come from SQLite.
  for (let i = 31; i <= 60; i++) await alice.sendOk({ to: 'bob' }, `h${i}`)
  assert.deepEqual(await page(100), await reader.history('d:alice:bob', { limit: 100 }))
})

test('Redis killed (-9) and restarted while senders keep sending: no send fails, nothing is lost, history stays right, the mirror resumes', { timeout: 30_000 }, async (t) => {
  const { redis, r, c, node, mirror } = await setup(t)
  const alice = await c('alice')
  const bob = await c('bob')
  const carol = await c('carol')
  const g = (await alice.req<{ conv: string }>('group.create', { name: 'load', members: ['bob', 'carol'] })).conv
  const acks: AckFrame[] = []
  const failures: string[] = []
  let stop = false
  const sender = async (who: ChatClient, target: { to: string } | { conv: string }, n: number): Promise<void> => {
    for (let i = 0; i < 400 && !stop; i++) {
      try {
        const a = await who.send(target, `${who.user} ${n}.${i}`, `${who.user}-${n}-${i}`)
        if (a.t === 'ack') acks.push(a)
        else failures.push(`${a.code}: ${a.message}`)
      } catch (err) {
        failures.push(String(err))
      }
    }
  }
  const senders = [
    ...[0, 1, 2].map((n) => sender(alice, { to: 'bob' }, n)),
    ...[0, 1].map((n) => sender(bob, { conv: g }, n)),
    ...[0, 1].map((n) => sender(carol, { to: 'alice' }, n))
  ]
  const t0 = Date.now()
  await waitFor('some acks', () => acks.length >= 100)
  // An outage of half a second, then a quick one.
  process.kill(redis.pid, 'SIGKILL')
  await sleep(500)
  const duringOutage = acks.length
  await redis.restart()
  await waitFor('more acks', () => acks.length >= duringOutage + 100)
  await redis.restart({ kill: true })
  await waitFor('more acks', () => acks.length >= duringOutage + 200)
  stop = true
  await Promise.all(senders)
  assert.deepEqual(failures, [], 'no send failed')
  assert.ok(acks.length >= 300)
  assert.ok(mirror.stats.dropped + mirror.stats.errors > 0, 'the mirror noticed the outages')

  // Nothing lost: every ack is in SQLite, and every conversation is whole.
  const reader = node.service?.reader
  assert.ok(reader !== undefined)
  for (const a of acks) {
    const m = await reader.message(a.id)
    assert.deepEqual([m?.conv, m?.seq, m?.cid], [a.conv, a.seq, a.cid])
  }
  for (const conv of ['d:alice:bob', 'd:alice:carol', g]) {
    const last: number = (await reader.conversation(conv))?.lastSeq ?? 0
    const got: MessageFrame[] = []
    let after = 0
    for (let i = 0; i < 20; i++) {
      const p = await reader.history(conv, { after, limit: 200 })
      got.push(...p.messages)
      after = got[got.length - 1]?.seq ?? after
      if (!p.more) break
    }
    assert.deepEqual(seqs(got), range(1, last), `${conv}: 1..${last}`)
  }

  // The mirror resumes: it writes again, and after at most one rebuild serves history from Redis.
  await waitFor('the mirror connected', () => mirror.connected)
  for (const [who, target, conv] of [[alice, { to: 'bob' }, 'd:alice:bob'], [bob, { conv: g }, g], [carol, { to: 'alice' }, 'd:alice:carol']] as const) {
    await who.sendOk(target, 'after the outage')
    const sqlite = await reader.history(conv, { limit: 20 })
    assert.deepEqual((await who.req('history', { conv, limit: 20 })).messages, sqlite.messages)
    await waitFor(`${conv} mirrored`, async () => (JSON.parse(await r.lindex(`wb:recent:${conv}`, 0) ?? '{}') as { seq?: number }).seq === sqlite.messages[19]?.seq)
    const hits = mirror.stats.hits
    await waitFor(`${conv} served from Redis`, async () => {
      assert.deepEqual((await who.req('history', { conv, limit: 20 })).messages, sqlite.messages)
      return mirror.stats.hits > hits
    })
    assert.equal(await r.llen(`wb:recent:${conv}`), RECENT)
  }
  t.diagnostic(`${acks.length} acks in ${Date.now() - t0} ms; mirror ${JSON.stringify(mirror.stats)}`)
})

test('a hung Redis (SIGSTOP) holds up no send and no history request, and the mirror\'s waiting writes stay bounded', { timeout: 30_000 }, async (t) => {
  const { redis, r, c, node, mirror } = await setup(t)
  const alice = await c('alice')
  const bob = await c('bob')
  const s0 = Date.now()
  for (let i = 1; i <= 10; i++) await alice.sendOk({ to: 'bob' }, `s${i}`)
  const normalMs = Date.now() - s0
  await waitFor('the recent list', async () => (await r.llen('wb:recent:d:alice:bob')) === 10)
  process.kill(redis.pid, 'SIGSTOP')
  const started = Date.now()
  for (let i = 11; i <= 40; i++) {
    const a = await alice.send({ to: 'bob' }, `s${i}`)
    assert.equal(a.t, 'ack', JSON.stringify(a))
  }
  const sendMs = Date.now() - started
  const h0 = Date.now()
  const page = await bob.req('history', { conv: 'd:alice:bob', limit: 20 })
  const historyMs = Date.now() - h0
  const sqlite = await node.service?.reader.history('d:alice:bob', { limit: 20 })
  assert.deepEqual(page.messages, sqlite?.messages)
  assert.ok(historyMs < 2000, `history answered in ${historyMs} ms with Redis hung`)
  assert.ok(sendMs < 5000, `30 sends in ${sendMs} ms with Redis hung`)
  assert.ok(mirror.pending > 0 && mirror.pending <= 1000, `pending ${mirror.pending}`)
  process.kill(redis.pid, 'SIGCONT')
  await waitFor('the waiting writes answered', () => mirror.pending === 0)
  // What waited is applied in order; the list is whole again, or rebuilt on the next read.
  await waitFor('history from Redis', async () => {
    const hits = mirror.stats.hits
    assert.deepEqual((await bob.req('history', { conv: 'd:alice:bob', limit: 20 })).messages, sqlite?.messages)
    return mirror.stats.hits > hits
  })
  t.diagnostic(`10 sends ${normalMs} ms before, 30 sends ${sendMs} ms hung, history ${historyMs} ms; mirror ${JSON.stringify(mirror.stats)}`)
})

test('messages deleted by retention are not served from the mirror', { timeout: 20_000 }, async (t) => {
  const redis = await startRedis()
  const dataDir = tempDir()
  let node = await startNode(['--redis', redis.url, '--publish-rate', '0'], { users: USERS, dataDir })
  const clients: ChatClient[] = []
  t.after(async () => {
    for (const x of clients) await x.close().catch(() => {})
    await node.close()
    await redis.stop()
    rmSync(dataDir, { recursive: true, force: true })
  })
  const alice = await ChatClient.connect(node.mqttUrl, 'alice', PW)
  clients.push(alice)
  for (let i = 1; i <= 30; i++) await alice.sendOk({ to: 'bob' }, `r${i}`)
  await alice.req('history', { conv: 'd:alice:bob' })
  await alice.close()
  await node.close()
  // Retention runs at start: only the newest 10 remain in SQLite; Redis still lists 30.
  node = await startNode(['--redis', redis.url, '--publish-rate', '0', '--retention-messages', '10'], { dataDir })
  const bob = await ChatClient.connect(node.mqttUrl, 'bob', PW)
  clients.push(bob)
  const reader = node.service?.reader
  assert.ok(reader !== undefined)
  await waitFor('retention', async () => (await reader.history('d:alice:bob', { limit: 50 })).messages.length === 10)
  const mirror = (node.service as unknown as { opts: { mirror: RedisMirror } }).opts.mirror
  for (const limit of [50, 20, 10, 5, 50, 20, 10, 5]) {
    const page = await bob.req<{ messages: MessageFrame[], more: boolean }>('history', { conv: 'd:alice:bob', limit })
    assert.deepEqual(page, await reader.history('d:alice:bob', { limit }), `limit ${limit}`)
  }
  assert.ok(mirror.stats.hits >= 4, 'served from the mirror once rebuilt')
})

function stored (conv: string, seq: number, ts: number, recipients: string[], from = 'x'): StoredMessage {
  return { frame: { t: 'msg', id: `id-${conv}-${seq}`, conv, seq, from, ts, body: `b${seq}`, cid: `c${seq}` }, recipients }
}

test('mirror unit: caps, presence kept alive while online, bounded waiting writes while Redis hangs, bounded reads and close', { timeout: 20_000 }, async (t) => {
  const redis = await startRedis()
  const r = new Redis(redis.url, { maxRetriesPerRequest: 1 })
  r.on('error', () => {})
  const mirror = await RedisMirror.connect(redis.url, createLogger('error'), { maxPending: 10, onlineTtlS: 1 })
  t.after(async () => {
    try { process.kill(redis.pid, 'SIGCONT') } catch { /* already gone */ }
    await mirror.close()
    r.disconnect()
    await redis.stop()
  })
  // The conversation list keeps the newest 500; the recent list the newest 50.
  const now = Date.now()
  mirror.stored(Array.from({ length: 510 }, (_, i) => stored(`g:${i}`, 1, now + i, ['u'])))
  mirror.stored(Array.from({ length: 70 }, (_, i) => stored('g:big', i + 1, now + 1000 + i, ['u'])))
  await waitFor('writes answered', () => mirror.pending === 0)
  assert.equal(await r.zcard('wb:convs:u'), 500)
  assert.equal(await r.zscore('wb:convs:u', 'g:10'), null, 'the oldest conversations went first')
  assert.equal(await r.zscore('wb:convs:u', 'g:11'), String(now + 11))
  assert.equal(await r.llen('wb:recent:g:big'), RECENT)
  assert.deepEqual(seqs(await mirror.recent('g:big', 70, 50) ?? []), range(21, 70))
  assert.deepEqual(seqs(await mirror.recent('g:big', 69, 10) ?? []), range(60, 69), 'a message newer than the caller\'s last seq is skipped')
  assert.equal(await mirror.recent('g:big', 71, 10), null, 'a head older than the last seq is a miss')
  assert.equal(await mirror.recent('g:big', 70, 51), null, 'more than the mirror holds is a miss')

  // Presence: the online key outlives its TTL while the user is online, and goes when it leaves.
  mirror.presence('p', true, Date.now())
  await sleep(1600)
  assert.equal(await r.get('wb:online:p'), '1', 'refreshed while online')
  assert.ok(await r.pttl('wb:online:p') <= 1000)
  await r.flushall()
  await waitFor('presence put back', async () => (await r.get('wb:online:p')) === '1')
  mirror.presence('p', false, Date.now())
  await waitFor('offline', async () => (await r.exists('wb:online:p')) === 0)
  await sleep(1200)
  assert.equal(await r.exists('wb:online:p'), 0, 'not put back once offline')

  // Redis hangs: at most maxPending writes wait; reads give up in time.
  process.kill(redis.pid, 'SIGSTOP')
  const { dropped } = mirror.stats
  for (let i = 0; i < 100; i++) mirror.stored([stored('g:hung', i + 1, Date.now(), ['u'])])
  assert.equal(mirror.pending, 10)
  assert.equal(mirror.stats.dropped, dropped + 90)
  const t0 = Date.now()
  assert.equal(await mirror.recent('g:hung', 100, 20), null)
  assert.ok(Date.now() - t0 < 1500, `a read gave up in ${Date.now() - t0} ms`)
  process.kill(redis.pid, 'SIGCONT')
  await waitFor('waiting writes answered', () => mirror.pending === 0)
  assert.deepEqual(seqs(frames(await r.lrange('wb:recent:g:hung', 0, -1))), range(1, 10).reverse(), 'the writes that waited, applied in order')
  assert.equal(await mirror.recent('g:hung', 100, 20), null, 'the dropped ones are a gap, never served')

  // Redis gone: nothing is queued, and close() does not wait for it.
  process.kill(redis.pid, 'SIGSTOP')
  const c0 = Date.now()
  await mirror.close()
  assert.ok(Date.now() - c0 < 2500, `close took ${Date.now() - c0} ms`)
  mirror.stored([stored('g:after', 1, Date.now(), ['u'])])
  assert.equal(mirror.pending, 0, 'nothing is issued after close')
})
