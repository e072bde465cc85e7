/**
 * The client's connection state machine: dial a link, subscribe, sync, then
 * ready; on a lost link, reconnect with backoff (refreshing the token when it
 * was refused or expires soon); on a first attempt that fails, report it.
 *
 * Each connection attempt is a "link". A link goes: CONNACK, subscribe (state
 * `connected`), sync (live messages wait meanwhile, so that what the sync
 * returns and what arrives live meet in the sequencer in the right order),
 * then ready: the outbox is sent, oldest first, and new sends follow it.
 */
import { backoffDelay } from './backoff.js'
import type { State } from './events.js'
import { AuthError, ConnectionLostError, ServerError, WarblerError, asWarblerError } from './errors.js'
import { type Link, noop, openLink, untilClosed } from './link.js'
import type { ResolvedOptions } from './client-options.js'
import type { MessageFrame } from './protocol.js'
import { ConnackCodes, topics } from './protocol.js'
import { receive, type Receivers } from './receive.js'
import type { Requests } from './pending-requests.js'
import type { SendQueue } from './send-queue.js'
import type { Sequencer } from './sequencer.js'
import { expiresSoon } from './token-expiry.js'
import type * as T from './protocol.js'

/** What the connection uses of its client. */
export interface ConnectionHost {
  readonly o: ResolvedOptions
  readonly clientId: string
  readonly sequencer: Sequencer
  readonly queue: SendQueue
  readonly requests: Requests
  readonly receivers: Receivers
  isClosed: () => boolean
  setState: (newState: State, error?: WarblerError) => void
  error: (err: WarblerError) => void
  requestOn: <R>(link: Link, op: string, params: Record<string, unknown>) => Promise<R>
}

export class Connection {
  /** The current link, if any. */
  link: Link | null = null
  private gen = 0
  private attempt = 0
  private retryTimer: ReturnType<typeof setTimeout> | null = null
  /** Live messages that arrive while a new link syncs. */
  private syncing: MessageFrame[] | null = null
  private password: string
  private firstConnect: { resolve: () => void, reject: (e: WarblerError) => void } | null = null
  private refreshedOnFirst = false
  /** A sync has been applied (`startAt: 'now'` acts on the first one only). */
  private synced = false

  constructor (private readonly c: ConnectionHost) {
    this.password = c.o.token ?? c.o.password ?? ''
  }

  /** Who to tell when the first link is ready, or when the first attempt fails. */
  awaitFirst (resolve: () => void, reject: (e: WarblerError) => void): void {
    this.firstConnect = { resolve, reject }
  }

  dial (): void {
    this.retryTimer = null
    if (this.c.isClosed()) return
    const { o } = this.c
    const link = openLink(++this.gen, {
      url: o.url,
      clientId: this.c.clientId,
      username: o.username,
      password: this.password,
      keepalive: o.keepalive,
      connectTimeout: o.connectTimeout,
      protocolVersion: o.protocolVersion
    }, {
      payload: async (link, payload) => { await receive(link, payload, this.c.receivers) },
      failed: (err) => { this.c.error(asWarblerError(err)) },
      connected: (link) => { void this.onConnected(link) },
      closed: (link) => { this.drop(link) }
    })
    this.link = link
    // Everything that arrives before the sync is done waits for it (a persistent
    // session's queued messages come right after CONNACK).
    this.syncing = []
  }

