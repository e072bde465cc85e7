/**
 * Client options: typed, defaults named, validated once with a message that
 * names the bad field, then frozen.
 */
import { InvalidArgumentError } from './errors.js'
import { MemoryOutbox, type OutboxStore } from './outbox.js'
import { isValidUsername } from './protocol.js'
import type { BackoffOptions } from './backoff.js'

export interface ClientOptions {
  /** Broker URL: `mqtt://host:1883`, `mqtts://...`, `ws://host:8083/mqtt` or `wss://...` (browsers: ws/wss). */
  url: string
  /** The Warbler user name. */
  username: string
  /** A signed access token or device token (preferred), ... */
  token?: string
  /** ... or the user's password. */
  password?: string
  /** Called for a fresh token before reconnecting when the token is refused or about to expire. */
  refreshToken?: () => Promise<string>
  /** This device's name: the client id is `{username}-{device}`. Keep it stable per device. Default `sdk`. */
  device?: string
  /** Where unsent messages wait (memory by default; FileOutbox in Node, IndexedDbOutbox in browsers). */
  outbox?: OutboxStore
  /** Last seq per conversation from an earlier run (`client.syncState`), to resume without duplicates. */
  since?: Record<string, number>
  /**
   * Where a conversation that `since` does not name starts, at the first sync:
   * `'beginning'` (seq 1: the whole history is handed over as messages) or
   * `'now'` (its current last seq: only newer messages come; older ones stay
   * available through history()). Conversations that appear later start at
   * seq 1 either way. Default `'beginning'`.
   */
  startAt?: 'beginning' | 'now'
  /** Reconnect backoff in ms; default min 250, max 30 000 (full jitter). */
  reconnect?: Partial<BackoffOptions>
  /** MQTT keepalive in seconds; a dead link is noticed after 1.5 times this. Default 20. */
  keepalive?: number
  /** How long a connect attempt may take, ms. Default 10 000. */
  connectTimeout?: number
  /** How long a request waits for its answer, ms. Default 10 000. */
  requestTimeout?: number
  /** Frames at least this large (bytes of JSON) are deflate-compressed; 0 = never. Default 1024. */
  compressThreshold?: number
  /** Messages fetched per conversation by the sync on each connect. Default 100. */
  syncLimit?: number
  /**
   * The MQTT protocol: 5 (MQTT 5, the default) or 4 (MQTT 3.1.1, for a
   * broker or proxy on the way that speaks only that). With 5, a publish the
   * server refuses in its PUBACK fails at once with the server's code.
   */
  protocolVersion?: 4 | 5
  /**
   * Keep retrying when the first connection attempt fails, instead of rejecting
   * connect(). Default false. (Once a first login succeeded, connect() waits
   * through reconnects until the first sync is done.)
   */
  waitOnFirstConnect?: boolean
}

export interface ResolvedOptions {
  readonly url: string
  readonly username: string
  readonly token: string | undefined
  readonly password: string | undefined
  readonly refreshToken: (() => Promise<string>) | undefined
  readonly device: string
  readonly outbox: OutboxStore
  readonly since: Readonly<Record<string, number>>
  readonly startAt: 'beginning' | 'now'
  readonly reconnect: Readonly<BackoffOptions>
  readonly keepalive: number
  readonly connectTimeout: number
  readonly requestTimeout: number
  readonly compressThreshold: number
  readonly syncLimit: number
  readonly waitOnFirstConnect: boolean
  readonly protocolVersion: 4 | 5
}

function int (name: string, v: number | undefined, def: number, min: number, max: number): number {
  const n = v ?? def
  if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}`)
  return n
}

export function resolveOptions (o: ClientOptions): ResolvedOptions {
  if (typeof o !== 'object' || o === null) throw new InvalidArgumentError('options must be an object')
  if (typeof o.url !== 'string' || !/^(mqtts?|wss?):\/\//.test(o.url)) throw new InvalidArgumentError('url must start with mqtt://, mqtts://, ws:// or wss://')
  if (typeof o.username !== 'string' || !isValidUsername(o.username)) throw new InvalidArgumentError('username must be a Warbler user name')
  if ((o.token === undefined) === (o.password === undefined)) throw new InvalidArgumentError('give exactly one of token and password')
  if (o.token !== undefined && (typeof o.token !== 'string' || o.token === '')) throw new InvalidArgumentError('token must be a non-empty string')
  if (o.password !== undefined && (typeof o.password !== 'string' || o.password === '')) throw new InvalidArgumentError('password must be a non-empty string')
  if (o.refreshToken !== undefined && typeof o.refreshToken !== 'function') throw new InvalidArgumentError('refreshToken must be a function returning a promise of a token')
  const outbox = o.outbox ?? new MemoryOutbox()
  if (typeof outbox !== 'object' || outbox === null || typeof outbox.load !== 'function' || typeof outbox.put !== 'function' || typeof outbox.remove !== 'function') {
    throw new InvalidArgumentError('outbox must have load, put and remove methods (an OutboxStore)')
  }
  const since = o.since ?? {}
  if (typeof since !== 'object' || since === null || Array.isArray(since) ||
    !Object.values(since).every((v) => Number.isSafeInteger(v) && v >= 0)) {
    throw new InvalidArgumentError('since must map conversation ids to seqs (whole numbers, 0 or more)')
  }
  const startAt = o.startAt ?? 'beginning'
  if (startAt !== 'beginning' && startAt !== 'now') throw new InvalidArgumentError("startAt must be 'beginning' or 'now'")
  if (o.waitOnFirstConnect !== undefined && typeof o.waitOnFirstConnect !== 'boolean') throw new InvalidArgumentError('waitOnFirstConnect must be a boolean')
  const protocolVersion = o.protocolVersion ?? 5
  if (protocolVersion !== 4 && protocolVersion !== 5) throw new InvalidArgumentError('protocolVersion must be 5 (MQTT 5) or 4 (MQTT 3.1.1)')
  const device = o.device ?? 'sdk'
  if (!/^[A-Za-z0-9_.:-]{1,30}$/.test(device)) throw new InvalidArgumentError('device must be 1-30 of A-Z a-z 0-9 _ . : -')
  const minDelay = int('reconnect.minDelay', o.reconnect?.minDelay, 250, 1, 600_000)
  const maxDelay = int('reconnect.maxDelay', o.reconnect?.maxDelay, 30_000, 1, 3_600_000)
  if (maxDelay < minDelay) throw new InvalidArgumentError('reconnect.maxDelay must be at least reconnect.minDelay')
  return Object.freeze({
    url: o.url,
    username: o.username,
    token: o.token,
    password: o.password,
    refreshToken: o.refreshToken,
    device,
    outbox,
    since: Object.freeze({ ...since }),
    startAt,
    reconnect: Object.freeze({ minDelay, maxDelay }),
    keepalive: int('keepalive', o.keepalive, 20, 1, 3600),
    connectTimeout: int('connectTimeout', o.connectTimeout, 10_000, 100, 600_000),
    requestTimeout: int('requestTimeout', o.requestTimeout, 10_000, 100, 600_000),
    compressThreshold: int('compressThreshold', o.compressThreshold, 1024, 0, 1 << 30),
    syncLimit: int('syncLimit', o.syncLimit, 100, 1, 500),
    waitOnFirstConnect: o.waitOnFirstConnect ?? false,
    protocolVersion
  })
}
