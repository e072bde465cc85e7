/**
 * Who a connecting client is. Three methods, chosen by the shape of the
 * MQTT password field (the user name is always the Warbler user name):
 * - a device token `wbd.<id>.<secret>`: looked up by id in memory, SHA-256 of
 *   the secret compared in constant time;
 * - a JWT (`eyJ...`, HS256, with expiry): verified with the service's key;
 * - anything else is a password, checked with scrypt.
 * Tokens never touch scrypt, so token logins are cheap. Failed logins are
 * counted per source address and, past `loginFailures` a minute, refused
 * without checking. Checks in progress count against that budget too: an
 * address never has more credential checks running than it has failures left,
 * the rest wait their turn, so parallel guesses cannot overshoot the limit.
 * The web app's logins over HTTP (web-session.ts) go through the same rate,
 * budget and lockout (`httpLogin`): one count per address for both doors.
 * Connection limits (count, per-address rate) are checked first, so a refused
 * client costs almost nothing. Before a credential is checked, the identity
 * cache reads the store's version (cache.ts), so every login sees every user
 * and token change committed before it. Each refusal is logged with its
 * reason (login-log.ts), never with the secret.
 */
import { timingSafeEqual } from 'node:crypto'
import type { Client } from 'aedes'
import { connectionParser } from './aedes-internals.js'
import { decodeJwt, errors as joseErrors, jwtVerify } from 'jose'
import { clientIdBelongsTo, isValidUsername, topics } from '@warbler/sdk/protocol'
import type { Config } from '../shared/config.js'
import type { IdentityCache } from './identity/cache.js'
import { verifyPassword } from './identity/password.js'
import { hashSecret, JWT_SHAPE, parseDeviceToken, passwordFingerprint } from './identity/identity-store.js'
import { KeyedBuckets, TokenBucket, WindowCounter } from './limits.js'
import type { Logger } from '../shared/log.js'
import { FailureLog, type FailureReason, type RecentFailure } from './login-log.js'
import { type AuthMethod, remoteAddress, type Session } from './session.js'
import type { RefusalReason, Stats } from './stats.js'
import type { SessionRevocations } from './identity/session-revocations.js'

/** MQTT 3.1.1 CONNACK return codes. */
export const enum ReturnCode {
  IdentifierRejected = 2,
  ServerUnavailable = 3,
  BadUsernameOrPassword = 4,
  NotAuthorized = 5
}

export class AuthRefused extends Error {
  override name = 'AuthRefused'
  constructor (readonly returnCode: ReturnCode, readonly reason: RefusalReason, readonly why: FailureReason, message: string) { super(message) }
}

/** A credential check that failed, and why. */
export interface Failed { failed: FailureReason }
const fail = (why: FailureReason): Failed => ({ failed: why })
const isFailed = (v: unknown): v is Failed => typeof v === 'object' && v !== null && 'failed' in v

/** Password checks (scrypt) running at once; libuv's pool has 4 threads by default. */
const SCRYPT_RUNNING = 2
/** Password checks waiting for one of those; more are refused (CONNACK 3). */
const SCRYPT_QUEUED = 64

export class Authenticator {
  private readonly connBuckets: KeyedBuckets
  private readonly failures: WindowCounter
  /** Client ids the broker assigned ([MQTT-3.1.3-6]); exempt from the user prefix rule. */
  private readonly assigned = new WeakSet<Client>()
  /** Credential checks running per source address, and the logins waiting for one to end. */
  private readonly checking = new Map<string, { running: number, waiting: Array<() => void> }>()
  private readonly failureLog: FailureLog
  /** Access tokens cut off before they expire (logouts, new passwords); set by the node. */
  revocations: SessionRevocations | null = null

  constructor (
    private readonly cfg: Config,
    private readonly cache: IdentityCache,
    private readonly stats: Stats,
    log: Logger,
    private readonly connectedClients: () => number
  ) {
    this.connBuckets = new KeyedBuckets(cfg.connRate, cfg.connBurst)
    this.failures = new WindowCounter(cfg.loginFailures)
    this.failureLog = new FailureLog(log)
  }

  /** Called by preConnect, before aedes assigns an id to an empty one. */
  noteConnect (client: Client, packet: { clientId: string, clean?: boolean, protocolVersion?: number, username?: string, password?: Buffer }): void {
    if (packet.clientId !== '') return
    this.assigned.add(client)
    if (packet.clean === false && (packet.protocolVersion ?? 4) < 5) {
      // aedes 2 refuses this CONNECT itself right after preConnect
      // (lib/handlers/connect.js, CONNACK 2, counted as client_id_rejected by
      // its error), so the authenticate hook never sees it: log it here.
      this.failureLog.note({ reason: 'empty client id needs clean session', address: remoteAddress(client), clientId: null, user: packet.username, secret: packet.password?.toString('utf8') ?? '' })
    }
  }

