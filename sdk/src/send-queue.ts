/**
 * The send queue: every send the client knows of until the server answers
 * it, whether made by send() in this run or left in the outbox by an earlier
 * one. On a ready link the outbox is sent, oldest first, each once per link,
 * a window at a time; a send without an answer for requestTimeout is sent
 * again (same cid: stored once), and retryable refusals pause sending with a
 * backoff.
 *
 * Sends are numbered (docs/protocol.md, "Numbered sends"): `n` = 1, 2, 3, ...
 * in outbox order within an epoch picked per queue, given at a send's first
 * publish and kept for its resends. The service stores them in that order;
 * one that comes before an earlier one was stored (lost on the way: a
 * service killed after the broker took it) is refused with the number
 * expected, and every unanswered send from there is sent again, in order
 * (go-back-N).
 */
import { backoffDelay } from './backoff.js'
import type { MessageStatus } from './events.js'
import { ConnectionLostError, isRetryable, ServerError, WarblerError } from './errors.js'
import { type Link, noop } from './link.js'
import type { OutboxEntry, OutboxStore } from './outbox.js'
import type { AckFrame } from './protocol.js'

interface PendingSend {
  entry: OutboxEntry
  resolve: (a: AckFrame) => void
  reject: (e: WarblerError) => void
  /** The link it was last published on (0: not on the current one). */
  sentOn: number
  sentAt: number
  settled: boolean
  /** Its number in `epoch` (0: not published yet in the current epoch). */
  n: number
  /** The go-back it was last published in (see `outOfOrder`). */
  round: number
}

/** What the queue needs of the client. */
export interface SendQueueHost {
  readonly outbox: OutboxStore
  readonly requestTimeout: number
  /** The current link, if any. */
  link: () => Link | null
  /** The client is closed for good. */
  closed: () => boolean
  /** Hand a frame to a link's MQTT client (see WarblerClient's handOff). */
  handOff: (link: Link, frame: object, id: string, qos: 1) => Promise<{ acked: Promise<void> }>
  status: (s: MessageStatus) => void
  error: (e: WarblerError) => void
}

/** Unacknowledged sends published at once before waiting for their PUBACKs. */
const WINDOW = 32

/** A new epoch id: random, so that no two queues (clients, runs of an app) share one. */
function newEpoch (): string {
  const bytes = new Uint8Array(12)
  globalThis.crypto.getRandomValues(bytes)
  let s = 'e'
  for (const b of bytes) s += b.toString(16).padStart(2, '0')
  return s
}

export class SendQueue {
  private readonly sends = new Map<string, PendingSend>()
  private resendTimer: ReturnType<typeof setTimeout> | null = null
  private pumpTimer: ReturnType<typeof setTimeout> | null = null
  private pumping = false
  private pumpAgain = false
  /** After retryable refusals: no sends before this time; how many in a row. */
  private pauseUntil = 0
  private throttled = 0
  /** When the last backoff step was taken: refusals of sends published before it belong to it. */
  private throttledAt = 0
  /** Numbering: the epoch, the next n to give, how many times sending went back. */
  private epoch = newEpoch()
  private nextN = 1
  private round = 0

  constructor (private readonly host: SendQueueHost) {}

  /** A send that is in the outbox: resolves with its ack, rejects when refused or closed. */
  add (entry: OutboxEntry): Promise<AckFrame> {
    return new Promise<AckFrame>((resolve, reject) => {
      const s = this.sends.get(entry.cid)
      if (s !== undefined && !s.settled) {
        // The same cid again (a retry by the app), or already picked up from the outbox: answer both.
        const [res, rej] = [s.resolve, s.reject]
        s.resolve = (a) => { res(a); resolve(a) }
        s.reject = (e) => { rej(e); reject(e) }
      } else {
        this.sends.set(entry.cid, { entry, resolve, reject, sentOn: 0, sentAt: 0, settled: false, n: 0, round: 0 })
      }
    })
  }

