/**
 * Web logins logged out while their access tokens (JWTs, 15 minutes) have
 * not expired yet: a logout revokes its login (the JWT's `sid`, the refresh
 * token family), checked on every MQTT login and HTTP bearer (auth.ts), and
 * the live connections such a token opened are closed (server/node.ts). (A
 * new password needs no entry here: tokens carry the password's
 * fingerprint, identity-store.ts.)
 *
 * Held in memory, so a login never waits on Redis. With Redis, every process
 * of every node holds the same list: each logout is added to one sorted set
 * (`warbler:session:revoked`, member `s:SID`, score = when it may be
 * forgotten: no access token of that login is valid any longer) and
 * announced on a channel; a process reads the set at start and follows the
 * channel, and reads the set again when its subscription comes back.
 */
import type { Redis } from 'ioredis'
import type { Logger } from '../../shared/log.js'

const KEY = 'warbler:session:revoked'
const CHANNEL = 'warbler:session:revocations'
/** How long a revocation is kept: longer than any access token lives (web-session.ts, 15 minutes). */
const KEEP_MS = 20 * 60_000

export class SessionRevocations {
  /** Revoked web logins (sid), by when they may be forgotten. */
  private readonly sessions = new Map<string, number>()
  /** Called after a revocation arrived or was made here (the broker then closes what it cut off). */
  onChange: (() => void) | null = null

  private constructor (private readonly redis: Redis | null, private readonly log: Logger | null) {}

  /** Without Redis, this process's list alone; with it, the shared one (see above). */
  static async open (redis: { main: Redis, sub: Redis } | null, log?: Logger): Promise<SessionRevocations> {
    const r = new SessionRevocations(redis?.main ?? null, log ?? null)
    if (redis !== null) {
      redis.sub.on('message', (_channel: string, member: string) => { r.apply(member, Date.now() + KEEP_MS) })
      await redis.sub.subscribe(CHANNEL)
      await r.load()
      // Revocations made while the subscription was down are in the set.
      redis.sub.on('ready', () => { r.load().catch(() => {}) })
    }
    return r
  }

  private async load (): Promise<void> {
    const now = Date.now()
    const rows = await (this.redis as Redis).zrangebyscore(KEY, now, '+inf', 'WITHSCORES')
    for (let i = 0; i + 1 < rows.length; i += 2) this.apply(rows[i] as string, Number(rows[i + 1]), false)
    this.onChange?.()
  }

  /** One member of the set: `s:SID` (others are left for later versions). */
  private apply (member: string, until: number, announce = true): void {
    if (!member.startsWith('s:')) return
    this.sessions.set(member.slice(2), until)
    if (announce) this.onChange?.()
  }

  private async add (member: string): Promise<void> {
    const until = Date.now() + KEEP_MS
    this.apply(member, until)
    if (this.redis === null) return
    try {
      await this.redis.multi().zadd(KEY, until, member).zremrangebyscore(KEY, '-inf', Date.now()).publish(CHANNEL, member).exec()
    } catch (err) {
      this.log?.warn('session revocation not shared through redis; it holds on this process only', { error: (err as Error).message })
    }
  }

  /** A logout: every access token of that web login stops working. */
  async revokeSession (sid: string): Promise<void> {
    await this.add(`s:${sid}`)
  }

  /** Whether web login `sid` was logged out. */
  revoked (sid: string): boolean {
    const until = this.sessions.get(sid)
    if (until === undefined) return false
    if (until >= Date.now()) return true
    this.sessions.delete(sid)
    return false
  }
}
