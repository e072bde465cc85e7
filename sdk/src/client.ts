/**
 * The Warbler client: one MQTT connection (TCP in Node, WebSocket in
 * browsers), an explicit connection state machine, reconnects with backoff
 * and full jitter, an outbox that keeps sends until the server acknowledges
 * them, a sync on every (re)connect, and in-order, de-duplicated delivery.
 *
 * Each connection attempt is a "link". A link goes: CONNACK, subscribe (state
 * `connected`), sync (live messages wait meanwhile, so that what the sync
 * returns and what arrives live meet in the sequencer in the right order),
 * then ready: the outbox is sent, oldest first, and new sends follow it.
 * Everything a link started (requests, publishes waiting for PUBACK) ends when
 * the link closes; nothing waits on a dead link.
 */
import mqtt, { type MqttClient } from 'mqtt'
import { backoffDelay } from './backoff.js'
import { decodeFrame, encodeFrame } from './codec.js'
import { Emitter, rethrowLater } from './emitter.js'
import {
  AuthError, ClosedError, ConnectionLostError, InvalidArgumentError, isRetryable, ListenerError, ServerError, TimeoutError, WarblerError
} from './errors.js'
import { type ClientOptions, type ResolvedOptions, resolveOptions } from './options.js'
import type { OutboxEntry } from './outbox.js'
import type { AckFrame, ErrorFrame, MessageFrame, PresenceFrame, ReceiptFrame, ServerFrame, TypingEvent } from './protocol.js'
import { CLIENT_MESSAGE_ID_PATTERN, ConnackCodes, topics } from './protocol.js'
import { Sequencer } from './sequencer.js'
import type * as T from './types.js'

/**
 * `idle` until connect() is called; `connecting` during the first attempt;
 * `connected` once logged in and subscribed; `reconnecting` after a lost link
 * or a failed attempt, until the next `connected`; `closed` for good.
 */
export type State = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed'

export type MessageStatus =
  | { cid: string, status: 'pending' }
  | { cid: string, status: 'sent', ack: AckFrame }
  | { cid: string, status: 'failed', error: ServerError }

export interface ClientEvents {
  /** The connection state changed (changed in one place only). */
  state: (e: { newState: State, oldState: State, error?: WarblerError }) => void
  /**
   * A chat message, in seq order per conversation, each once. Messages that
   * arrive before the first listener is added (during the first sync of
   * `Warbler.connect`) are kept and handed to it.
   */
  message: (m: MessageFrame) => void
  /** A send changed status: pending, sent (with the server's ack), or failed. */
  status: (s: MessageStatus) => void
  receipt: (r: ReceiptFrame) => void
  typing: (t: TypingEvent) => void
  presence: (p: PresenceFrame) => void
  /** Something went wrong that no call is waiting for (a refused login while reconnecting, a listener that threw, ...). */
  error: (e: WarblerError) => void
}

interface Waiter { resolve: (v: unknown) => void, reject: (e: WarblerError) => void, timer: ReturnType<typeof setTimeout> }

interface Link {
  readonly gen: number
  readonly client: MqttClient
  /** Resolves when the link is gone. */
  readonly closed: Promise<void>
  end: () => void
  /** CONNACK accepted. */
  connacked: boolean
  /** Subscribed to the inbox and device topics: requests may go out. */
  subscribed: boolean
  /** Synced: live messages go straight to the sequencer, and the outbox is sent. */
  ready: boolean
  /** The CONNACK return code of a refused login. */
  refused: number | null
  /** Incoming frames are handled one after the other, in arrival order. */
  frames: Promise<void>
  /** Payloads being published -> their cid or request id; then MQTT packet id -> that id (the broker's refusal notices name the packet id). */
  readonly payloads: Map<string | Uint8Array, string>
  readonly mids: Map<number, string>
}

interface PendingSend {
  entry: OutboxEntry
  resolve: (a: AckFrame) => void
  reject: (e: WarblerError) => void
  /** The link it was last published on (0: not on the current one). */
  sentOn: number
  sentAt: number
  settled: boolean
}

