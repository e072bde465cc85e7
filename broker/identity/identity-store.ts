/**
 * Users, device tokens and the token-signing key, in the service's SQLite
 * file (`warbler.db` in the data dir). Both the running service and the CLI
 * open it; WAL lets the CLI change it while the service runs, and the service
 * notices through a change counter kept by triggers (see dataVersion and
 * identity/cache.ts).
 */
import { createHash, randomBytes } from 'node:crypto'
import { chmodSync, closeSync, existsSync, openSync, statSync } from 'node:fs'
import path from 'node:path'
import { SignJWT } from 'jose'
import { isValidUsername } from '@warbler/sdk/protocol'
import { Database } from '../../shared/sqlite.js'
import { DB_FILE, prepareDataDir } from '../../shared/data-dir.js'
import { EXIT, StartError } from '../../shared/start-error.js'
import { hashPassword } from './password.js'
import { migrateIdentity } from './identity-schema.js'
import { createLogger, type Logger } from '../../shared/log.js'

export interface UserRecord {
  name: string
  admin: boolean
  /** The message service's own account (`warbler bridge`): reads every out topic, writes inboxes. */
  service: boolean
  /** Kept, with its tokens, but every login refused and live connections closed (`warbler user disable`). */
  disabled: boolean
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

/**
 * Open the data dir's database, refusing a file that is not Warbler's (not
 * SQLite at all, damaged, or another program's SQLite database) before
 * anything is written to it: the schema below would otherwise be added to
 * someone else's file.
 */
async function openWarblerDatabase (file: string): Promise<Database> {
  const refuse = (why: string): StartError => new StartError(`${file} ${why}; move it away, restore a backup (warbler restore), or choose another --data-dir`, EXIT.dataDir)
  let db: Database
  try {
    db = await Database.open(file)
  } catch (err) {
    const m = (err as Error).message
    if (/SQLITE_NOTADB/.test(m)) throw refuse('is not a SQLite database, so not a Warbler database')
    if (/SQLITE_CORRUPT/.test(m)) throw refuse(`is damaged (${m})`)
    throw refuse(`cannot be opened as a database (${m})`)
  }
  try {
    const tables = (await db.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")).map((r) => r.name)
    if (tables.length > 0 && !tables.includes('meta') && !tables.includes('users') && !tables.includes('schema_versions')) {
      throw refuse(`is a SQLite database but not a Warbler one (its tables: ${tables.slice(0, 5).join(', ')}${tables.length > 5 ? ', ...' : ''})`)
    }
  } catch (err) {
    await db.close().catch(() => {})
    if (err instanceof StartError) throw err
    throw refuse(`cannot be read as a database (${(err as Error).message})`)
  }
  return db
}

/** Device tokens look like `wbd.<id>.<secret>`; JWTs like `eyJ...`. */
export const DEVICE_TOKEN_PREFIX = 'wbd.'

/** The shape of a compact JWS; the authenticator treats such a secret as a JWT, never as a password. */
export const JWT_SHAPE = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/

/** Whether a secret would be taken for a token (JWT or device token) rather than a password. */
function looksLikeToken (secret: string): boolean {
  return JWT_SHAPE.test(secret) || parseDeviceToken(secret) !== null
}

export function hashSecret (secret: string): Buffer {
  return createHash('sha256').update(secret).digest()
}

/**
 * A short fingerprint of a user's password hash: an access token and a shared
 * web login carry the one of the password they were issued under, so a new
 * password ends them on every node that has it, with no message of its own.
 */
export function passwordFingerprint (passwordHash: string): string {
  return createHash('sha256').update(passwordHash).digest('base64url').slice(0, 16)
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
  if (looksLikeToken(password)) {
    // The authenticator would check it as a token and never as a password.
    throw new IdentityError('bad_request', 'password looks like a token (JWT or device token): choose another')
  }
}

/**
 * Make the database file private before SQLite opens it: it holds the token
 * signing key and the password hashes. SQLite gives the -wal and -shm files
 * the permissions of the database file.
 */
function privateFile (file: string): void {
  if (!existsSync(file)) {
    closeSync(openSync(file, 'a', 0o600)) // an empty file is an empty database
    return
  }
  for (const f of [file, `${file}-wal`, `${file}-shm`]) {
    try {
      if ((statSync(f).mode & 0o077) !== 0) chmodSync(f, 0o600)
    } catch { /* absent, or not ours to change */ }
  }
}

export class IdentityStore {
  /** Called after each write through this store (the cache reloads at once). */
  onWrite: (() => void) | null = null

  private constructor (readonly db: Database) {}

  /**
   * Open (by default creating) the database in dataDir. With `create: false`
   * a missing database is an error naming the directory, so that a mistyped
   * --data-dir does not silently start an empty one. The tables are brought
   * to this code's version (identity-schema.ts); `log` hears of an upgrade
   * and its backup file (by default, a JSON line on stderr).
   */
  static async open (dataDir: string, opts: { create?: boolean, log?: Logger } = {}): Promise<IdentityStore> {
    const file = path.join(dataDir, DB_FILE)
    if (opts.create === false && !existsSync(file)) {
      throw new IdentityError('not_found', `no Warbler database in ${dataDir} (wrong --data-dir? \`warbler start\` or \`warbler user add\` creates it)`)
    }
    prepareDataDir(dataDir)
    privateFile(file)
    const db = await openWarblerDatabase(file)
    try {
      await migrateIdentity(db, { log: opts.log ?? createLogger('info') })
    } catch (err) {
      await db.close().catch(() => {})
      throw err
    }
    const store = new IdentityStore(db)
    await store.jwtKey() // create the signing key on first open
    return store
  }

  close (): Promise<void> { return this.db.close() }

  /**
   * Changes whenever users or device tokens change, through any connection
   * (the CLI's, or this one), and only then: triggers count the changes in
   * `meta`. One primary-key read, polled by the cache. (`PRAGMA data_version`
   * would also change with every message the bridge archives in this file,
   * and not at all for this connection's own writes.)
   */
  async dataVersion (): Promise<string> {
    const row = await this.db.get<{ value: number }>("SELECT value FROM meta WHERE key = 'identity_version'")
    return String(row?.value ?? 0)
  }

  private async write (sql: string, params: readonly unknown[]): Promise<{ changes: number }> {
    try {
      return await this.db.run(sql, params)
    } finally {
      this.onWrite?.()
    }
  }

  async jwtKey (): Promise<Uint8Array> {
    const row = await this.db.get<{ value: Buffer }>("SELECT value FROM meta WHERE key = 'jwt_key'")
    if (row !== undefined) return new Uint8Array(row.value)
    await this.write("INSERT OR IGNORE INTO meta(key, value) VALUES ('jwt_key', ?)", [randomBytes(32)])
    const again = await this.db.get<{ value: Buffer }>("SELECT value FROM meta WHERE key = 'jwt_key'")
    return new Uint8Array((again as { value: Buffer }).value)
  }

  async addUser (name: string, password: string, admin = false, service = false): Promise<void> {
    checkName(name)
    checkPassword(password)
    const hash = await hashPassword(password)
    try {
      await this.write('INSERT INTO users(name, password_hash, admin, created_at, service) VALUES (?, ?, ?, ?, ?)', [name, hash, admin ? 1 : 0, Date.now(), service ? 1 : 0])
    } catch (err) {
      if (/UNIQUE|PRIMARY KEY/.test((err as Error).message)) throw new IdentityError('conflict', `user ${name} already exists`)
      throw err
    }
  }

  async setPassword (name: string, password: string): Promise<void> {
    checkPassword(password)
    const hash = await hashPassword(password)
    const { changes } = await this.write('UPDATE users SET password_hash = ? WHERE name = ?', [hash, name])
    if (changes === 0) throw new IdentityError('not_found', `no user ${name}`)
  }

  async setAdmin (name: string, admin: boolean): Promise<void> {
    const { changes } = await this.write('UPDATE users SET admin = ? WHERE name = ?', [admin ? 1 : 0, name])
    if (changes === 0) throw new IdentityError('not_found', `no user ${name}`)
  }

  async setDisabled (name: string, disabled: boolean): Promise<void> {
    const { changes } = await this.write('UPDATE users SET disabled = ? WHERE name = ?', [disabled ? 1 : 0, name])
    if (changes === 0) throw new IdentityError('not_found', `no user ${name}`)
  }

  async removeUser (name: string): Promise<void> {
    const { changes } = await this.write('DELETE FROM users WHERE name = ?', [name])
    if (changes === 0) throw new IdentityError('not_found', `no user ${name}`)
  }

  async listUsers (): Promise<UserRecord[]> {
    const rows = await this.db.all<{ name: string, password_hash: string, admin: number, service: number, disabled: number, created_at: number }>(
      'SELECT name, password_hash, admin, service, disabled, created_at FROM users ORDER BY name')
    return rows.map((r) => ({ name: r.name, admin: r.admin === 1, service: r.service === 1, disabled: r.disabled === 1, passwordHash: r.password_hash, createdAt: r.created_at }))
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
    await this.write('INSERT INTO device_tokens(id, user, name, secret_hash, created_at) VALUES (?, ?, ?, ?, ?)',
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
    const { changes } = await this.write('UPDATE device_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [Date.now(), id])
    if (changes === 0) {
      const known = await this.db.get('SELECT 1 FROM device_tokens WHERE id = ?', [id])
      throw known === undefined
        ? new IdentityError('not_found', `no device token ${JSON.stringify(id)} (see warbler token list)`)
        : new IdentityError('conflict', `device token ${id} is already revoked`)
    }
  }

  /**
   * A signed access token (JWT, HS256) for a user, valid for ttlSeconds. It
   * carries the fingerprint of the user's password (`pwv`: a new password
   * ends it) and, for a web login, its `sid`, so that a logout ends it
   * (session-revocations.ts).
   */
  async createJwt (user: string, ttlSeconds: number, claims: { sid?: string } = {}): Promise<string> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > 366 * 86400) {
      throw new IdentityError('bad_request', 'token lifetime must be 1 second to 366 days')
    }
    const row = await this.db.get<{ password_hash: string }>('SELECT password_hash FROM users WHERE name = ?', [user])
    if (row === undefined) throw new IdentityError('not_found', `no user ${user}`)
    const now = Math.floor(Date.now() / 1000)
    return await new SignJWT({ ...claims, pwv: passwordFingerprint(row.password_hash) })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(user)
      .setIssuer('warbler')
      .setIssuedAt(now)
      .setExpirationTime(now + ttlSeconds)
      .sign(await this.jwtKey())
  }
}
