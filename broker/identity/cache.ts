/**
 * The identity data the broker needs on the connect path, held in memory so
 * that no login waits for more than one small SQLite read: users (admin
 * flag, password hash) and device tokens (hash of the secret, revocation).
 * Reloaded whenever they change, which the store's `dataVersion` (a counter
 * kept by triggers) reveals cheaply.
 *
 * Every login asks for `refresh()` first, so it sees every change committed
 * before its CONNECT arrived: a user added or a token revoked by the CLI is
 * in force when the CLI returns, in every process on the file (the workers
 * of a cluster each have a cache). Refreshes are coalesced: while one read is
 * running, every caller joins the one queued after it, so a connect storm
 * keeps at most one read running and one waiting. The poll every `pollMs`
 * is only for cutting live connections of removed users and revoked tokens
 * when nobody logs in; a write through the node's own store refreshes at once.
 */
import type { IdentityStore } from './identity-store.js'

export interface CachedUser { admin: boolean, service: boolean, disabled: boolean, passwordHash: string, createdAt: number }
export interface CachedToken { user: string, secretHash: Buffer, revoked: boolean }

export class IdentityCache {
  users = new Map<string, CachedUser>()
  tokens = new Map<string, CachedToken>()
  jwtKey: Uint8Array = new Uint8Array()
  private version = ''
  private timer: NodeJS.Timeout | null = null
  /** Refreshes run one after another, each reading the version afresh. */
  private queue: Promise<void> = Promise.resolve()
  /** The refresh queued and not yet begun, which new callers join. */
  private next: Promise<void> | null = null

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

  /**
   * Reload if the database changed since the last load. Resolves once a read
   * of the version that began after this call was made has been applied.
   */
  refresh (): Promise<void> {
    // Not started yet, so its read begins after this call too: share it.
    if (this.next !== null) return this.next
    const run = this.queue.then(async () => {
      this.next = null // from here on, a caller needs a read that begins later
      const v = await this.store.dataVersion() // read before the data: a change after it is seen next time
      if (v === this.version) return
      const [users, tokens, key] = await Promise.all([this.store.listUsers(), this.store.listDeviceTokens(), this.store.jwtKey()])
      this.users = new Map(users.map((u) => [u.name, { admin: u.admin, service: u.service, disabled: u.disabled, passwordHash: u.passwordHash, createdAt: u.createdAt }]))
      this.tokens = new Map(tokens.map((t) => [t.id, { user: t.user, secretHash: t.secretHash, revoked: t.revokedAt !== null }]))
      this.jwtKey = key
      const first = this.version === ''
      this.version = v
      if (!first) this.onReload?.()
    })
    this.next = run
    this.queue = run.catch(() => {})
    return run
  }

  stop (): void {
    this.store.onWrite = null
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }
}