/** Unacknowledged sends published at once before waiting for their PUBACKs. */
const WINDOW = 32
const noop = (): void => {}

let counter = 0
/** A client message or request id: time, a counter and randomness (unique across restarts). */
export function newId (prefix: string): string {
  return `${prefix}${Date.now().toString(36)}${(++counter).toString(36)}${Math.random().toString(36).slice(2, 8)}`
}

function asWarblerError (err: unknown): WarblerError {
  return err instanceof WarblerError ? err : new WarblerError('connection_lost', String(err), { cause: err })
}

function checkTarget (target: unknown): void {
  const t = target as { to?: unknown, conv?: unknown } | null
  const ok = typeof t === 'object' && t !== null && ((typeof t.to === 'string' && t.to !== '' && t.conv === undefined) ||
    (typeof t.conv === 'string' && t.conv !== '' && t.to === undefined))
  if (!ok) throw new InvalidArgumentError('target must be {to: user} or {conv: conversation id}')
}

export class WarblerClient extends Emitter<ClientEvents> {
  private _state: State = 'idle'
  private link: Link | null = null
  private gen = 0
  private attempt = 0
  private retryTimer: ReturnType<typeof setTimeout> | null = null
  private resendTimer: ReturnType<typeof setTimeout> | null = null
  private pumpTimer: ReturnType<typeof setTimeout> | null = null
  private pumping = false
  private pumpAgain = false
  /** After retryable refusals: no sends before this time; how many in a row. */
  private pauseUntil = 0
  private throttled = 0
  private lastCreatedAt = 0
  private readonly sends = new Map<string, PendingSend>()
  private readonly requests = new Map<string, Waiter>()
  private readonly sequencer: Sequencer
  /** Live messages that arrive while a new link syncs. */
  private syncing: MessageFrame[] | null = null
  /** Messages for the app before it listened to 'message'. */
  private unheard: MessageFrame[] = []
  private heard = false
  private password: string
  private connecting: Promise<this> | null = null
  private firstConnect: { resolve: () => void, reject: (e: WarblerError) => void } | null = null
  private refreshedOnFirst = false
  /** A sync has been applied (`startAt: 'now'` acts on the first one only). */
  private synced = false
  private readonly o: ResolvedOptions
  readonly clientId: string

  /**
   * A client that is not connected yet (state `idle`): add listeners, then
   * call connect(). `Warbler.connect(options)` does both at once.
   * Throws InvalidArgumentError naming a bad option.
   */
  constructor (options: ClientOptions) {
    super()
    this.o = resolveOptions(options)
    this.clientId = `${this.o.username}-${this.o.device}`
    this.password = this.o.token ?? this.o.password ?? ''
    this.sequencer = new Sequencer((m) => { this.hand(m) }, (conv, after) => this.fetchAfter(conv, after), this.o.since)
  }

  /** Connect and resolve once connected and synced (the first time). */
  static async connect (options: ClientOptions): Promise<WarblerClient> {
    return await new WarblerClient(options).connect()
  }

  /**
   * Connect; resolves once logged in, subscribed and synced (the first time),
   * then stays connected, reconnecting as needed, until close(). Rejects if the
   * first attempt fails (unless `waitOnFirstConnect`), with AuthError for a
   * refused login. Calling it again returns the same promise.
   */
  async connect (): Promise<this> {
    if (this.connecting !== null) return await this.connecting
    if (this._state === 'closed') throw new ClosedError()
    this.connecting = new Promise<this>((resolve, reject) => {
      this.firstConnect = { resolve: () => { resolve(this) }, reject }
    })
    this.setState('connecting')
    this.dial()
    return await this.connecting
  }

  get state (): State { return this._state }
  private isClosed (): boolean { return this._state === 'closed' }
  get user (): string { return this.o.username }

  /** The last seq received per conversation; persist it and pass it back as `since` to resume. */
  get syncState (): Record<string, number> { return this.sequencer.state() }

