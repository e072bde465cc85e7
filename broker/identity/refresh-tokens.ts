/**
 * The web app's refresh tokens (`wbr.<id>.<secret>`): what a browser keeps
 * instead of the password, to get a fresh short-lived access token (a JWT)
 * from POST /api/session/refresh. Stored only as SHA-256 of the secret, in
 * their own table of warbler.db with its own schema version (the `sessions`
 * part), so the users and device tokens keep theirs.
 *
 * Each use rotates: the token is marked used and a new one of the same
 * family (one login) is issued. A used token presented again means it was
 * copied, so the whole family is revoked and the holder must log in again.
 * Logging out revokes the family, a new password (`warbler user passwd`)
 * every family of the user; removing the user removes its rows
 * (foreign key, ON DELETE CASCADE). A refresh token is never an MQTT
 * password: the authenticator knows only passwords, JWTs and device tokens.
 */
import type { Database } from '../../shared/sqlite.js'
import type { Logger } from '../../shared/log.js'
import { migrateSchema, tableNames, type Migration } from '../../shared/migrations.js'
import { mintRefreshToken, newFamily, readRefreshToken, REFRESH_TTL_MS } from './refresh-token-format.js'

const SESSION_MIGRATIONS: readonly Migration[] = [{
  version: 1,
  what: 'refresh tokens of the web app',
  up: `
CREATE TABLE IF NOT EXISTS refresh_tokens (
  id TEXT PRIMARY KEY,
  user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
  family TEXT NOT NULL,
  secret_hash BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at INTEGER,
  revoked_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS refresh_tokens_family ON refresh_tokens(family);
CREATE INDEX IF NOT EXISTS refresh_tokens_expires ON refresh_tokens(expires_at);`
}]

/** Why a refresh token was refused, as the `login failed` line says it. */
export type RefreshFailure = 'bad refresh token' | 'refresh token reused' | 'expired refresh token'

/** What the web logins need of a refresh token store: this one (SQLite) or the shared one (shared-refresh-tokens.ts, Redis). */
export type RefreshStore = Pick<RefreshTokens, 'issue' | 'rotate' | 'revoke' | 'revokeUser'>

/** A token given out, and the web login (family) it belongs to: an access token names it as `sid`. */
export interface Issued { token: string, expiresAt: number, family: string }

// A type alias, not an interface: the sqlite wrapper wants an index-signature-compatible row.
type Row = { user: string, family: string, secret_hash: Buffer, expires_at: number, used_at: number | null, revoked_at: number | null }

export class RefreshTokens {
  private constructor (private readonly db: Database, private readonly ttlMs: number) {}

  /** The table brought to this code's version (shared/migrations.ts), on the identity store's connection. */
  static async open (db: Database, opts: { log?: Logger, ttlMs?: number } = {}): Promise<RefreshTokens> {
    await migrateSchema(db, {
      name: 'sessions',
      migrations: SESSION_MIGRATIONS,
      detect: async (d) => (await tableNames(d)).has('refresh_tokens') ? 1 : 0
    }, opts.log)
    return new RefreshTokens(db, opts.ttlMs ?? REFRESH_TTL_MS)
  }

  /** A new token for `user`: a new family at login, the same family when rotating. */
  async issue (user: string, family = newFamily()): Promise<Issued> {
    const now = Date.now()
    // Rows past their end serve nothing (a reuse of one is refused as expired anyway).
    await this.db.run('DELETE FROM refresh_tokens WHERE expires_at < ?', [now - this.ttlMs])
    const { id, token, secretHash } = mintRefreshToken()
    const expiresAt = now + this.ttlMs
    await this.db.run('INSERT INTO refresh_tokens(id, user, family, secret_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)',
      [id, user, family, secretHash, now, expiresAt])
    return { token, expiresAt, family }
  }

  /** The row of a token whose secret matches, or null. */
  private async find (token: string): Promise<(Row & { id: string }) | null> {
    const t = readRefreshToken(token)
    if (t === null) return null
    const row = await this.db.get<Row>('SELECT user, family, secret_hash, expires_at, used_at, revoked_at FROM refresh_tokens WHERE id = ?', [t.id])
    if (row === undefined || !t.matches(row.secret_hash)) return null
    return { ...row, id: t.id }
  }

  /** Use `token` once: its user and a new token of its family, or why not. */
  async rotate (token: string): Promise<{ user: string, next: Issued } | { failed: RefreshFailure }> {
    const row = await this.find(token)
    if (row === null) return { failed: 'bad refresh token' }
    const now = Date.now()
    if (row.revoked_at !== null || row.expires_at <= now) return { failed: 'expired refresh token' }
    // Only one caller can mark it used; a second use (parallel or later) is a copy.
    const { changes } = await this.db.run('UPDATE refresh_tokens SET used_at = ? WHERE id = ? AND used_at IS NULL AND revoked_at IS NULL', [now, row.id])
    if (changes !== 1) {
      await this.revokeFamily(row.family)
      return { failed: 'refresh token reused' }
    }
    return { user: row.user, next: await this.issue(row.user, row.family) }
  }

  /** Log out: the token's whole family is revoked, and named. Null when it is not a token of ours. */
  async revoke (token: string): Promise<string | null> {
    const row = await this.find(token)
    if (row === null) return null
    await this.revokeFamily(row.family)
    return row.family
  }

  /** A new password ends every web login of the user (`warbler user passwd`); resolves to how many there were. */
  async revokeUser (user: string): Promise<number> {
    const row = await this.db.get<{ n: number }>('SELECT count(DISTINCT family) AS n FROM refresh_tokens WHERE user = ? AND revoked_at IS NULL AND expires_at > ?', [user, Date.now()])
    await this.db.run('UPDATE refresh_tokens SET revoked_at = ? WHERE user = ? AND revoked_at IS NULL', [Date.now(), user])
    return row?.n ?? 0
  }

  private async revokeFamily (family: string): Promise<void> {
    await this.db.run('UPDATE refresh_tokens SET revoked_at = ? WHERE family = ? AND revoked_at IS NULL', [Date.now(), family])
  }
}
