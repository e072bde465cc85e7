/**
 * The Warbler client: one MQTT connection (TCP in Node, WebSocket in
 * browsers), an explicit connection state machine, reconnects with backoff
 * and full jitter, an outbox that keeps sends until the server acknowledges
 * them, a sync on every (re)connect, and in-order, de-duplicated delivery.
 */
import mqtt, { type MqttClient } from 'mqtt'
import { backoffDelay } from './backoff.js'
import { decodeFrame, encodeFrame } from './codec.js'
import { Emitter } from './emitter.js'
import { AuthError, ClosedError, ConnectionLostError, errorFromFrame, isRetryable, type ServerError, TimeoutError, WarblerError } from './errors.js'
import { type ClientOptions, type ResolvedOptions, resolveOptions } from './options.js'
import type { OutboxEntry } from './outbox.js'
import type { AckFrame, MessageFrame, PresenceFrame, ReceiptFrame, ServerFrame, TypingEvent } from './protocol.js'
import { topics } from './protocol.js'
import { Sequencer } from './sequencer.js'
import type * as T from './types.js'

export type State = 'connecting' | 'connected' | 'reconnecting' | 'closed'

export type MessageStatus =
  | { cid: string, status: 'pending' }
  | { cid: string, status: 'sent', ack: AckFrame }
  | { cid: string, status: 'failed', error: ServerError }

export interface ClientEvents {
  /** The connection state changed (changed in one place only). */
  state: (e: { newState: State, oldState: State, error?: WarblerError }) => void
  /** A chat message, in seq order per conversation, each once. */
  message: (m: MessageFrame) => void
  /** A send changed status: pending, sent (with the server's ack), or failed. */
  status: (s: MessageStatus) => void
  receipt: (r: ReceiptFrame) => void
  typing: (t: TypingEvent) => void
  presence: (p: PresenceFrame) => void
  /** Something went wrong that no call is waiting for (a refused login while reconnecting, ...). */
  error: (e: WarblerError) => void
}

interface Waiter { resolve: (v: unknown) => void, reject: (e: WarblerError) => void, timer: ReturnType<typeof setTimeout> }

let seq = 0
/** A client message or request id: time, a counter and randomness (unique across restarts). */
export function newId (prefix: string): string {
  return `${prefix}${Date.now().toString(36)}${(++seq).toString(36)}${Math.random().toString(36).slice(2, 8)}`
}

export class WarblerClient extends Emitter<ClientEvents> {
  private _state: State = 'connecting'
  private mqtt: MqttClient | null = null
  private attempt = 0
  private retryTimer: ReturnType<typeof setTimeout> | null = null
  private readonly sends = new Map<string, { entry: OutboxEntry, resolve: (a: AckFrame) => void, reject: (e: WarblerError) => void }>()
  private readonly requests = new Map<string, Waiter>()
  private readonly sequencer: Sequencer
  private syncing: MessageFrame[] | null = null
  private password: string
  private firstConnect: { resolve: () => void, reject: (e: WarblerError) => void } | null = null
  readonly clientId: string

  private constructor (private readonly o: ResolvedOptions) {
    super()
    this.clientId = `${o.username}-${o.device}`
    this.password = o.token ?? o.password ?? ''
    this.sequencer = new Sequencer((m) => this.emit('message', m), (conv, after) => this.fetchAfter(conv, after), o.since)
  }

  /** Connect and resolve once connected and synced (the first time). */
  static async connect (options: ClientOptions): Promise<WarblerClient> {
    const c = new WarblerClient(resolveOptions(options))
    await new Promise<void>((resolve, reject) => {
      c.firstConnect = { resolve, reject }
      c.dial()
    })
    return c
  }

  get state (): State { return this._state }
  get user (): string { return this.o.username }