  /** A chat message that came on `link`: ordered, or kept until the link's sync is done. */
  live (link: Link, m: MessageFrame): void {
    // A message of a link that is gone is left to the next sync (it is in the archive).
    if (this.link !== link) return
    if (link.ready) this.c.sequencer.offer(m)
    else this.syncing?.push(m)
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
      const { o } = this.c
      const granted = await untilClosed(link, link.client.subscribeAsync([topics.feed(o.username), topics.deviceFeed(this.c.clientId)], { qos: 1 }))
      if (granted.some((g) => g.qos === 128)) throw new WarblerError('not_authorized', 'the server refused the feed or device feed subscription')
      if (this.link !== link) return
      link.subscribed = true
      this.c.setState('connected')
      await this.sync(link)
    } catch (err) {
      if (this.link !== link) return // the link dropped meanwhile: already handled
      // A server refusal is worth telling; a timeout on a silent link is just a lost link.
      if (err instanceof ServerError || (err instanceof WarblerError && err.code === 'not_authorized')) this.c.error(err)
      this.drop(link)
    }
  }

  /** Sync a subscribed link, then make it ready: live messages flow, the outbox is sent. */
  private async sync (link: Link): Promise<void> {
    const { o, sequencer, queue } = this.c
    // A device that starts from now takes the conversations it has no seq for as seen up to their
    // last seq, on its first sync: their messages in the reply are dropped, so with nothing known
    // it asks for as few as it may.
    const fromNow = o.startAt === 'now' && !this.synced
    const after = sequencer.state()
    const limit = fromNow && Object.keys(after).length === 0 ? 1 : o.syncLimit
    const data = await this.c.requestOn<T.SyncResult>(link, 'sync', { after, limit })
    if (this.link !== link) return
    if (fromNow) for (const c of data.conversations) sequencer.start(c.conv, c.lastSeq)
    this.synced = true
    // The sync's messages first, then the live ones that came meanwhile (duplicates collapse).
    for (const m of data.messages) sequencer.offer(m)
    const live = this.syncing ?? []
    this.syncing = null
    link.ready = true
    for (const m of live) sequencer.offer(m)
    // Conversations cut at the sync's limit (or with a gap) are fetched in pages.
    for (const c of data.conversations) sequencer.expect(c.conv, c.lastSeq)
    sequencer.retryGaps()
    this.attempt = 0
    queue.armResend(link)
    void queue.pump()
    if (this.firstConnect !== null) {
      this.firstConnect.resolve()
      this.firstConnect = null
    }
  }

  /** Why a link ended, as the error the app is told. */
  private lostError (link: Link): { error: WarblerError, refused: boolean } {
    const code = link.refused
    // CONNACK 3 (server busy) is retried like a lost link; the others are refused logins.
    const refused = code !== null && code !== 3
    const error: WarblerError = refused
      ? new AuthError(code, `login refused (CONNACK ${code}): ${ConnackCodes[code as keyof typeof ConnackCodes] ?? 'unknown reason'}`)
      : link.connacked
        ? new ConnectionLostError('connection lost')
        : new ConnectionLostError(code === 3 ? `${this.c.o.url}: server unavailable (CONNACK 3)` : `cannot connect to ${this.c.o.url}`)
    return { error, refused }
  }

  private onDisconnected (link: Link): void {
    this.syncing = null
    this.c.queue.stopResend()
    this.c.requests.rejectAll(() => new ConnectionLostError())
    if (this.c.isClosed()) return
    const { error, refused } = this.lostError(link)
    const refresh = refused && link.refused === 4 && this.c.o.refreshToken !== undefined
    if (this.firstConnect !== null && !this.c.o.waitOnFirstConnect && !link.connacked && !(refresh && !this.refreshedOnFirst)) {
      // The first attempt failed: report it rather than retry in the background.
      this.finish(error, error)
      return
    }
    if (refresh && this.firstConnect !== null) this.refreshedOnFirst = true
    if (refused) this.c.error(error)
    this.c.setState('reconnecting', error)
    this.scheduleRedial(refused)
  }

  private scheduleRedial (authFailed: boolean): void {
    // A refused login that no new token can fix is retried at the slowest pace
    // (it may be a passing block after failed logins from this address).
    const attempt = authFailed && this.c.o.refreshToken === undefined ? 64 : this.attempt++
    this.retryTimer = setTimeout(() => { void this.redial(authFailed) }, backoffDelay(attempt, this.c.o.reconnect))
  }

  private async redial (authFailed: boolean): Promise<void> {
    this.retryTimer = null
    const { o } = this.c
    try {
      if (o.refreshToken !== undefined && (authFailed || expiresSoon(this.password))) {
        const token = await o.refreshToken()
        if (typeof token !== 'string' || token === '') throw new Error('refreshToken() gave no token')
        this.password = token
      }
    } catch (err) {
      if (this.c.isClosed()) return
      this.c.error(new WarblerError('auth_failed', `token refresh failed: ${String(err)}`, { cause: err }))
      this.scheduleRedial(authFailed)
      return
    }
    if (this.c.isClosed() || this.link !== null || this.retryTimer !== null) return
    this.dial()
  }

  /** Close for good: the state goes `closed`, the link ends, and every waiting call rejects. */
  async close (reason: WarblerError): Promise<void> {
    this.finish(reason)
    const link = this.link
    this.link = null
    if (link !== null) {
      link.end()
      await link.client.endAsync(true).catch(noop)
    }
  }

  /** Closed for good: timers off, every waiting call rejected with `reason`. */
  private finish (reason: WarblerError, stateError?: WarblerError): void {
    this.c.setState('closed', stateError)
    if (this.retryTimer !== null) clearTimeout(this.retryTimer)
    this.retryTimer = null
    this.syncing = null
    this.c.queue.close(reason)
    this.c.requests.rejectAll(() => reason)
    this.firstConnect?.reject(reason)
    this.firstConnect = null
  }
}