  async authenticate (client: Client, username: string | undefined, password: Buffer | undefined): Promise<Session> {
    forgetConnectPacket(client)
    const address = remoteAddress(client)
    try {
      return await this.login(client, address, username, password)
    } catch (err) {
      if (err instanceof AuthRefused) {
        // An id the broker assigned is its own invention: not logged.
        this.failureLog.note({ reason: err.why, address, clientId: this.assigned.has(client) ? null : client.id, user: username, secret: password?.toString('utf8') ?? '' })
      }
      throw err
    }
  }

  private async login (client: Client, address: string, username: string | undefined, password: Buffer | undefined): Promise<Session> {
    if (this.assigned.has(client) && !client.clean) {
      // [MQTT-3.1.3-8]: a zero-length client id needs a clean session. MQTT
      // 3.1.1 never gets here (aedes refuses it, noteConnect). An MQTT 5
      // client does when it asks for a session that outlives the connection
      // (aedes' client.clean is then false): refused too, as the broker's
      // made-up id would be its session's only name.
      throw new AuthRefused(ReturnCode.IdentifierRejected, 'client_id_rejected', 'empty client id needs clean session', 'a zero-length client id needs clean session')
    }
    if (client.id in Object.prototype) {
      // aedes 2.0.0-beta.1 keeps its connected clients in a plain object again
      // (1.2.0 did not: GHSA-52qw-whmv-87c5), so an id such as `constructor`
      // finds an inherited member there, and registering it throws out of
      // aedes and ends the process. Refused before it is registered.
      throw new AuthRefused(ReturnCode.IdentifierRejected, 'client_id_rejected', 'client id reserved', 'this client id names a built-in property and cannot be used')
    }
    if (this.connectedClients() >= this.cfg.maxConnections) {
      throw new AuthRefused(ReturnCode.ServerUnavailable, 'connection_limit', 'too many connections', 'too many connections')
    }
    if (!this.connBuckets.take(address)) {
      throw new AuthRefused(ReturnCode.ServerUnavailable, 'connection_rate', 'too many new connections from the address', 'too many new connections from this address')
    }
    if (username === undefined || username === '') {
      if (password !== undefined && password.length > 0) {
        throw new AuthRefused(ReturnCode.BadUsernameOrPassword, 'login_failed', 'password without user name', 'a password needs a user name')
      }
      if (!this.cfg.dev) throw new AuthRefused(ReturnCode.NotAuthorized, 'anonymous', 'anonymous not allowed', 'anonymous access is off (start with --dev to allow it)')
      return this.session(client, null, false, 'anonymous', address)
    }
    const method = await this.guarded(address, async () => await this.check(username, password?.toString('utf8') ?? ''))
    if (!this.assigned.has(client) && !clientIdBelongsTo(client.id, username)) {
      throw new AuthRefused(ReturnCode.IdentifierRejected, 'client_id_rejected', 'client id not the user\'s',
        `client id must be "${username}" or start with "${username}-"`)
    }
    const user = this.cache.users.get(username)
    const session = this.session(client, username, user?.admin === true, method, address, user?.service === true)
    const tokenId = method === 'device_token' ? parseDeviceToken(password?.toString('utf8') ?? '')?.id : undefined
    if (method === 'jwt') return { ...session, jwt: jwtSession(password?.toString('utf8') ?? '') }
    return tokenId === undefined ? session : { ...session, tokenId }
  }

  /**
   * Run one credential check under the address's lockout: refused at once
   * when its failures in this window reached `loginFailures`, a failed check
   * counted. MQTT logins and the web app's (web-session.ts) share it, so
   * neither door gives more guesses than the other.
   */
  private async guarded<T> (address: string, check: () => Promise<T | Failed>): Promise<T> {
    if (!await this.startCheck(address)) {
      throw new AuthRefused(ReturnCode.BadUsernameOrPassword, 'login_rate_limited', 'locked out after failed logins', 'too many failed logins from this address; wait a minute')
    }
    let result: T | Failed
    try {
      // Every change committed before this login is seen (a user just added, a token just revoked).
      await this.cache.refresh()
      result = await check()
      if (isFailed(result)) this.failures.add(address)
    } finally {
      this.endCheck(address)
    }
    if (isFailed(result)) throw new AuthRefused(ReturnCode.BadUsernameOrPassword, 'login_failed', result.failed, 'bad user name or password')
    return result
  }

