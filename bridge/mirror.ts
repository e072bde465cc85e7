/**
 * The Redis mirror of hot data, when `--redis URL` is given. SQLite stays the
 * authority: the mirror is written after each commit (fire and forget), every
 * key is capped and expires, and a read that finds the mirror missing or
 * inconsistent falls back to SQLite and rebuilds that key. Losing Redis, or
 * Redis losing its data, loses no message.
 *
 * Keys (all under `wb:`):
 * - `wb:recent:{conv}`  list, newest first, of the last RECENT messages (JSON);
 * - `wb:convs:{user}`   sorted set of the user's conversations by last activity (ms);
 * - `wb:unread:{user}`  hash conversation -> unread count;
 * - `wb:online:{user}`  presence, with a TTL refreshed while online;
 * - `wb:seen:{user}`    last seen time (ms).
 */
import { Redis } from 'ioredis'
import type { MessageFrame } from '../sdk/src/protocol.js'
import type { Logger } from '../broker/log.js'
import type { StoredMessage } from './writer.js'

export const RECENT = 50
const RECENT_TTL_S = 7 * 86400
const CONVS_CAP = 500
const CONVS_TTL_S = 30 * 86400
const ONLINE_TTL_S = 300

export interface MirrorStats { writes: number, errors: number, hits: number, misses: number }

export class RedisMirror {
  readonly stats: MirrorStats = { writes: 0, errors: 0, hits: 0, misses: 0 }
  private constructor (private readonly redis: Redis, private readonly log: Logger) {}

  static async connect (url: string, log: Logger): Promise<RedisMirror> {
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 5000 })
    redis.on('error', () => {}) // reconnects by itself; failures are counted per command
    try {
      await redis.connect()
    } catch (err) {
      redis.disconnect()
      throw new Error(`cannot reach Redis at the redis URL: ${(err as Error).message}`)
    }
    return new RedisMirror(redis, log)
  }

  get connected (): boolean { return this.redis.status === 'ready' }

  private run (p: Promise<unknown>): void {
    this.stats.writes++
    p.catch(() => { this.stats.errors++ })
  }

  /** After a commit: recent lists, conversation lists and unread counters. */
  stored (messages: StoredMessage[]): void {
    if (!this.connected || messages.length === 0) return
    const m = this.redis.multi()
    for (const { frame, recipients } of messages) {
      const recent = `wb:recent:${frame.conv}`
      m.lpush(recent, JSON.stringify(frame)).ltrim(recent, 0, RECENT - 1).expire(recent, RECENT_TTL_S)
      for (const user of recipients) {
        const convs = `wb:convs:${user}`
        m.zadd(convs, frame.ts, frame.conv).zremrangebyrank(convs, 0, -CONVS_CAP - 1).expire(convs, CONVS_TTL_S)
        if (user !== frame.from) m.hincrby(`wb:unread:${user}`, frame.conv, 1)
        else m.hdel(`wb:unread:${user}`, frame.conv)
      }
    }
    this.run(m.exec())
  }

  /** After a read watermark moved. */
  unread (user: string, conv: string, count: number): void {
    if (!this.connected) return
    this.run(count > 0 ? this.redis.hset(`wb:unread:${user}`, conv, count) : this.redis.hdel(`wb:unread:${user}`, conv))
  }

  presence (user: string, online: boolean, ts: number): void {
    if (!this.connected) return
    const m = this.redis.multi().set(`wb:seen:${user}`, ts)
    if (online) m.set(`wb:online:${user}`, '1', 'EX', ONLINE_TTL_S)
    else m.del(`wb:online:${user}`)
    this.run(m.exec())
  }

  /**
   * The newest `limit` messages of a conversation whose last seq is `lastSeq`,
   * if the mirror holds them contiguously; null otherwise (read SQLite).
   */
  async recent (conv: string, lastSeq: number, limit: number): Promise<MessageFrame[] | null> {
    if (!this.connected || limit > RECENT) return null
    try {
      const raw = await this.redis.lrange(`wb:recent:${conv}`, 0, limit - 1)
      const frames = raw.map((r) => JSON.parse(r) as MessageFrame)
      const want = Math.min(limit, lastSeq)
      const ok = frames.length >= want && frames.slice(0, want).every((f, i) => f.seq === lastSeq - i)
      if (!ok) { this.stats.misses++; return null }
      this.stats.hits++
      return frames.slice(0, want).reverse()
    } catch {
      this.stats.misses++
      return null
    }
  }

  /** Replace a conversation's recent list with messages read from SQLite (ascending). */
  rebuildRecent (conv: string, messages: MessageFrame[]): void {
    if (!this.connected) return
    const key = `wb:recent:${conv}`
    const m = this.redis.multi().del(key)
    const newest = messages.slice(-RECENT).reverse()
    if (newest.length > 0) m.rpush(key, ...newest.map((f) => JSON.stringify(f))).expire(key, RECENT_TTL_S)
    this.run(m.exec())
  }

  async close (): Promise<void> {
    try { await this.redis.quit() } catch { this.redis.disconnect() }
  }
}
