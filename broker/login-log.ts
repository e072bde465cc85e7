/**
 * What the log says about logins and connections, at info, as Mosquitto's
 * does: one `login failed` line with the reason for a refused CONNECT, one
 * `client connected` line per accepted one, one `client disconnected` line
 * with why when it ends. Nothing here runs per message.
 *
 * Failure lines are rate limited, so a device looping on a wrong password or
 * a connect storm cannot flood the log: per source address at most
 * PER_ADDRESS lines a window, and at most TOTAL lines a window over all
 * addresses; the rest are counted and summed up per address (with their
 * reasons) in one `login failures not logged` line when the window ends or
 * the node closes.
 *
 * Never logged: passwords or tokens. The user name only when it is a valid
 * one, the client id only when it does not look like (the start of) a token,
 * and neither when it holds the password given or a good part of it: those
 * may be a secret pasted into the wrong field.
 */
import type { Aedes, Client } from 'aedes'
import { connectedClients, keepaliveSeconds, protocolLevel, routingEmitter, sentDisconnect } from './aedes-internals.js'
import { isValidUsername } from '@warbler/sdk/protocol'
import { DEVICE_TOKEN_PREFIX } from './identity/identity-store.js'
import type { Logger } from '../shared/log.js'
import { getSession } from './session.js'

/** Why a login was refused, as the `reason` field of `login failed` says it (docs/operations.md lists them). */
export const failureReasons = [
  'anonymous not allowed',
  'too many connections',
  'too many new connections from the address',
  'locked out after failed logins',
  'password checks busy',
  'password without user name',
  'invalid user name',
  'no password',
  'unknown user',
  'user disabled',
  'bad password',
  'unknown token',
  'wrong token secret',
  'revoked token',
  'bad token signature',
  'expired token',
  'revoked session',
  'invalid token',
  'token of another user',
  'token older than the user',
  'bad refresh token',
  'refresh token reused',
  'expired refresh token',
  'client id not the user\'s',
  'empty client id needs clean session',
  'client id reserved'
] as const
export type FailureReason = typeof failureReasons[number]

/** Why a connection ended, as the `reason` field of `client disconnected` says it. */
export type CloseReason = 'client asked' | 'connection lost' | 'keepalive timeout' | 'takeover' | 'error'
| 'server closing' | 'credential revoked' | 'slow consumer' | 'packet too large' | 'malformed packet'

const WINDOW_MS = 10_000
const PER_ADDRESS = 3
const TOTAL = 100

/** A user name or client id fit for the log, or null. `secret` is the password field given with it. */
function publicName (s: string | null | undefined, user: boolean, secret: string): string | null {
  if (s == null || s === '') return null
  if (user ? !isValidUsername(s) : s.startsWith('eyJ') || s.startsWith(DEVICE_TOKEN_PREFIX)) return null
  // Passwords have at least 8 characters; a shorter name is no part of one worth hiding.
  if (secret.length > 0 && (s.includes(secret) || (s.length >= 8 && secret.includes(s)))) return null
  return s
}

export interface Failure {
  reason: FailureReason
  address: string
  clientId: string | null
  user: string | undefined
  /** The password field, only to keep it (and names that hold it) out of the line; never logged. */
  secret: string
}

interface Suppressed { count: number, reasons: Partial<Record<FailureReason, number>> }

/** A refused login as the admin API shows it: the same fields the log line has, so never a secret. */
export interface RecentFailure {
  at: number
  reason: FailureReason
  address: string
  clientId: string | null
  user: string | null
  /** The worker that refused it, in the node-wide list of `--workers N` (server/cluster.ts). */
  worker?: number
}

/** How many refused logins a node keeps for the admin console (newest last). */
const RECENT = 100

/** The rate-limited `login failed` lines of one node. */
export class FailureLog {
  /** Lines logged per address in this window. */
  private readonly logged = new Map<string, number>()
  private readonly suppressed = new Map<string, Suppressed>()
  private total = 0
  private timer: NodeJS.Timeout | null = null
  // Kept whatever the log's rate limit dropped: the console shows why a device cannot connect.
  private readonly recentFailures: RecentFailure[] = []

  constructor (private readonly log: Logger, private readonly windowMs = WINDOW_MS) {}