  override on<K extends keyof ClientEvents> (event: K, fn: ClientEvents[K]): () => void {
    const off = super.on(event, fn)
    if (event === 'message' && !this.heard) {
      this.heard = true
      if (this.unheard.length > 0) queueMicrotask(() => { this.flushUnheard() })
    }
    return off
  }

  /**
   * An app's listener threw. The SDK goes on either way (the emit caught it);
   * it is told as an `error` event (ListenerError, code `listener_failed`).
   * When nobody listens to `error`, or the `error` listener itself threw, it
   * is rethrown in a microtask, an uncaught exception, never emitted again.
   */
  protected override listenerFailed (event: keyof ClientEvents, err: unknown): void {
    if (event === 'error' || this.listenerCount('error') === 0) { rethrowLater(err); return }
    this.emit('error', new ListenerError(event, err))
  }

  /** To the app; kept until the first 'message' listener comes (an app that never listens keeps the newest 10 000). */
  private hand (m: MessageFrame): void {
    if (this.heard && this.unheard.length === 0) { this.emit('message', m); return }
    this.unheard.push(m)
    if (!this.heard && this.unheard.length > 10_000) this.unheard.shift()
  }

  private flushUnheard (): void {
    const list = this.unheard
    this.unheard = []
    for (const m of list) this.emit('message', m)
  }

  private setState (newState: State, error?: WarblerError): void {
    if (newState === this._state) return
    const oldState = this._state
    this._state = newState
    this.emit('state', error === undefined ? { newState, oldState } : { newState, oldState, error })
  }

  // -- connection -----------------------------------------------------------

  private dial (): void {
    this.retryTimer = null
    if (this._state === 'closed') return
    const client = mqtt.connect(this.o.url, {
      clientId: this.clientId,
      username: this.o.username,
      password: this.password,
      clean: false,
      protocolVersion: 4,
      keepalive: this.o.keepalive,
      reconnectPeriod: 0, // our own policy (backoff.ts), one attempt in flight
      connectTimeout: this.o.connectTimeout,
      resubscribe: false
    })
    let end = noop
    const closed = new Promise<void>((resolve) => { end = resolve })
    const link: Link = {
      gen: ++this.gen, client, closed, end, connacked: false, subscribed: false, ready: false, refused: null,
      frames: Promise.resolve(), payloads: new Map(), mids: new Map()
    }
    this.link = link
    // Everything that arrives before the sync is done waits for it (a persistent
    // session's queued messages come right after CONNACK).
    this.syncing = []
    client.on('packetsend', (p) => {
      if (p.cmd !== 'publish' || p.messageId === undefined) return
      const id = link.payloads.get(p.payload)
      if (id === undefined) return
      link.payloads.delete(p.payload)
      link.mids.set(p.messageId, id)
    })
    client.on('message', (_topic, payload) => {
      link.frames = link.frames.then(async () => { await this.onPayload(link, payload) })
        .catch((err: unknown) => { this.emit('error', asWarblerError(err)) })
    })
    client.on('connect', () => {
      link.connacked = true
      void this.onConnected(link)
    })
    client.on('error', (err: Error & { code?: unknown }) => {
      // A refused CONNACK (1-5); other errors (sockets, protocol) just close the link.
      if (!link.connacked && typeof err.code === 'number' && err.code >= 1 && err.code <= 5) link.refused = err.code
    })
    client.on('close', () => { this.drop(link) })
  }

  /** The link is gone (closed by either side, or given up): clean up and reconnect. */
  private drop (link: Link): void {
    link.end()
    if (this.link !== link) return
    this.link = null
    link.client.end(true)
    this.onDisconnected(link)
  }

