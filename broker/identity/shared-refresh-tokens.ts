/**
 * The web app's refresh tokens kept in Redis, for nodes that share one: a
 * token issued by any node (or worker) refreshes on every other, and a
 * logout or reuse on one revokes the login everywhere at once. Same tokens
 * (`wbr.<id>.<secret>`), same rules and answers as refresh-tokens.ts (which
 * keeps them in the node's SQLite file when there is no Redis):
 *
 * - `warbler:session:rt:ID`: hash {user, family, hash (SHA-256 of the
 *   secret, hex), exp, used}, expiring with the token;
 * - `warbler:session:family:FAMILY`: set once the login is revoked;
 * - `warbler:session:user:USER`: the user's login families, so that a new
 *   password ends every one of them.
 * Only one caller can mark a token used (HSETNX), so a token used twice,
 * at once or later, on one node or two, revokes its login. Each token keeps
 * the fingerprint of its user's password at the login (`pwv`): a new
 * password, made on any node or with the CLI, ends the login on every node
 * as soon as the node has the new password, and so does disabling or
 * removing the user.
 */
import type { Redis } from 'ioredis'
import { mintRefreshToken, newFamily, readRefreshToken, REFRESH_TTL_MS } from './refresh-token-format.js'
import type { Issued, RefreshFailure } from './refresh-tokens.js'

const PREFIX = 'warbler:session:'

export class SharedRefreshTokens {
  /** `password(user)`: the fingerprint of the user's password now; undefined when the user is gone or disabled. */
  constructor (private readonly redis: Redis, private readonly password: (user: string) => string | undefined, private readonly ttlMs = REFRESH_TTL_MS) {}

  async issue (user: string, family = newFamily(), pwv = this.password(user) ?? ''): Promise<Issued> {
    const { id, token, secretHash } = mintRefreshToken()
    const expiresAt = Date.now() + this.ttlMs
    await this.redis.multi()
      .hset(`${PREFIX}rt:${id}`, { user, family, pwv, hash: secretHash.toString('hex'), exp: String(expiresAt) })
      .pexpire(`${PREFIX}rt:${id}`, this.ttlMs)
      .sadd(`${PREFIX}user:${user}`, family)
      .pexpire(`${PREFIX}user:${user}`, this.ttlMs)
      .exec()
    return { token, expiresAt, family }
  }

  private async find (token: string): Promise<{ id: string, user: string, family: string, pwv: string, exp: number } | null> {
    const t = readRefreshToken(token)
    if (t === null) return null
    const row = await this.redis.hgetall(`${PREFIX}rt:${t.id}`)
    if (row.hash === undefined || row.user === undefined || row.family === undefined) return null
    if (!t.matches(Buffer.from(row.hash, 'hex'))) return null
    return { id: t.id, user: row.user, family: row.family, pwv: row.pwv ?? '', exp: Number(row.exp) }
  }

  async rotate (token: string): Promise<{ user: string, next: Issued } | { failed: RefreshFailure }> {
    const row = await this.find(token)
    if (row === null) return { failed: 'bad refresh token' }
    if (row.exp <= Date.now() || await this.redis.exists(`${PREFIX}family:${row.family}`) === 1) return { failed: 'expired refresh token' }
    if (row.pwv !== this.password(row.user)) {
      await this.revokeFamily(row.family)
      return { failed: 'expired refresh token' }
    }
    if (await this.redis.hsetnx(`${PREFIX}rt:${row.id}`, 'used', String(Date.now())) !== 1) {
      await this.revokeFamily(row.family)
      return { failed: 'refresh token reused' }
    }
    return { user: row.user, next: await this.issue(row.user, row.family, row.pwv) }
  }

  async revoke (token: string): Promise<string | null> {
    const row = await this.find(token)
    if (row === null) return null
    await this.revokeFamily(row.family)
    return row.family
  }

  async revokeUser (user: string): Promise<number> {
    const families = await this.redis.smembers(`${PREFIX}user:${user}`)
    let n = 0
    for (const f of families) if (await this.revokeFamily(f)) n++
    await this.redis.del(`${PREFIX}user:${user}`)
    return n
  }

  /** True when the login was not revoked before. */
  private async revokeFamily (family: string): Promise<boolean> {
    return await this.redis.set(`${PREFIX}family:${family}`, '1', 'PX', this.ttlMs, 'NX') === 'OK'
  }
}