  /** The last refused logins, oldest first. */
  recent (): RecentFailure[] {
    return [...this.recentFailures]
  }

  note (f: Failure): void {
    this.recentFailures.push({ at: Date.now(), reason: f.reason, address: f.address, clientId: publicName(f.clientId, false, f.secret), user: publicName(f.user, true, f.secret) })
    if (this.recentFailures.length > RECENT) this.recentFailures.shift()
    if (this.timer === null) {
      this.timer = setInterval(() => this.flush(), this.windowMs)
      this.timer.unref()
    }
    const n = this.logged.get(f.address) ?? 0
    if (n < PER_ADDRESS && this.total < TOTAL) {
      this.logged.set(f.address, n + 1)
      this.total++
      this.log.info('login failed', { reason: f.reason, clientId: publicName(f.clientId, false, f.secret), user: publicName(f.user, true, f.secret), address: f.address })
      return
    }
    let s = this.suppressed.get(f.address)
    if (s === undefined) {
      s = { count: 0, reasons: {} }
      this.suppressed.set(f.address, s)
    }
    s.count++
    s.reasons[f.reason] = (s.reasons[f.reason] ?? 0) + 1
  }

  /** End the window: one summary line per address with failures not logged (at most TOTAL, then one for the rest). */
  flush (): void {
    let lines = 0
    let restCount = 0
    let restAddresses = 0
    for (const [address, s] of this.suppressed) {
      if (lines < TOTAL) {
        this.log.info('login failures not logged', { address, count: s.count, reasons: s.reasons })
        lines++
      } else {
        restCount += s.count
        restAddresses++
      }
    }
    if (restCount > 0) this.log.info('login failures not logged', { addresses: restAddresses, count: restCount })
    const idle = this.total === 0 && this.suppressed.size === 0
    this.logged.clear()
    this.suppressed.clear()
    this.total = 0
    if (idle && this.timer !== null) {
      clearInterval(this.timer)
      this.timer = null
    }
  }

  close (): void {
    this.flush()
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }
}

/** Why a connection is being closed, when the broker closes it (the first reason given wins). */
const closeReasons = new WeakMap<Client, { reason: CloseReason, error?: string }>()

export function markClose (client: Client | null | undefined, reason: CloseReason, error?: string): void {
  if (client == null || closeReasons.has(client)) return
  closeReasons.set(client, error === undefined ? { reason } : { reason, error })
}

/**
 * A CONNECT for a client id already connected here takes its session over:
 * aedes closes the older connection before it registers the new one.
 */
export function noteTakeover (broker: Aedes, client: Client): void {
  const older = connectedClients(broker)[client.id]
  if (older !== undefined && older !== client) markClose(older, 'takeover')
}

/**
 * Log connects and disconnects of a broker. `closing` tells whether the node
 * is shutting down (its clients are then closed by the server).
 */
export function logConnections (b: Aedes, log: Logger, closing: () => boolean): void {
  b.on('clientReady', (client) => {
    const s = getSession(client)
    log.info('client connected', {
      clientId: client.id,
      user: s?.user ?? null,
      address: s?.address ?? null,
      protocolVersion: protocolLevel(client),
      keepalive: keepaliveSeconds(client),
      cleanSession: client.clean
    })
  })
  b.on('keepaliveTimeout', (client) => { markClose(client, 'keepalive timeout') })
  // A client id that connected to another broker of the same Redis: aedes there closes ours.
  routingEmitter(b).on('$SYS/+/new/clients', (packet, done) => {
    const broker = packet.topic.split('/')[1]
    if (broker !== b.id) {
      const c = connectedClients(b)[packet.payload.toString()]
      markClose(c, 'takeover')
    }
    done()
  }, () => {})
  b.on('clientDisconnect', (client) => {
    const s = getSession(client)
    const marked = closeReasons.get(client)
    const reason: CloseReason = marked?.reason ??
      (sentDisconnect(client) ? 'client asked' : closing() ? 'server closing' : 'connection lost')
    log.info('client disconnected', {
      clientId: client.id,
      user: s?.user ?? null,
      reason,
      ...(marked?.error !== undefined ? { error: marked.error } : {})
    })
  })
}
