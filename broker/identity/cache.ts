/**
 * The identity data the broker needs on the connect path, held in memory so
 * that no login ever waits for SQLite: users (admin flag, password hash) and
 * device tokens (hash of the secret, revocation). Reloaded whenever they
 * change, which the store's `dataVersion` (a counter kept by triggers) reveals
 * cheaply: polled every `pollMs` for changes by other connections (the CLI),
 * and checked at once after a write through the node's own store.
 */
import type { IdentityStore } from './store.js'

export interface CachedUser { admin: boolean, service: boolean, passwordHash: string, createdAt: number }
export interface CachedToken { user: string, secretHash: Buffer, revoked: boolean }

export class IdentityCache {
  users = new Map<string, CachedUser>()
  tokens = new Map<string, CachedToken>()
  jwtKey: Uint8Array = new Uint8Array()
  private version = ''
  private timer: NodeJS.Timeout | null = null
  /** Refreshes run one after another, each reading the version afresh. */
  private queue: Promise<void> = Promise.resolve()

  /** Called after each reload (the broker cuts off removed users and revoked tokens). */
  onReload: (() => void) | null = null

  constructor (private readonly store: IdentityStore, private readonly pollMs = 1000) {}

  async start (): Promise<void> {
    await this.refresh()
    // Writes through the node's own store (an admin API) take effect at once.
    this.store.onWrite = () => { this.refresh().catch(() => {}) }
    this.timer = setInterval(() => { this.refresh().catch(() => {}) }, this.pollMs)
    this.timer.unref()
  }

  /** Reload if the database changed since the last load. */
  refresh (): Promise<void> {
    const run = this.queue.then(async () => {
      const v = await this.store.dataVersion() // read before the data: a change after it is seen next time
      if (v === this.version) return
      const [users, tokens, key] = await Promise.all([this.store.listUsers(), this.store.listDeviceTokens(), this.store.jwtKey()])
      this.users = new Map(users.map((u) => [u.name, { admin: u.admin, service: u.service, passwordHash: u.passwordHash, createdAt: u.createdAt }]))
      this.tokens = new Map(tokens.map((t) => [t.id, { user: t.user, secretHash: t.secretHash, revoked: t.revokedAt !== null }]))
      this.jwtKey = key
      const first = this.version === ''
      this.version = v
      if (!first) this.onReload?.()
    })
    this.queue = run.catch(() => {})
    return run
  }

  stop (): void {
    this.store.onWrite = null
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }
}