  /**
   * A login over HTTP (the web app): the same per-address connection rate,
   * lockout and `login failed` log line as an MQTT CONNECT from that
   * address. `check` proves the credential; its failure counts.
   */
  async httpLogin<T> (address: string, user: string | undefined, secret: string, check: () => Promise<T | Failed>): Promise<T> {
    try {
      if (!this.connBuckets.take(address)) {
        throw new AuthRefused(ReturnCode.ServerUnavailable, 'connection_rate', 'too many new connections from the address', 'too many logins from this address; slow down')
      }
      return await this.guarded(address, check)
    } catch (err) {
      if (err instanceof AuthRefused) this.failureLog.note({ reason: err.why, address, clientId: null, user, secret })
      throw err
    }
  }

  /** Whether `password` proves `username` as a password (never a token: a token must not buy a longer-lived one). */
  async checkPassword (username: string, password: string): Promise<true | Failed> {
    const method = await this.check(username, password)
    return method === 'password' ? true : typeof method === 'string' ? fail('bad password') : method
  }

  /** The node's last refused logins, as logged (login-log.ts): for the admin console. */
  recentFailures (): RecentFailure[] {
    return this.failureLog.recent()
  }

  /** A user's admin flag and creation time, from the identity cache; undefined when there is no such user. */
  user (name: string): { admin: boolean, createdAt: number } | undefined {
    return this.cache.users.get(name)
  }

  /**
   * Whether a session's credential is still good: its user exists, is not disabled and, when
   * it came with a device token, the token is not revoked. (A JWT stays good
   * until it expires; a password until the user is removed.)
   */
  stillValid (s: Session): boolean {
    if (s.user === null) return true
    const user = this.cache.users.get(s.user)
    if (user === undefined || user.disabled) return false
    if (s.jwt !== undefined && !this.jwtStillValid(s.jwt, user.passwordHash)) return false
    if (s.tokenId === undefined) return true
    const t = this.cache.tokens.get(s.tokenId)
    return t !== undefined && !t.revoked
  }

  /** An access token stays good while its password is the user's and its web login was not logged out. */
  private jwtStillValid (j: { pwv?: string, sid?: string }, passwordHash: string): boolean {
    if (j.pwv !== undefined && j.pwv !== passwordFingerprint(passwordHash)) return false
    return j.sid === undefined || this.revocations?.revoked(j.sid) !== true
  }

  /**
   * Wait until this address may run one more credential check: its failures
   * in this window plus its checks in progress stay under loginFailures.
   * False once its failures alone reach the limit.
   */
  private async startCheck (address: string): Promise<boolean> {
    for (;;) {
      const failed = this.failures.count(address)
      if (failed >= this.cfg.loginFailures) return false
      let g = this.checking.get(address)
      if (g === undefined) {
        g = { running: 0, waiting: [] }
        this.checking.set(address, g)
      }
      if (failed + g.running < this.cfg.loginFailures) {
        g.running++
        return true
      }
      const gate = g
      await new Promise<void>((resolve) => gate.waiting.push(resolve))
    }
  }

  private endCheck (address: string): void {
    const g = this.checking.get(address)
    if (g === undefined) return
    g.running--
    // Every waiter looks again: a failure may have used up the budget, a success frees a slot.
    const waiting = g.waiting
    g.waiting = []
    for (const wake of waiting) wake()
    if (g.running === 0 && g.waiting.length === 0) this.checking.delete(address)
  }

  /** The method that proved the identity, or why none did. Never logs the secret. */
  private async check (username: string, secret: string): Promise<AuthMethod | Failed> {
    if (!isValidUsername(username)) return fail('invalid user name')
    if (secret.length === 0) return fail('no password')
    if (secret.length > 4096) return fail('bad password')
    const device = parseDeviceToken(secret)
    if (device !== null) {
      const t = this.cache.tokens.get(device.id)
      if (t === undefined) return fail('unknown token')
      // The secret first: only its holder learns (in the log) what else is wrong with it.
      if (!timingSafeEqual(hashSecret(device.secret), t.secretHash)) return fail('wrong token secret')
      if (t.user !== username) return fail('token of another user')
      if (t.revoked) return fail('revoked token')
      const owner = this.cache.users.get(username)
      return owner === undefined ? fail('unknown user') : owner.disabled ? fail('user disabled') : 'device_token'
    }
    if (JWT_SHAPE.test(secret)) {
      let payload
      try {
        payload = (await jwtVerify(secret, this.cache.jwtKey, {
          algorithms: ['HS256'],
          issuer: 'warbler',
          requiredClaims: ['sub', 'iat', 'exp']
        })).payload
      } catch (err) {
        // jose checks the signature before the claims: an expired token is one we signed.
        return fail(err instanceof joseErrors.JWTExpired ? 'expired token'
          : err instanceof joseErrors.JWSSignatureVerificationFailed ? 'bad token signature'
            : 'invalid token')
      }
      if (payload.sub !== username) return fail('token of another user')
      const user = this.cache.users.get(username)
      if (user === undefined) return fail('unknown user')
      if (user.disabled) return fail('user disabled')
      if (!this.jwtStillValid(jwtSession(secret), user.passwordHash)) return fail('revoked session')
      // A token issued before the user was (re)created belongs to an earlier user of that name.
      return (payload.iat as number) >= Math.floor(user.createdAt / 1000) ? 'jwt' : fail('token older than the user')
    }
    const user = this.cache.users.get(username)
    // Spend the same time on an unknown user as on a real check, so user
    // names cannot be probed by timing.
    const ok = await this.scrypt(secret, user?.passwordHash ?? DUMMY_HASH)
    // A disabled user learns so only with the right password: otherwise it would tell which names exist.
    return user === undefined ? fail('unknown user') : !ok ? fail('bad password') : user.disabled ? fail('user disabled') : 'password'
  }