  private async onConnected (link: Link): Promise<void> {
    try {
      const granted = await this.untilClosed(link, link.client.subscribeAsync([topics.inbox(this.o.username), topics.device(this.clientId)], { qos: 1 }))
      if (granted.some((g) => g.qos === 128)) throw new WarblerError('not_authorized', 'the server refused the inbox or device subscription')
      if (this.link !== link) return
      link.subscribed = true
      this.setState('connected')
      // A device that starts from now takes the conversations it has no seq for as seen up to their
      // last seq, on its first sync: their messages in the reply are dropped, so with nothing known
      // it asks for as few as it may.
      const fromNow = this.o.startAt === 'now' && !this.synced
      const after = this.sequencer.state()
      const limit = fromNow && Object.keys(after).length === 0 ? 1 : this.o.syncLimit
      const data = await this.requestOn<T.SyncResult>(link, 'sync', { after, limit })
      if (this.link !== link) return
      if (fromNow) for (const c of data.conversations) this.sequencer.start(c.conv, c.lastSeq)
      this.synced = true
      // The sync's messages first, then the live ones that came meanwhile (duplicates collapse).
      for (const m of data.messages) this.sequencer.offer(m)
      const live = this.syncing ?? []
      this.syncing = null
      link.ready = true
      for (const m of live) this.sequencer.offer(m)
      // Conversations cut at the sync's limit (or with a gap) are fetched in pages.
      for (const c of data.conversations) this.sequencer.expect(c.conv, c.lastSeq)
      this.sequencer.retryGaps()
      this.attempt = 0
      this.armResend(link)
      void this.pump()
      if (this.firstConnect !== null) {
        this.firstConnect.resolve()
        this.firstConnect = null
      }
    } catch (err) {
      if (this.link !== link) return // the link dropped meanwhile: already handled
      // A server refusal is worth telling; a timeout on a silent link is just a lost link.
      if (err instanceof ServerError || (err instanceof WarblerError && err.code === 'not_authorized')) this.emit('error', err)
      this.drop(link)
    }
  }

  private onDisconnected (link: Link): void {
    this.syncing = null
    if (this.resendTimer !== null) { clearTimeout(this.resendTimer); this.resendTimer = null }
    for (const [id, w] of this.requests) {
      clearTimeout(w.timer)
      this.requests.delete(id)
      w.reject(new ConnectionLostError())
    }
    if (this._state === 'closed') return
    const code = link.refused
    // CONNACK 3 (server busy) is retried like a lost link; the others are refused logins.
    const refused = code !== null && code !== 3
    const error: WarblerError = refused
      ? new AuthError(code, `login refused (CONNACK ${code}): ${ConnackCodes[code as keyof typeof ConnackCodes] ?? 'unknown reason'}`)
      : link.connacked
        ? new ConnectionLostError('connection lost')
        : new ConnectionLostError(code === 3 ? `${this.o.url}: server unavailable (CONNACK 3)` : `cannot connect to ${this.o.url}`)
    const refresh = refused && code === 4 && this.o.refreshToken !== undefined
    if (this.firstConnect !== null && !this.o.waitOnFirstConnect && !link.connacked && !(refresh && !this.refreshedOnFirst)) {
      // The first attempt failed: report it rather than retry in the background.
      this.finish(error, error)
      return
    }
    if (refresh && this.firstConnect !== null) this.refreshedOnFirst = true
    if (refused) this.emit('error', error)
    this.setState('reconnecting', error)
    this.scheduleRedial(refused)
  }

  private scheduleRedial (authFailed: boolean): void {
    // A refused login that no new token can fix is retried at the slowest pace
    // (it may be a passing block after failed logins from this address).
    const attempt = authFailed && this.o.refreshToken === undefined ? 64 : this.attempt++
    this.retryTimer = setTimeout(() => { void this.redial(authFailed) }, backoffDelay(attempt, this.o.reconnect))
  }

  private async redial (authFailed: boolean): Promise<void> {
    this.retryTimer = null
    try {
      if (this.o.refreshToken !== undefined && (authFailed || this.tokenExpiresSoon())) {
        const token = await this.o.refreshToken()
        if (typeof token !== 'string' || token === '') throw new Error('refreshToken() gave no token')
        this.password = token
      }
    } catch (err) {
      if (this._state === 'closed') return
      this.emit('error', new WarblerError('auth_failed', `token refresh failed: ${String(err)}`, { cause: err }))
      this.scheduleRedial(authFailed)
      return
    }
    if (this._state === 'closed' || this.link !== null || this.retryTimer !== null) return
    this.dial()
  }

