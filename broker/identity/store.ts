/**
 * Users, device tokens and the token-signing key, in the service's SQLite
 * file (`warbler.db` in the data dir). Both the running service and the CLI
 * open it; WAL lets the CLI change it while the service runs, and the service
 * notices through `PRAGMA data_version` (see identity/cache.ts).
 */
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import path from 'node:path'
import { SignJWT } from 'jose'
import { isValidUsername } from '../../sdk/src/protocol.js'
import { Database } from '../sqlite.js'
import { hashPassword } from './password.js'

export const DB_FILE = 'warbler.db'

export interface UserRecord {
  name: string
  admin: boolean
  passwordHash: string
  createdAt: number
}

export interface DeviceTokenRecord {
  id: string
  user: string
  name: string
  /** SHA-256 of the token's secret part. */
  secretHash: Buffer
  createdAt: number
  revokedAt: number | null
}

/** A problem with a CLI or admin request: the message names what was wrong. */
export class IdentityError extends Error {
  override name = 'IdentityError'
  constructor (readonly code: 'bad_request' | 'not_found' | 'conflict', message: string) { super(message) }
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS users (
  name TEXT PRIMARY KEY,
  password_hash TEXT NOT NULL,
  admin INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_tokens (
  id TEXT PRIMARY KEY,
  user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
  name TEXT NOT NULL,
  secret_hash BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS device_tokens_user ON device_tokens(user);
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY,
  value BLOB NOT NULL
) WITHOUT ROWID;
`

/** Device tokens look like `wbd.<id>.<secret>`; JWTs like `eyJ...`. */
export const DEVICE_TOKEN_PREFIX = 'wbd.'

export function hashSecret (secret: string): Buffer {
  return createHash('sha256').update(secret).digest()
}

/** Split a device token into id and secret, or null if it is not one. */
export function parseDeviceToken (token: string): { id: string, secret: string } | null {
  const m = /^wbd\.([0-9a-f]{16})\.([A-Za-z0-9_-]{32,64})$/.exec(token)
  return m === null ? null : { id: m[1] as string, secret: m[2] as string }
}

function checkName (name: string): void {
  if (!isValidUsername(name)) {
    throw new IdentityError('bad_request', `invalid user name ${JSON.stringify(name)}: use 1-32 of a-z, 0-9, _ and ., starting with a letter`)
  }
}

function checkPassword (password: string): void {
  if (password.length < 8) throw new IdentityError('bad_request', 'password too short: at least 8 characters')
  if (password.length > 1024) throw new IdentityError('bad_request', 'password too long: at most 1024 characters')
}

export class IdentityStore {
  private constructor (readonly db: Database) {}

  static async open (dataDir: string): Promise<IdentityStore> {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 })
    const db = await Database.open(path.join(dataDir, DB_FILE))
    await db.exec(SCHEMA)
    const store = new IdentityStore(db)
    await store.jwtKey() // create the signing key on first open
    return store
  }

  close (): Promise<void> { return this.db.close() }

  /** Changes whenever another connection commits (cheap; polled by the cache). */
  async dataVersion (): Promise<number> {
    const row = await this.db.get<{ data_version: number }>('PRAGMA data_version')
    return row?.data_version ?? 0
  }

  async jwtKey (): Promise<Uint8Array> {
    const row = await this.db.get<{ value: Buffer }>("SELECT value FROM meta WHERE key = 'jwt_key'")
    if (row !== undefined) return new Uint8Array(row.value)
    await this.db.run("INSERT OR IGNORE INTO meta(key, value) VALUES ('jwt_key', ?)", [randomBytes(32)])
    const again = await this.db.get<{ value: Buffer }>("SELECT value FROM meta WHERE key = 'jwt_key'")
    return new Uint8Array((again as { value: Buffer }).value)
  }

  async addUser (name: string, password: string, admin = false): Promise<void> {
    checkName(name)
    checkPassword(password)
    const hash = await hashPassword(password)
    try {
      await this.db.run('INSERT INTO users(name, password_hash, admin, created_at) VALUES (?, ?, ?, ?)', [name, hash, admin ? 1 : 0, Date.now()])
    } catch (err) {
      if (/UNIQUE|PRIMARY KEY/.test((err as Error).message)) throw new IdentityError('conflict', `user ${name} already exists`)
      throw err
    }
  }

  async setPassword (name: string, password: string): Promise<void> {
    checkPassword(password)
    const hash = await hashPassword(password)
    const { changes } = await this.db.run('UPDATE users SET password_hash = ? WHERE name = ?', [hash, name])
    if (changes === 0) throw new IdentityError('not_found', `no user ${name}`)
  }

  async setAdmin (name: string, admin: boolean): Promise<void> {
    const { changes } = await this.db.run('UPDATE users SET admin = ? WHERE name = ?', [admin ? 1 : 0, name])
    if (changes === 0) throw new IdentityError('not_found', `no user ${name}`)
  }

  async removeUser (name: string): Promise<void> {
    const { changes } = await this.db.run('DELETE FROM users WHERE name = ?', [name])
    if (changes === 0) throw new IdentityError('not_found', `no user ${name}`)
  }

  async listUsers (): Promise<UserRecord[]> {
    const rows = await this.db.all<{ name: string, password_hash: string, admin: number, created_at: number }>(
      'SELECT name, password_hash, admin, created_at FROM users ORDER BY name')
    return rows.map((r) => ({ name: r.name, admin: r.admin === 1, passwordHash: r.password_hash, createdAt: r.created_at }))
  }

  async countUsers (): Promise<number> {
    const row = await this.db.get<{ n: number }>('SELECT count(*) AS n FROM users')
    return row?.n ?? 0
  }

  /** A new long-lived device token; the token itself is returned once and stored only as a hash. */
  async createDeviceToken (user: string, name: string): Promise<{ id: string, token: string }> {
    if (name.length === 0 || name.length > 64) throw new IdentityError('bad_request', 'token name must be 1-64 characters')
    const exists = await this.db.get('SELECT 1 FROM users WHERE name = ?', [user])
    if (exists === undefined) throw new IdentityError('not_found', `no user ${user}`)
    const id = randomBytes(8).toString('hex')
    const secret = randomBytes(32).toString('base64url')
    await this.db.run('INSERT INTO device_tokens(id, user, name, secret_hash, created_at) VALUES (?, ?, ?, ?, ?)',
      [id, user, name, hashSecret(secret), Date.now()])
    return { id, token: `${DEVICE_TOKEN_PREFIX}${id}.${secret}` }
  }

  async listDeviceTokens (user?: string): Promise<DeviceTokenRecord[]> {
    const rows = await this.db.all<{ id: string, user: string, name: string, secret_hash: Buffer, created_at: number, revoked_at: number | null }>(
      user === undefined
        ? 'SELECT * FROM device_tokens ORDER BY user, created_at'
        : 'SELECT * FROM device_tokens WHERE user = ? ORDER BY created_at',
      user === undefined ? [] : [user])
    return rows.map((r) => ({ id: r.id, user: r.user, name: r.name, secretHash: r.secret_hash, createdAt: r.created_at, revokedAt: r.revoked_at }))
  }

  async revokeDeviceToken (id: string): Promise<void> {
    const { changes } = await this.db.run('UPDATE device_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [Date.now(), id])
    if (changes === 0) throw new IdentityError('not_found', `no active device token ${id}`)
  }

  /** A signed access token (JWT, HS256) for a user, valid for ttlSeconds. */
  async createJwt (user: string, ttlSeconds: number): Promise<string> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > 366 * 86400) {
      throw new IdentityError('bad_request', 'token lifetime must be 1 second to 366 days')
    }
    const exists = await this.db.get('SELECT 1 FROM users WHERE name = ?', [user])
    if (exists === undefined) throw new IdentityError('not_found', `no user ${user}`)
    const now = Math.floor(Date.now() / 1000)
    return await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(user)
      .setIssuer('warbler')
      .setIssuedAt(now)
      .setExpirationTime(now + ttlSeconds)
      .sign(await this.jwtKey())
  }
}