  /**
   * A password check, at most SCRYPT_RUNNING at once: scrypt runs in libuv's
   * small thread pool, which SQLite (the archive) needs too, so a crowd of
   * password guesses from many addresses must not take all of it. Checks wait
   * in line; past SCRYPT_QUEUED waiting, a login is refused with CONNACK 3
   * (`login_busy`) instead of waiting.
   */
  private async scrypt (secret: string, hash: string): Promise<boolean> {
    if (this.scryptRunning >= SCRYPT_RUNNING) {
      if (this.scryptWaiting.length >= SCRYPT_QUEUED) {
        throw new AuthRefused(ReturnCode.ServerUnavailable, 'login_busy', 'password checks busy', 'too many password logins at once; retry shortly (devices should use tokens)')
      }
      await new Promise<void>((resolve) => this.scryptWaiting.push(resolve))
    } else {
      this.scryptRunning++
    }
    try {
      return await verifyPassword(secret, hash)
    } finally {
      const next = this.scryptWaiting.shift()
      if (next !== undefined) next() // the slot passes to the next in line
      else this.scryptRunning--
    }
  }

  private scryptRunning = 0
  private readonly scryptWaiting: Array<() => void> = []

  /**
   * The user an HTTP bearer token (access or device token, never a password)
   * belongs to, with its admin flag; null when the token is not valid.
   */
  async bearer (token: string): Promise<{ user: string, admin: boolean } | null> {
    await this.cache.refresh() // a token made a moment ago works, one revoked a moment ago does not
    let user: string | undefined
    const device = parseDeviceToken(token)
    if (device !== null) user = this.cache.tokens.get(device.id)?.user
    else if (JWT_SHAPE.test(token)) {
      try { user = decodeJwt(token).sub } catch { return null }
    }
    if (user === undefined || !isValidUsername(user)) return null
    const method = await this.check(user, token)
    if (method !== 'jwt' && method !== 'device_token') return null
    return { user, admin: this.cache.users.get(user)?.admin === true }
  }

  private session (client: Client, user: string | null, admin: boolean, method: AuthMethod, address: string, service = false): Session {
    this.stats.authSuccess[method]++
    return {
      user,
      admin,
      service,
      method,
      clientId: client.id,
      address,
      userPrefix: user === null ? null : topics.userPrefix(user),
      publishBucket: this.cfg.publishRate > 0 && !service ? new TokenBucket(this.cfg.publishRate, this.cfg.publishBurst) : null,
      lastNotice: 0,
      suppressedNotices: 0
    }
  }

  close (): void {
    this.connBuckets.close()
    this.failures.close()
    this.failureLog.close()
  }
}

/** A verified JWT's password fingerprint (`pwv`) and web login (`sid`); tokens made before they existed have neither. */
function jwtSession (token: string): { pwv?: string, sid?: string } {
  const p = decodeJwt(token)
  return { ...(typeof p.pwv === 'string' ? { pwv: p.pwv } : {}), ...(typeof p.sid === 'string' ? { sid: p.sid } : {}) }
}

/**
 * mqtt-packet's parser keeps the CONNECT packet it parsed, password
 * included, as its settings for the life of the connection, though it reads
 * only the protocol version and the bridge flag from it afterwards: keep
 * those two, so that no credential (and none of the packet's buffers and
 * strings) stays in memory for each connected client.
 */
function forgetConnectPacket (client: Client): void {
  const parser = connectionParser(client)
  const s = parser?.settings
  if (parser !== undefined && s !== undefined) parser.settings = { protocolVersion: s.protocolVersion, bridgeMode: s.bridgeMode }
}

/**
 * A valid scrypt hash of a random password, for constant-time misses; its
 * parameters must match those of hashPassword (a test checks).
 */
export const DUMMY_HASH = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$y9Kx0i5mQ8u1m8kJkzq3r0b0b0b0b0b0b0b0b0b0b0A='
