/**
 * The identity data the broker needs on the connect path, held in memory so
 * that no login ever waits for SQLite: users (admin flag, password hash) and
 * device tokens (hash of the secret, revocation). Reloaded whenever another
 * connection (the CLI) commits to the database, which `PRAGMA data_version`
 * reveals cheaply; polled every `pollMs`.
 */
import type { IdentityStore } from './store.js'

export interface CachedUser { admin: boolean, passwordHash: string }
export interface CachedToken { user: string, secretHash: Buffer, revoked: boolean }

export class IdentityCache {
  users = new Map<string, CachedUser>()
  tokens = new Map<string, CachedToken>()
  jwtKey: Uint8Array = new Uint8Array()
  private version = -1
  private timer: NodeJS.Timeout | null = null
  private reloading: Promise<void> | null = null

  constructor (private readonly store: IdentityStore, private readonly pollMs = 1000) {}

  async start (): Promise<void> {
    await this.reload()
    this.timer = setInterval(() => { this.refresh().catch(() => {}) }, this.pollMs)
    this.timer.unref()
  }

  /** Reload if the database changed since the last load. */
  async refresh (): Promise<void> {
    const v = await this.store.dataVersion()
    if (v !== this.version) await this.reload(v)
  }

  private async reload (version?: number): Promise<void> {
    if (this.reloading !== null) return await this.reloading
    this.reloading = (async () => {
      const v = version ?? await this.store.dataVersion()
      const [users, tokens, key] = await Promise.all([this.store.listUsers(), this.store.listDeviceTokens(), this.store.jwtKey()])
      this.users = new Map(users.map((u) => [u.name, { admin: u.admin, passwordHash: u.passwordHash }]))
      this.tokens = new Map(tokens.map((t) => [t.id, { user: t.user, secretHash: t.secretHash, revoked: t.revokedAt !== null }]))
      this.jwtKey = key
      this.version = v
    })()
    try { await this.reloading } finally { this.reloading = null }
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }
}
