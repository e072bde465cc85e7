/**
 * The Warbler client: one MQTT connection (TCP in Node, WebSocket in
 * browsers), an explicit connection state machine, reconnects with backoff
 * and full jitter, an outbox that keeps sends until the server acknowledges
 * them, a sync on every (re)connect, and in-order, de-duplicated delivery.
 *
 * This module is the client's API: sending, requests, events. The connection
 * state machine (links, sync, reconnects) is connection.ts. Everything a link
 * started (requests, publishes waiting for PUBACK) ends when the link closes;
 * nothing waits on a dead link.
 */
import { backoffDelay } from './backoff.js'
import { encodeFrame } from './codec.js'
import { Emitter, rethrowLater } from './emitter.js'
import type { ClientEvents, State } from './events.js'
import {
  ClosedError, ConnectionLostError, InvalidArgumentError, ListenerError, ServerError, type WarblerError, asWarblerError
} from './errors.js'
import { type Link, noop, publishBytes } from './link.js'
import { Connection } from './connection.js'
import { type ClientOptions, type ResolvedOptions, resolveOptions } from './client-options.js'
import type { OutboxEntry } from './outbox.js'
import type { AckFrame, MessageFrame } from './protocol.js'
import { CLIENT_MESSAGE_ID_PATTERN, topics } from './protocol.js'
import type { Receivers } from './receive.js'
import { Requests } from './pending-requests.js'
import { SendQueue } from './send-queue.js'
import { Sequencer } from './sequencer.js'
import type * as T from './protocol.js'

export type { ClientEvents, MessageStatus, State } from './events.js'

/** How many times a request refused as rate-limited or unavailable is sent again. */
const REQUEST_RETRIES = 4

let counter = 0
/** A client message or request id: time, a counter and randomness (unique across restarts). */
export function newId (prefix: string): string {
  return `${prefix}${Date.now().toString(36)}${(++counter).toString(36)}${Math.random().toString(36).slice(2, 8)}`
}

function checkTarget (target: unknown): void {
  const t = target as { to?: unknown, conv?: unknown } | null
  const ok = typeof t === 'object' && t !== null && ((typeof t.to === 'string' && t.to !== '' && t.conv === undefined) ||
    (typeof t.conv === 'string' && t.conv !== '' && t.to === undefined))
  if (!ok) throw new InvalidArgumentError('target must be {to: user} or {conv: conversation id}')
}

export class WarblerClient extends Emitter<ClientEvents> {
  private _state: State = 'idle'
  private lastCreatedAt = 0
  private readonly queue: SendQueue
  private readonly requests: Requests
  private readonly receivers: Receivers
  private readonly sequencer: Sequencer
  private readonly conn: Connection
  /** Messages for the app before it listened to 'message'. */
  private unheard: MessageFrame[] = []
  private heard = false
  private connecting: Promise<this> | null = null
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
    this.sequencer = new Sequencer((m) => { this.hand(m) }, (conv, after) => this.fetchAfter(conv, after), this.o.since)
    this.requests = new Requests(this.o.requestTimeout)
    this.queue = new SendQueue({
      outbox: this.o.outbox,
      requestTimeout: this.o.requestTimeout,
      link: () => this.link,
      closed: () => this.isClosed(),
      handOff: (link, frame, id, qos) => this.handOff(link, frame, id, qos),
      status: (st) => { this.emit('status', st) },
      error: (e) => { this.emit('error', e) }
    })
    this.receivers = {
      message: (link, m) => { this.conn.live(link, m) },
      sends: this.queue,
      requests: this.requests,
      emit: (event, ...args) => { this.emit(event, ...args) }
    }
    this.conn = new Connection({
      o: this.o,
      clientId: this.clientId,
      sequencer: this.sequencer,
      queue: this.queue,
      requests: this.requests,
      receivers: this.receivers,
      isClosed: () => this.isClosed(),
      setState: (newState, error) => { this.setState(newState, error) },
      error: (err) => { this.emit('error', err) },
      requestOn: async <R>(link: Link, op: string, params: Record<string, unknown>) => await this.requestOn<R>(link, op, params)
    })
  }

  /** The current link, if any. */
  private get link (): Link | null { return this.conn.link }

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
      this.conn.awaitFirst(() => { resolve(this) }, reject)
    })
    this.setState('connecting')
    this.conn.dial()
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

  // -- receiving ------------------------------------------------------------

  /** A page of a conversation after a seq, to fill a gap the sequencer found. */
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
    return { acked: publishBytes(link, topics.out(this.o.username), bytes, id, qos) }
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
    const done = this.queue.add(entry)
    this.emit('status', { cid: entry.cid, status: 'pending' })
    void this.queue.pump()
    return await done
  }

  /** Messages still waiting for the server's acknowledgement. */
  async pending (): Promise<OutboxEntry[]> { return await this.o.outbox.load() }

  /**
   * A request to the message service (see docs/protocol.md); rejects with
   * ServerError, TimeoutError or ConnectionLostError (not connected now). A
   * request refused as `rate_limited` or `unavailable` was not carried out:
   * it is sent again after a backoff, up to REQUEST_RETRIES times.
   */
  async request<R = unknown> (op: string, params: Record<string, unknown> = {}): Promise<R> {
    for (let attempt = 0; ; attempt++) {
      if (this._state === 'closed') throw new ClosedError()
      const link = this.link
      if (link === null || !link.subscribed) throw new ConnectionLostError('not connected')
      try {
        return await this.requestOn<R>(link, op, params)
      } catch (err) {
        if (!(err instanceof ServerError) || (err.code !== 'rate_limited' && err.code !== 'unavailable') || attempt >= REQUEST_RETRIES) throw err
        await new Promise((resolve) => setTimeout(resolve, backoffDelay(attempt, { minDelay: 250, maxDelay: 4000 })))
      }
    }
  }

  private async requestOn<R> (link: Link, op: string, params: Record<string, unknown>): Promise<R> {
    const id = newId('r')
    const result = this.requests.wait<R>(id, op)
    this.publishOn(link, { t: 'req', id, op, ...params }, id).catch((err: unknown) => {
      this.requests.reject(id, asWarblerError(err))
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
    await this.conn.close(new ClosedError())
  }
}
