/**
 * The Redis mirror writes one commit's messages gathered per key: a few
 * commands per conversation and member, whatever the number of messages
 * (counted by Redis' INFO commandstats), leaving the keys exactly as the
 * commands applied message by message would (checked against a reference
 * built here, one command per message, on the same real redis-server).
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Redis } from 'ioredis'
import type { MessageFrame } from '../../sdk/src/protocol.js'
import { createLogger } from '../../shared/log.js'
import { RedisMirror } from '../../bridge/redis-mirror.js'
import type { StoredMessage } from '../../bridge/archive/writer.js'
import { startRedis } from '../helpers/redis.js'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function calls (r: Redis): Promise<Record<string, number>> {
  const info = await r.info('commandstats')
  return Object.fromEntries([...info.matchAll(/^cmdstat_(\S+):calls=(\d+)/gm)].map((m) => [m[1] as string, Number(m[2])]))
}

/** A commit as the writer hands it over: alice and bob chatting, carol in a group with them, a system message. */
function commit (n: number): StoredMessage[] {
  const out: StoredMessage[] = []
  const seq = new Map<string, number>()
  for (let i = 0; i < n; i++) {
    const direct = i % 3 !== 2
    const conv = direct ? 'd:alice:bob' : 'g:team'
    const from = direct ? (i % 7 === 0 ? 'bob' : 'alice') : (i % 5 === 0 ? 'carol' : 'bob')
    const s = (seq.get(conv) ?? 0) + 1
    seq.set(conv, s)
    const system = i === n - 1
    const frame: MessageFrame = { t: 'msg', id: `m${i}`, conv, seq: s, from: system ? 'system' : from, ts: 1_700_000_000_000 + i, body: `b${i}`, ...(system ? {} : { cid: `c${i}` }) }
    out.push({ frame, recipients: direct ? ['alice', 'bob'] : ['alice', 'bob', 'carol'] })
  }
  return out
}

/** What the mirror wrote before it gathered per key: the same keys, one command per message and recipient. */
async function oneByOne (r: Redis, prefix: string, messages: StoredMessage[]): Promise<void> {
  const m = r.multi()
  for (const { frame, recipients } of messages) {
    m.lpush(`${prefix}recent:${frame.conv}`, JSON.stringify(frame)).ltrim(`${prefix}recent:${frame.conv}`, 0, 49)
    for (const user of recipients) {
      m.zadd(`${prefix}convs:${user}`, frame.ts, frame.conv)
      if (user === frame.from && frame.cid !== undefined) m.hdel(`${prefix}unread:${user}`, frame.conv)
      else m.hincrby(`${prefix}unread:${user}`, frame.conv, 1)
    }
  }
  await m.exec()
}

async function dump (r: Redis, prefix: string): Promise<unknown> {
  const out: Record<string, unknown> = {}
  for (const c of ['d:alice:bob', 'g:team']) out[`recent:${c}`] = await r.lrange(`${prefix}recent:${c}`, 0, -1)
  for (const u of ['alice', 'bob', 'carol']) {
    out[`convs:${u}`] = await r.zrange(`${prefix}convs:${u}`, 0, -1, 'WITHSCORES')
    out[`unread:${u}`] = await r.hgetall(`${prefix}unread:${u}`)
  }
  return out
}

test('a commit of many messages costs a few Redis commands per key, and leaves the keys as one by one would', async (t) => {
  const redis = await startRedis()
  const r = new Redis(redis.url, { maxRetriesPerRequest: 1 })
  r.on('error', () => {})
  const mirror = await RedisMirror.connect(redis.url, createLogger('error'))
  t.after(async () => {
    await mirror.close()
    r.disconnect()
    await redis.stop()
  })
  // Two commits: the second one adds to what the first left (counters, lists past their cap).
  const commits = [commit(90), commit(40).map(({ frame, recipients }) => ({ frame: { ...frame, seq: frame.seq + 100, id: `x${frame.id}`, ts: frame.ts + 1000 }, recipients }))]
  const before = await calls(r)
  for (const c of commits) mirror.stored(c)
  for (let i = 0; i < 500 && (mirror.pending > 0 || mirror.stats.writes < 2); i++) await sleep(10)
  assert.equal(mirror.pending, 0, 'the mirror writes were answered')
  assert.equal(mirror.stats.errors, 0)
  const after = await calls(r)
  const used = (cmd: string): number => (after[cmd] ?? 0) - (before[cmd] ?? 0)
  // Per commit: one LPUSH per conversation (2), one ZADD per member (3), one HINCRBY or HDEL per member and conversation.
  assert.equal(used('lpush'), 2 * 2, 'one LPUSH per conversation and commit')
  assert.equal(used('zadd'), 2 * 3, 'one ZADD per member and commit')
  assert.ok(used('hincrby') <= 2 * 5, `HINCRBY ${used('hincrby')}`)
  assert.ok(used('hdel') <= 2 * 5, `HDEL ${used('hdel')}`)
  assert.ok(used('expire') <= 2 * (2 + 3 + 3), `EXPIRE ${used('expire')}`)

  for (const c of commits) await oneByOne(r, 'ref:', c)
  const mirrored = await dump(r, 'wb:')
  assert.deepEqual(mirrored, await dump(r, 'ref:'))
  const unread = (mirrored as Record<string, Record<string, string>>)['unread:carol']
  assert.ok(Number(unread?.['g:team']) > 0, 'carol has unread group messages')
})