  private tokenExpiresSoon (): boolean {
    const parts = this.password.split('.')
    if (parts.length !== 3 || !this.password.startsWith('eyJ')) return false
    try {
      const b64 = (parts[1] as string).replace(/-/g, '+').replace(/_/g, '/')
      const payload = JSON.parse(atob(b64)) as { exp?: number }
      return typeof payload.exp === 'number' && payload.exp * 1000 < Date.now() + 60_000
    } catch {
      return false
    }
  }

  /** `p`, or a ConnectionLostError as soon as the link is gone (mqtt.js keeps a dead link's callbacks forever). */
  private async untilClosed<R> (link: Link, p: Promise<R>): Promise<R> {
    p.catch(noop)
    return await Promise.race([p, link.closed.then(() => { throw new ConnectionLostError() })])
  }

  // -- receiving ------------------------------------------------------------

  private async onPayload (link: Link, payload: Uint8Array): Promise<void> {
    let f: ServerFrame
    try {
      f = await decodeFrame(payload) as ServerFrame
    } catch {
      return // not ours
    }
    if (typeof f !== 'object' || f === null) return
    switch (f.t) {
      case 'msg':
        if (typeof f.conv !== 'string' || !Number.isSafeInteger(f.seq) || f.seq < 1) return
        // A message of a link that is gone is left to the next sync (it is in the archive).
        if (this.link !== link) return
        if (link.ready) this.sequencer.offer(f)
        else this.syncing?.push(f)
        return
      case 'ack': await this.onAck(f); return
      case 'res': {
        const w = this.requests.get(f.id)
        if (w === undefined) return
        this.requests.delete(f.id)
        clearTimeout(w.timer)
        w.resolve(f.data)
        return
      }
      case 'error': await this.onError(link, f); return
      case 'receipt': this.emit('receipt', f); return
      case 'typing': this.emit('typing', f); return
      case 'presence': this.emit('presence', f)
    }
  }

  private async onAck (f: AckFrame): Promise<void> {
    const s = this.sends.get(f.cid)
    if (s === undefined) {
      // A repeated ack, or one for an earlier run's message: stored, so not pending.
      await this.o.outbox.remove(f.cid)
      return
    }
    if (s.settled) return
    s.settled = true
    this.throttled = 0
    await this.settle(f.cid)
    this.emit('status', { cid: f.cid, status: 'sent', ack: f })
    s.resolve(f)
  }

  private async onError (link: Link, f: ErrorFrame): Promise<void> {
    const ref = f.ref ?? (f.mid === undefined ? undefined : link.mids.get(f.mid))
    const e = new ServerError(f.code, f.message, ref)
    if (ref !== undefined) {
      const w = this.requests.get(ref)
      if (w !== undefined) {
        this.requests.delete(ref)
        clearTimeout(w.timer)
        w.reject(e)
        return
      }
      const s = this.sends.get(ref)
      if (s !== undefined) {
        if (s.settled) return
        if (isRetryable(f.code)) { this.throttle(link); return }
        s.settled = true
        await this.settle(ref)
        this.emit('status', { cid: ref, status: 'failed', error: e })
        s.reject(e)
        return
      }
    }
    this.emit('error', e)
  }

  /** A send is done (acknowledged or refused): out of the outbox. */
  private async settle (cid: string): Promise<void> {
    try {
      await this.o.outbox.remove(cid)
    } catch (err) {
      this.emit('error', new WarblerError('internal', `outbox: cannot remove ${cid}: ${String(err)}`, { cause: err }))
    } finally {
      this.sends.delete(cid)
    }
  }

