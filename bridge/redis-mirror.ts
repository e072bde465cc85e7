/**
 * The Redis mirror of hot data, when `--redis URL` is given. SQLite stays the
 * authority: the mirror is written after each commit (fire and forget), every
 * key is capped and expires, and a read that finds the mirror missing or
 * inconsistent falls back to SQLite and rebuilds that key. Losing Redis, or
 * Redis losing its data, loses no message.
 *
 * Keys (all under `wb:`):
 * - `wb:recent:{conv}`  list, newest first, of the last RECENT messages (JSON), 7 days;
 * - `wb:convs:{user}`   sorted set of the user's conversations by last activity (ms), 500, 30 days;
 * - `wb:unread:{user}`  hash conversation -> unread count, 30 days; exact after a read
 *                       receipt, counted up by new messages in between (so it can lag
 *                       the archive after Redis lost writes; SQLite's count is the authority);
 * - `wb:online:{user}`  presence ('1'), with a TTL of ONLINE_TTL_S refreshed every third of it while online;
 * - `wb:seen:{user}`    last seen time (ms), 30 days.
 *
 * Redis being slow, hung or gone never holds up or fails the service:
 * - writes are never queued while Redis is not connected (no offline queue)
 *   and at most `maxPending` write operations wait for Redis at once; past
 *   that they are dropped (`stats.dropped`), so memory stays bounded even if
 *   Redis hangs with the connection open;
 * - a read waits at most READ_TIMEOUT_MS, then SQLite answers;
 * - a connection that gets no answer for SOCKET_TIMEOUT_MS while commands wait
 *   is dropped and reconnected (a hung or unreachable Redis);
 * - close() waits at most QUIT_TIMEOUT_MS for Redis.
 * Dropped writes leave gaps that the read check below detects and rebuilds.
 */
import { Redis } from 'ioredis'
import type { MessageFrame } from '@warbler/sdk/protocol'
import type { Logger } from '../shared/log.js'
import type { StoredMessage } from './archive/writer.js'
import { gatherBatch } from './mirror-batch.js'

export const RECENT = 50
const RECENT_TTL_S = 7 * 86400
const CONVS_CAP = 500
const CONVS_TTL_S = 30 * 86400
const UNREAD_TTL_S = 30 * 86400
const SEEN_TTL_S = 30 * 86400
const ONLINE_TTL_S = 300
const READ_TIMEOUT_MS = 500
const SOCKET_TIMEOUT_MS = 5000
const QUIT_TIMEOUT_MS = 1000
const MAX_PENDING = 1000
/** Online users refreshed per pipeline. */
const REFRESH_CHUNK = 1000

export interface MirrorStats {
  /** Write operations issued (each a transaction of one or more commands). */
  writes: number
  /** Issued writes that failed. */
  errors: number
  /** Writes not issued: Redis not connected, or too many waiting for it. */
  dropped: number
  hits: number
  misses: number
}

export interface MirrorOptions {
  /** Most write operations waiting for Redis at once. */
  maxPending?: number
  /** TTL of `wb:online:{user}`, seconds; refreshed every third of it. */
  onlineTtlS?: number
}

export class RedisMirror {
  readonly stats: MirrorStats = { writes: 0, errors: 0, dropped: 0, hits: 0, misses: 0 }
  /** Write operations issued and not yet answered. */
  private inflight = 0
  private readonly maxPending: number
  private readonly onlineTtlS: number
  /** Users online on this node, whose `wb:online` key is kept alive. */
  private readonly online = new Set<string>()
  private readonly refresher: NodeJS.Timeout
  private down = false
  private closing = false

  private constructor (private readonly redis: Redis, private readonly log: Logger, opts: MirrorOptions) {
    this.maxPending = opts.maxPending ?? MAX_PENDING
    this.onlineTtlS = opts.onlineTtlS ?? ONLINE_TTL_S
    this.refresher = setInterval(() => { this.refreshOnline() }, Math.max(1, Math.floor(this.onlineTtlS * 1000 / 3)))
    this.refresher.unref()
    redis.on('close', () => {
      if (!this.down && !this.closing) {
        this.down = true
        this.log.warn('redis mirror connection lost; mirror writes are skipped until it is back (no message is affected)')
      }
    })
    redis.on('ready', () => {
      if (this.down) this.log.info('redis mirror connection back')
      this.down = false
      // Presence set or cleared meanwhile (or lost with Redis' data) is put back at once.
      this.refreshOnline()
    })
  }

  static async connect (url: string, log: Logger, opts: MirrorOptions = {}): Promise<RedisMirror> {
    const redis = new Redis(url, {
      lazyConnect: true,
      // Never queue while disconnected: a write is skipped instead (see admit()).
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 5000,
      // A hung Redis (or a dead peer that sends no RST) is dropped and reconnected.
      socketTimeout: SOCKET_TIMEOUT_MS
    })
    redis.on('error', () => {}) // reconnects by itself; failures are counted per command
    try {
      await redis.connect()
    } catch (err) {
      redis.disconnect()
      throw new Error(`cannot reach Redis at the redis URL: ${(err as Error).message}`)
    }
    return new RedisMirror(redis, log, opts)
  }

  get connected (): boolean { return this.redis.status === 'ready' }

  /** Write operations waiting for Redis now. */
  get pending (): number { return this.inflight }