  /** The last seq received per conversation; persist it and pass it back as `since` to resume. */
  get syncState (): Record<string, number> { return this.sequencer.state() }

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
    this.mqtt = client
    let connected = false
    client.on('message', (topic, payload) => { void this.onPayload(topic, payload) })
    client.on('connect', () => {
      connected = true
      this.onConnected(client).catch((err: unknown) => {
        this.emit('error', err instanceof WarblerError ? err : new WarblerError('connection_lost', String(err)))
        client.end(true)
      })
    })
    client.on('error', (err: Error & { code?: number }) => {
      if (typeof err.code === 'number' && err.code >= 1 && err.code <= 5) {
        const e = new AuthError(err.code, `login refused (CONNACK ${err.code}): ${err.message}`)
        this.authFailed = e
      }
    })
    client.on('close', () => {
      if (this.mqtt !== client) return
      this.mqtt = null
      client.removeAllListeners('message')
      this.onDisconnected(connected)
    })
  }

  private authFailed: AuthError | null = null

  private async onConnected (client: MqttClient): Promise<void> {
    this.authFailed = null
    await client.subscribeAsync([topics.inbox(this.o.username), topics.device(this.clientId)], { qos: 1 })
    // Live messages wait while the sync fills what was missed, then go through the sequencer.
    this.syncing = []
    this.setState('connected')
    this.attempt = 0
    try {
      await this.sync()
    } finally {
      const live = this.syncing ?? []
      this.syncing = null
      for (const m of live) this.sequencer.offer(m)
    }
    this.sequencer.retryGaps()
    await this.flushOutbox()
    if (this.firstConnect !== null) {
      this.firstConnect.resolve()
      this.firstConnect = null
    }
  }

  private onDisconnected (wasConnected: boolean): void {
    for (const [id, w] of this.requests) {
      clearTimeout(w.timer)
      w.reject(new ConnectionLostError())
      this.requests.delete(id)
    }
    if (this._state === 'closed') return
    const auth = this.authFailed
    if (this.firstConnect !== null && !this.o.waitOnFirstConnect && (auth === null || this.o.refreshToken === undefined)) {
      // The first connection failed: report it rather than retry in the background.
      const e = auth ?? new ConnectionLostError(`cannot connect to ${this.o.url}`)
      this.firstConnect.reject(e)
      this.firstConnect = null
      this.setState('closed', e)
      return
    }
    if (auth !== null) this.emit('error', auth)
    this.setState('reconnecting', wasConnected ? new ConnectionLostError('connection lost') : auth ?? undefined)
    const delay = backoffDelay(this.attempt++, this.o.reconnect)
    this.retryTimer = setTimeout(() => {
      void this.beforeRedial(auth !== null).then(() => this.dial(), (err: unknown) => {
        this.emit('error', new WarblerError('auth_failed', `token refresh failed: ${String(err)}`))
        this.onDisconnected(false)
      })
    }, delay)
  }

  private async beforeRedial (authFailed: boolean): Promise<void> {
    if (this.o.refreshToken !== undefined && (authFailed || this.o.token !== undefined)) {
      if (authFailed || this.tokenExpiresSoon()) this.password = await this.o.refreshToken()
    }
  }

  private tokenExpiresSoon (): boolean {
    const parts = this.password.split('.')
    if (parts.length !== 3 || !this.password.startsWith('eyJ')) return false
    try {
      const b64 = (parts[1] as string).replace(/-/g, '+').replace(/_/g, '/')
      const payload = JSON.parse(atob(b64)) as { exp?: number }
      return payload.exp !== undefined && payload.exp * 1000 < Date.now() + 60_000
    } catch {
      return false
    }
  }

  // -- receiving ------------------------------------------------------------

  private async onPayload (topic: string, payload: Uint8Array): Promise<void> {
    let f: ServerFrame
    try {
      f = await decodeFrame(payload) as ServerFrame
    } catch {
      return // not ours
    }
    switch (f.t) {
      case 'msg':
        if (this.syncing !== null) this.syncing.push(f)
        else this.sequencer.offer(f)
        return
      case 'ack': {
        const s = this.sends.get(f.cid)
        if (s === undefined) return
        this.sends.delete(f.cid)
        await this.o.outbox.remove(f.cid)
        this.emit('status', { cid: f.cid, status: 'sent', ack: f })
        s.resolve(f)
        return
      }
      case 'res': {
        const w = this.requests.get(f.id)
        if (w === undefined) return
        this.requests.delete(f.id)
        clearTimeout(w.timer)
        w.resolve(f.data)
        return
      }
      case 'error': {
        const ref = f.ref
        const w = ref === undefined ? undefined : this.requests.get(ref)
        if (w !== undefined && ref !== undefined) {
          this.requests.delete(ref)
          clearTimeout(w.timer)
          w.reject(errorFromFrame(f))
          return
        }
        const s = ref === undefined ? undefined : this.sends.get(ref)
        if (s !== undefined && ref !== undefined) {
          if (isRetryable(f.code)) return // kept; resent after the next reconnect
          this.sends.delete(ref)
          await this.o.outbox.remove(ref)
          const e = errorFromFrame(f)
          this.emit('status', { cid: ref, status: 'failed', error: e })
          s.reject(e)
          return
        }
        this.emit('error', errorFromFrame(f))
        return
      }
      case 'receipt': this.emit('receipt', f); return
      case 'typing': this.emit('typing', f); return
      case 'presence': this.emit('presence', f)
    }
  }

  private async sync (): Promise<void> {
    const data = await this.request<T.SyncResult>('sync', { after: this.sequencer.state(), limit: this.o.syncLimit })
    for (const m of data.messages) this.sequencer.offer(m)
  }

  private async fetchAfter (conv: string, after: number): Promise<MessageFrame[]> {
    const page = await this.request<T.HistoryPage>('history', { conv, after, limit: 200 })
    return page.messages
  }

  // -- sending --------------------------------------------------------------

  private async publish (frame: object): Promise<void> {
    const client = this.mqtt
    if (client === null || !client.connected) throw new ConnectionLostError('not connected')
    const payload = await encodeFrame(frame, this.o.compressThreshold)
    await client.publishAsync(topics.out(this.o.username), Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength), { qos: 1 })
  }

  private async flushOutbox (): Promise<void> {
    for (const entry of await this.o.outbox.load()) {
      if (!this.sends.has(entry.cid)) {
        // Left by an earlier run of the app: track it again.
        this.sends.set(entry.cid, { entry, resolve: () => {}, reject: () => {} })
      }
      try {
        await this.publish({ t: 'msg', cid: entry.cid, ...entry.target, body: entry.body })
      } catch {
        return // disconnected again: the next connect resends
      }
    }
  }

  /**
   * Send a chat message to a user (`{to}`) or a conversation (`{conv}`).
   * Resolves with the server's acknowledgement (stored, with its seq); it is
   * kept in the outbox and resent across reconnects until then. Rejects with
   * a ServerError when the server refuses it (not a member, bad body...).
   */
  async send (target: { to: string } | { conv: string }, body: unknown, opts: { cid?: string } = {}): Promise<AckFrame> {
    if (this._state === 'closed') throw new ClosedError()
    const entry: OutboxEntry = { cid: opts.cid ?? newId('m'), target, body, createdAt: Date.now() }
    await this.o.outbox.put(entry)
    const done = new Promise<AckFrame>((resolve, reject) => { this.sends.set(entry.cid, { entry, resolve, reject }) })
    this.emit('status', { cid: entry.cid, status: 'pending' })
    this.publish({ t: 'msg', cid: entry.cid, ...target, body }).catch(() => { /* resent on reconnect */ })
    return await done
  }

  /** Messages still waiting for the server's acknowledgement. */
  async pending (): Promise<OutboxEntry[]> { return await this.o.outbox.load() }

  /** A request to the message service (see docs/protocol.md); rejects with ServerError, TimeoutError or ConnectionLostError. */
  async request<R = unknown> (op: string, params: Record<string, unknown> = {}): Promise<R> {
    if (this._state === 'closed') throw new ClosedError()
    const id = newId('r')
    const result = new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.requests.delete(id)
        reject(new TimeoutError(op, this.o.requestTimeout))
      }, this.o.requestTimeout)
      this.requests.set(id, { resolve: resolve as (v: unknown) => void, reject, timer })
    })
    try {
      await this.publish({ t: 'req', id, op, ...params })
    } catch (err) {
      const w = this.requests.get(id)
      if (w !== undefined) { clearTimeout(w.timer); this.requests.delete(id) }
      throw err
    }
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

  /** Tell the other members that this user is typing (ephemeral; at most one a second counts). */
  async typing (conv: string): Promise<void> {
    await this.publish({ t: 'typing', conv }).catch(() => {})
  }

  /** Close the connection. Pending sends stay in the outbox for the next run. Idempotent. */
  async close (): Promise<void> {
    if (this._state === 'closed') return
    this.setState('closed')
    if (this.retryTimer !== null) clearTimeout(this.retryTimer)
    const closed = new ClosedError()
    for (const [, s] of this.sends) s.reject(closed)
    this.sends.clear()
    for (const [, w] of this.requests) { clearTimeout(w.timer); w.reject(closed) }
    this.requests.clear()
    this.firstConnect?.reject(closed)
    this.firstConnect = null
    const client = this.mqtt
    this.mqtt = null
    if (client !== null) await client.endAsync()
  }
}