  private async fetchAfter (conv: string, after: number): Promise<MessageFrame[]> {
    const page = await this.request<T.HistoryPage>('history', { conv, after, limit: 200 })
    return page.messages
  }

  // -- sending --------------------------------------------------------------

  /** Publish a frame on a link; resolves on PUBACK, rejects once the link is gone. */
  private async publishOn (link: Link, frame: object, id?: string, qos: 0 | 1 = 1): Promise<void> {
    await (await this.handOff(link, frame, id, qos)).acked
  }

  /**
   * Encode a frame and hand it to the link's MQTT client; resolves once handed
   * over (so that callers who wait for it publish in their order, whatever the
   * time compression takes) with the promise of its PUBACK (in an object: a
   * promise resolved with a promise would wait for it).
   */
  private async handOff (link: Link, frame: object, id: string | undefined, qos: 0 | 1): Promise<{ acked: Promise<void> }> {
    if (this.link !== link || !link.subscribed) throw new ConnectionLostError('not connected')
    const bytes = await encodeFrame(frame, this.o.compressThreshold)
    if (this.link !== link) throw new ConnectionLostError('not connected')
    // Node's Buffer when there is one; browsers' mqtt.js takes the bytes as they are.
    const B = (globalThis as { Buffer?: { from: (a: ArrayBufferLike, o: number, l: number) => Uint8Array } }).Buffer
    const payload = (B === undefined ? bytes : B.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)) as Buffer
    if (id !== undefined && qos === 1) link.payloads.set(payload, id)
    const acked = new Promise<void>((resolve, reject) => {
      link.client.publish(topics.out(this.o.username), payload, { qos }, (err) => {
        link.payloads.delete(payload)
        if (err !== undefined && err !== null) reject(new ConnectionLostError(String(err))); else resolve()
      })
    })
    const done = this.untilClosed(link, acked)
    done.catch(noop) // the caller may not wait for it
    return { acked: done }
  }

  /**
   * Send the outbox on the ready link, oldest first, each once per link, a
   * window at a time. New sends go through here too, after the older ones.
   */
  private async pump (): Promise<void> {
    if (this.pumping) { this.pumpAgain = true; return }
    this.pumping = true
    try {
      do {
        this.pumpAgain = false
        const link = this.link
        if (link === null || !link.ready) return
        let batch: Array<Promise<void>> = []
        for (const entry of await this.o.outbox.load()) {
          if (this.link !== link) return
          let s = this.sends.get(entry.cid)
          if (s === undefined) {
            // Left by an earlier run of the app: track it again.
            s = { entry, resolve: noop, reject: noop, sentOn: 0, sentAt: 0, settled: false }
            this.sends.set(entry.cid, s)
          }
          if (s.settled || s.sentOn === link.gen) continue
          const wait = this.pauseUntil - Date.now()
          if (wait > 0) { this.pumpLater(wait); break }
          s.sentOn = link.gen
          s.sentAt = Date.now()
          // Handed over one after the other, in outbox order; their PUBACKs are awaited a window at a time.
          batch.push((await this.handOff(link, { t: 'msg', cid: entry.cid, ...entry.target, body: entry.body }, entry.cid, 1)).acked)
          if (batch.length >= WINDOW) { await Promise.all(batch); batch = [] }
        }
        await Promise.all(batch)
      } while (this.pumpAgain)
    } catch (err) {
      // The link dropped: the next one sends again. Anything else (an outbox that cannot be read) is told.
      if (!(err instanceof ConnectionLostError)) this.emit('error', new WarblerError('internal', `outbox: ${String(err)}`, { cause: err }))
    } finally {
      this.pumping = false
    }
  }

  private pumpLater (ms: number): void {
    if (this.pumpTimer !== null) clearTimeout(this.pumpTimer)
    this.pumpTimer = setTimeout(() => { this.pumpTimer = null; void this.pump() }, ms)
  }

  /**
   * A retryable refusal (rate limit, service stopping): the sends still
   * unanswered on this link were likely refused too; all of them go again, in
   * order, after a backoff (those the server did store are answered with
   * their first ack).
   */
  private throttle (link: Link): void {
    const delay = backoffDelay(this.throttled++, { minDelay: 250, maxDelay: 10_000 })
    this.pauseUntil = Math.max(this.pauseUntil, Date.now() + delay)
    for (const s of this.sends.values()) if (!s.settled && s.sentOn === link.gen) s.sentOn = 0
    this.pumpLater(this.pauseUntil - Date.now())
  }

  /** While a link is ready: a send without an answer for requestTimeout is sent again (same cid: stored once). */
  private armResend (link: Link): void {
    if (this.resendTimer !== null) clearTimeout(this.resendTimer)
    const period = Math.max(100, Math.floor(this.o.requestTimeout / 2))
    const tick = (): void => {
      this.resendTimer = null
      if (this.link !== link || this._state === 'closed') return
      const now = Date.now()
      let due = false
      for (const s of this.sends.values()) {
        if (!s.settled && s.sentOn === link.gen && now - s.sentAt >= this.o.requestTimeout) { s.sentOn = 0; due = true }
      }
      if (due) void this.pump()
      this.resendTimer = setTimeout(tick, period)
    }
    this.resendTimer = setTimeout(tick, period)
  }

  /**
   * Send a chat message to a user (`{to}`) or a conversation (`{conv}`).
   * Resolves with the server's acknowledgement (stored, with its seq); it is
   * kept in the outbox and resent across reconnects until then. Rejects with
   * a ServerError when the server refuses it (not a member, bad body...), and
   * with ClosedError when the client is closed first (the message stays in
   * the outbox for the next run).
   */
  async send (target: { to: string } | { conv: string }, body: unknown, opts: { cid?: string } = {}): Promise<AckFrame> {
    if (this._state === 'closed') throw new ClosedError()
    checkTarget(target)
    if (body === undefined || body === null) throw new InvalidArgumentError('body must be a JSON value other than null')
    try { JSON.stringify(body) } catch (err) { throw new InvalidArgumentError(`body must be JSON: ${String(err)}`) }
    if (opts.cid !== undefined && !CLIENT_MESSAGE_ID_PATTERN.test(opts.cid)) throw new InvalidArgumentError('cid must be 1-64 of A-Z a-z 0-9 _ . : -')
    // createdAt orders the outbox in stores that sort by it (IndexedDB): strictly increasing per client.
    this.lastCreatedAt = Math.max(Date.now(), this.lastCreatedAt + 1)
    const entry: OutboxEntry = { cid: opts.cid ?? newId('m'), target, body, createdAt: this.lastCreatedAt }
    await this.o.outbox.put(entry)
    if (this.isClosed()) throw new ClosedError() // kept in the outbox for the next run
    const done = new Promise<AckFrame>((resolve, reject) => {
      const s = this.sends.get(entry.cid)
      if (s !== undefined && !s.settled) {
        // The same cid again (a retry by the app), or already picked up from the outbox: answer both.
        const [res, rej] = [s.resolve, s.reject]
        s.resolve = (a) => { res(a); resolve(a) }
        s.reject = (e) => { rej(e); reject(e) }
      } else {
        this.sends.set(entry.cid, { entry, resolve, reject, sentOn: 0, sentAt: 0, settled: false })
      }
    })
    this.emit('status', { cid: entry.cid, status: 'pending' })
    void this.pump()
    return await done
  }

  /** Messages still waiting for the server's acknowledgement. */
  async pending (): Promise<OutboxEntry[]> { return await this.o.outbox.load() }

  /** A request to the message service (see docs/protocol.md); rejects with ServerError, TimeoutError or ConnectionLostError (not connected now). */
  async request<R = unknown> (op: string, params: Record<string, unknown> = {}): Promise<R> {
    if (this._state === 'closed') throw new ClosedError()
    const link = this.link
    if (link === null || !link.subscribed) throw new ConnectionLostError('not connected')
    return await this.requestOn<R>(link, op, params)
  }

  private async requestOn<R> (link: Link, op: string, params: Record<string, unknown>): Promise<R> {
    const id = newId('r')
    const result = new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.requests.delete(id)
        reject(new TimeoutError(op, this.o.requestTimeout))
      }, this.o.requestTimeout)
      this.requests.set(id, { resolve: resolve as (v: unknown) => void, reject, timer })
    })
    this.publishOn(link, { t: 'req', id, op, ...params }, id).catch((err: unknown) => {
      const w = this.requests.get(id)
      if (w === undefined) return
      this.requests.delete(id)
      clearTimeout(w.timer)
      w.reject(asWarblerError(err))
    })
    return await result
  }

  // -- typed operations -----------------------------------------------------

  history (conv: string, opts: { before?: number, after?: number, limit?: number } = {}): Promise<T.HistoryPage> { return this.request('history', { conv, ...opts }) }
  search (q: string, opts: { conv?: string, limit?: number } = {}): Promise<{ messages: MessageFrame[] }> { return this.request('search', { q, ...opts }) }
  conversations (limit?: number): Promise<{ conversations: T.ConversationSummary[] }> { return this.request('convs', limit === undefined ? {} : { limit }) }
  unread (): Promise<T.Unread> { return this.request('unread') }
  markRead (conv: string, seq: number): Promise<{ conv: string, seq: number }> { return this.request('read', { conv, seq }) }
  markDelivered (conv: string, seq: number): Promise<{ conv: string, seq: number }> { return this.request('delivered', { conv, seq }) }
  receipts (conv: string): Promise<{ members: T.Receipt[] }> { return this.request('receipts', { conv }) }
  presence (users: string[]): Promise<{ users: T.Presence[] }> { return this.request('presence', { users }) }
  createGroup (name: string, members: string[] = []): Promise<{ conv: string, seq: number }> { return this.request('group.create', { name, members }) }
  renameGroup (conv: string, name: string): Promise<{ seq: number }> { return this.request('group.rename', { conv, name }) }
  addMembers (conv: string, users: string[]): Promise<{ seq: number | null, added: string[] }> { return this.request('group.add', { conv, users }) }
  removeMembers (conv: string, users: string[]): Promise<{ seq: number | null, removed: string[] }> { return this.request('group.remove', { conv, users }) }
  leaveGroup (conv: string): Promise<{ seq: number, owner?: string }> { return this.request('group.leave', { conv }) }
  setRole (conv: string, user: string, role: 'admin' | 'member'): Promise<{ seq: number }> { return this.request('group.role', { conv, user, role }) }
  members (conv: string): Promise<T.GroupInfo> { return this.request('group.members', { conv }) }

  /** Tell the other members that this user is typing (ephemeral, best effort; at most one a second counts). */
  async typing (conv: string): Promise<void> {
    const link = this.link
    if (link === null || !link.subscribed) return
    await this.publishOn(link, { t: 'typing', conv }, undefined, 0).catch(noop)
  }

  /** Close the connection. Pending sends stay in the outbox for the next run. Idempotent. */
  async close (): Promise<void> {
    if (this._state === 'closed') return
    this.finish(new ClosedError())
    const link = this.link
    this.link = null
    if (link !== null) {
      link.end()
      await link.client.endAsync(true).catch(noop)
    }
  }

  /** Closed for good: timers off, every waiting call rejected with `reason`. */
  private finish (reason: WarblerError, stateError?: WarblerError): void {
    this.setState('closed', stateError)
    for (const t of [this.retryTimer, this.resendTimer, this.pumpTimer]) if (t !== null) clearTimeout(t)
    this.retryTimer = this.resendTimer = this.pumpTimer = null
    this.syncing = null
    for (const s of this.sends.values()) if (!s.settled) s.reject(reason)
    this.sends.clear()
    for (const w of this.requests.values()) { clearTimeout(w.timer); w.reject(reason) }
    this.requests.clear()
    this.firstConnect?.reject(reason)
    this.firstConnect = null
  }
}