  /**
   * Send the outbox on the ready link, oldest first, each once per link, a
   * window at a time. New sends go through here too, after the older ones.
   */
  async pump (): Promise<void> {
    if (this.pumping) { this.pumpAgain = true; return }
    this.pumping = true
    try {
      do {
        this.pumpAgain = false
        const link = this.host.link()
        if (link === null || !link.ready) return
        let batch: Array<Promise<void>> = []
        const round = this.round
        for (const entry of await this.host.outbox.load()) {
          if (this.host.link() !== link) return
          // A go-back (outOfOrder): start again from the oldest, so numbers keep outbox order.
          if (this.round !== round) { this.pumpAgain = true; break }
          let s = this.sends.get(entry.cid)
          if (s === undefined) {
            // Left by an earlier run of the app: track it again.
            s = { entry, resolve: noop, reject: noop, sentOn: 0, sentAt: 0, settled: false, n: 0, round: 0 }
            this.sends.set(entry.cid, s)
          }
          if (s.settled || s.sentOn === link.gen) continue
          const wait = this.pauseUntil - Date.now()
          if (wait > 0) { this.pumpLater(wait); break }
          s.sentOn = link.gen
          s.sentAt = Date.now()
          if (s.n === 0) s.n = this.nextN++
          s.round = this.round
          // Handed over one after the other, in outbox order; their PUBACKs are awaited a window at a time.
          const { acked } = await this.host.handOff(link, { t: 'msg', cid: entry.cid, ...entry.target, body: entry.body, epoch: this.epoch, n: s.n }, entry.cid, 1)
          // An MQTT 5 PUBACK that refuses it answers it at once, as the notice would.
          const answered = acked.catch(async (err: unknown) => {
            if (!(err instanceof ServerError)) throw err
            await this.refused(link, entry.cid, err)
          })
          // Handled now as well as by Promise.all below: a link lost while the next send is
          // handed over (or a return before the window is awaited) would otherwise leave this
          // rejection unhandled, and Node ends the app's process for it.
          answered.catch(noop)
          batch.push(answered)
          if (batch.length >= WINDOW) { await Promise.all(batch); batch = [] }
        }
        await Promise.all(batch)
      } while (this.pumpAgain)
    } catch (err) {
      // The link dropped: the next one sends again. Anything else (an outbox that cannot be read) is told.
      if (!(err instanceof ConnectionLostError)) this.host.error(new WarblerError('internal', `outbox: ${String(err)}`, { cause: err }))
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
   * their first ack). One step of the backoff per round: a refusal of a
   * send published before the last step is part of that step. So a publish
   * refused twice (an MQTT 5 server answers in its PUBACK and by the error
   * notice, in either order) counts once, the first answer, and so does a
   * window of sends refused one by one (each in its PUBACK).
   */
  private throttle (link: Link, sentAt: number): void {
    if (sentAt <= this.throttledAt) return
    this.throttledAt = Date.now()
    const delay = backoffDelay(this.throttled++, { minDelay: 250, maxDelay: 10_000 })
    this.pauseUntil = Math.max(this.pauseUntil, Date.now() + delay)
    for (const s of this.sends.values()) if (!s.settled && s.sentOn === link.gen) s.sentOn = 0
    this.pumpLater(this.pauseUntil - Date.now())
  }

  /**
   * The service refused send `cid` as out of order: it expects `next` of
   * this epoch. Every unanswered send from `next` on goes again, in order.
   * When none of them is numbered `next` (the service forgot the epoch, or
   * that send was answered meanwhile), a new epoch numbers them all again
   * from 1. A refusal of a send published before the last go-back changes
   * nothing: that go-back sent it again already. False if `cid` is not a send.
   */
  outOfOrder (cid: string, next: unknown): boolean {
    const s = this.sends.get(cid)
    if (s === undefined) return false
    if (s.settled || s.round < this.round) return true
    this.round++
    const unanswered = [...this.sends.values()].filter((x) => !x.settled)
    const from = typeof next === 'number' && unanswered.some((x) => x.n === next) ? next : null
    if (from === null) {
      this.epoch = newEpoch()
      this.nextN = 1
    }
    for (const x of unanswered) {
      if (from === null) x.n = 0
      if (x.n === 0 || x.n >= (from ?? 0)) x.sentOn = 0
    }
    void this.pump()
    return true
  }

  /** While a link is ready: a send without an answer for requestTimeout is sent again (same cid: stored once). */
  armResend (link: Link): void {
    this.stopResend()
    const period = Math.max(100, Math.floor(this.host.requestTimeout / 2))
    const tick = (): void => {
      this.resendTimer = null
      if (this.host.link() !== link || this.host.closed()) return
      const now = Date.now()
      let due = false
      for (const s of this.sends.values()) {
        if (!s.settled && s.sentOn === link.gen && now - s.sentAt >= this.host.requestTimeout) { s.sentOn = 0; due = true }
      }
      if (due) void this.pump()
      this.resendTimer = setTimeout(tick, period)
    }
    this.resendTimer = setTimeout(tick, period)
  }

  /** The link is gone: nothing to resend on it. */
  stopResend (): void {
    if (this.resendTimer !== null) { clearTimeout(this.resendTimer); this.resendTimer = null }
  }

  /** The server acknowledged a send (stored, with its seq). */
  async acked (f: AckFrame): Promise<void> {
    const s = this.sends.get(f.cid)
    if (s === undefined) {
      // A repeated ack, or one for an earlier run's message: stored, so not pending.
      await this.host.outbox.remove(f.cid)
      return
    }
    if (s.settled) return
    s.settled = true
    this.throttled = 0
    await this.settle(f.cid)
    this.host.status({ cid: f.cid, status: 'sent', ack: f })
    s.resolve(f)
  }

  /**
   * The server refused send `cid` (published on `link`): failed, or sent
   * again later if the refusal is retryable. False if `cid` is not a send.
   */
  async refused (link: Link, cid: string, e: ServerError): Promise<boolean> {
    const s = this.sends.get(cid)
    if (s === undefined) return false
    if (s.settled) return true
    if (isRetryable(e.code)) { this.throttle(link, s.sentAt); return true }
    s.settled = true
    await this.settle(cid)
    this.host.status({ cid, status: 'failed', error: e })
    s.reject(e)
    return true
  }

  /** A send is done (acknowledged or refused): out of the outbox. */
  private async settle (cid: string): Promise<void> {
    try {
      await this.host.outbox.remove(cid)
    } catch (err) {
      this.host.error(new WarblerError('internal', `outbox: cannot remove ${cid}: ${String(err)}`, { cause: err }))
    } finally {
      this.sends.delete(cid)
    }
  }

  /** Closed for good: timers off, every send still waiting rejected with `reason` (it stays in the outbox). */
  close (reason: WarblerError): void {
    for (const t of [this.resendTimer, this.pumpTimer]) if (t !== null) clearTimeout(t)
    this.resendTimer = this.pumpTimer = null
    for (const s of this.sends.values()) if (!s.settled) s.reject(reason)
    this.sends.clear()
  }
}