  /** Whether a write may be issued now; counts it as dropped if not. */
  private admit (): boolean {
    if (this.connected && !this.closing && this.inflight < this.maxPending) return true
    this.stats.dropped++
    return false
  }

  private run (p: Promise<unknown>): void {
    this.stats.writes++
    this.inflight++
    p.then(() => { this.inflight-- }, () => { this.inflight--; this.stats.errors++ })
  }

  /** After a commit: recent lists, conversation lists and unread counters, gathered per key (mirror-batch.ts). */
  stored (messages: StoredMessage[]): void {
    if (messages.length === 0 || !this.admit()) return
    const b = gatherBatch(messages)
    const m = this.redis.multi()
    for (const [conv, frames] of b.recent) {
      const recent = `wb:recent:${conv}`
      m.lpush(recent, ...frames).ltrim(recent, 0, RECENT - 1).expire(recent, RECENT_TTL_S)
    }
    for (const [user, byConv] of b.convs) {
      const convs = `wb:convs:${user}`
      const scores: Array<number | string> = []
      for (const [conv, ts] of byConv) scores.push(ts, conv)
      m.zadd(convs, ...scores).zremrangebyrank(convs, 0, -CONVS_CAP - 1).expire(convs, CONVS_TTL_S)
    }
    for (const [user, byConv] of b.unread) {
      const unread = `wb:unread:${user}`
      let counted = false
      for (const [conv, u] of byConv) {
        if (u.reset) m.hdel(unread, conv)
        if (u.add > 0) { m.hincrby(unread, conv, u.add); counted = true }
      }
      if (counted) m.expire(unread, UNREAD_TTL_S)
    }
    this.run(m.exec())
  }

  /** After a read watermark moved. */
  unread (user: string, conv: string, count: number): void {
    if (!this.admit()) return
    const key = `wb:unread:${user}`
    this.run(count > 0 ? this.redis.multi().hset(key, conv, count).expire(key, UNREAD_TTL_S).exec() : this.redis.hdel(key, conv))
  }

  presence (user: string, online: boolean, ts: number): void {
    if (online) this.online.add(user)
    else this.online.delete(user)
    if (!this.admit()) return
    const m = this.redis.multi().set(`wb:seen:${user}`, ts, 'EX', SEEN_TTL_S)
    if (online) m.set(`wb:online:${user}`, '1', 'EX', this.onlineTtlS)
    else m.del(`wb:online:${user}`)
    this.run(m.exec())
  }

  /** Extend (or put back) the presence keys of the users online here. */
  private refreshOnline (): void {
    let chunk: string[] = []
    const flush = (): void => {
      if (chunk.length === 0 || !this.admit()) return
      const p = this.redis.pipeline()
      for (const u of chunk) p.set(`wb:online:${u}`, '1', 'EX', this.onlineTtlS)
      this.run(p.exec())
      chunk = []
    }
    for (const u of this.online) {
      chunk.push(u)
      if (chunk.length >= REFRESH_CHUNK) flush()
    }
    flush()
  }

  /**
   * The newest `limit` messages of a conversation whose messages in SQLite
   * are `firstSeq`..`lastSeq` (retention deletes the oldest), if the mirror
   * holds them contiguously; null otherwise (read SQLite). Messages newer
   * than `lastSeq` (committed since it was read) are skipped.
   */
  async recent (conv: string, lastSeq: number, limit: number, firstSeq = 1): Promise<MessageFrame[] | null> {
    if (!this.connected || this.closing || limit > RECENT) return null
    let timer: NodeJS.Timeout | undefined
    try {
      const raw = await Promise.race([
        this.redis.lrange(`wb:recent:${conv}`, 0, RECENT - 1),
        new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('redis read timed out')), READ_TIMEOUT_MS) })
      ])
      const frames = raw.map((r) => JSON.parse(r) as MessageFrame)
      const start = frames.findIndex((f) => f.seq <= lastSeq)
      const want = Math.min(limit, Math.max(0, lastSeq - firstSeq + 1))
      const page = start < 0 ? [] : frames.slice(start, start + want)
      const ok = page.length === want && page.every((f, i) => f.seq === lastSeq - i && f.conv === conv)
      if (!ok) { this.stats.misses++; return null }
      this.stats.hits++
      return page.reverse()
    } catch {
      this.stats.misses++
      return null
    } finally {
      clearTimeout(timer)
    }
  }

  /** Replace a conversation's recent list with messages read from SQLite (ascending). */
  rebuildRecent (conv: string, messages: MessageFrame[]): void {
    if (!this.admit()) return
    const key = `wb:recent:${conv}`
    const m = this.redis.multi().del(key)
    const newest = messages.slice(-RECENT).reverse()
    if (newest.length > 0) m.rpush(key, ...newest.map((f) => JSON.stringify(f))).expire(key, RECENT_TTL_S)
    this.run(m.exec())
  }

  /** Flush what was issued (QUIT is answered after it), bounded in time; then drop the connection. */
  async close (): Promise<void> {
    this.closing = true
    clearInterval(this.refresher)
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        this.redis.quit(),
        new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('QUIT timed out')), QUIT_TIMEOUT_MS) })
      ])
    } catch {
      // down or hung: give up what is still waiting
    } finally {
      clearTimeout(timer)
      this.redis.disconnect()
    }
  }
}
