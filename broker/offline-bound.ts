/**
 * The per-session bound on queued QoS 1/2 messages (`offlineQueue`). aedes
 * queues a message for every persistent subscriber, online or not, before it
 * routes it, and clears it on PUBACK (PUBCOMP for QoS 2); so the count is
 * "queued and not yet acknowledged". Past the bound a message is not queued
 * and `offline_queue_full` is counted.
 *
 * A message refused that way still reaches a session that is connected and
 * has its queue sent, live, without a copy in the store. (One that reaches a
 * session while it reconnects is dropped by delivery.ts: sent after the queue,
 * it would come after messages queued later, once the count went down.) aedes does not know it was refused: it asks the store to
 * record the packet id it sends it with (`outgoingUpdate`) and, on PUBACK, to
 * clear that id. Handed to the store, both went wrong:
 * - the in-memory store finds no such message and throws "no such packet",
 *   and aedes closes the connection. A subscriber that fell behind while it
 *   reconnected under a steady flow was cut off this way, and while it was
 *   gone its queue filled and the rest was refused (measured: about 1,200 of
 *   3,000 messages never arrived; test/broker/resume-order);
 * - the Redis store writes the message under its shared key and, on PUBACK,
 *   counts down the number of sessions still holding it: with other sessions
 *   holding it, their count reaches zero early and their copy is deleted.
 * So the bound remembers which sessions refused each message, delivery.ts asks
 * (`refused`) and tells it when it hands such a packet to one of them, and
 * the packet id it goes out with is kept out of the store: recorded and
 * cleared here. Nothing is kept for a session that is not connected here.
 * Across processes (Redis, `--workers`) the mark does not travel with the
 * message: a session connected to another process than the publisher's
 * that gets a refused message live is handed to its store as before.
 *
 * The count is kept per process. With Redis, other processes (workers,
 * nodes) queue and clear for the same session too, so the count here can
 * run high (clears elsewhere) or low (queues elsewhere). Before refusing, the
 * count is read again from the store (`queueLength`), at most once per
 * RESYNC_MS for a session; so a queue may briefly hold more than the bound,
 * by what other processes queued since, but a session is never refused for
 * messages long since acknowledged elsewhere.
 */
import type { Stats } from './stats.js'

/** The least time between two reads of one session's real queue length. */
const RESYNC_MS = 250
/** Refused messages handed to one session and not yet sent, at most. */
const PENDING_MAX = 10_000
/** How long a refusal is remembered for the routing of its message (see RefusedMessages). */
const MARK_TTL_MS = 10_000

/** The part of the aedes persistence interface the bound wraps. */
export interface OutgoingPersistence {
  outgoingEnqueueCombi: (subs: Array<{ clientId: string }>, packet: unknown) => Promise<void>
  outgoingUpdate: (client: { id: string }, packet: unknown) => Promise<unknown>
  outgoingClearMessageId: (client: { id: string }, packet: unknown) => Promise<unknown>
  cleanSubscriptions: (client: { id: string }, ...rest: unknown[]) => Promise<unknown>
}

interface RoutedPacket {
  cmd?: string
  brokerId?: string
  brokerCounter?: number
  messageId?: number
}

export interface OfflineBoundOptions {
  limit: number
  stats: Stats
  /** The session's real queue length in a store shared with other processes (Redis). */
  queueLength?: (clientId: string) => Promise<number>
}

/** What delivery.ts asks and tells the bound. */
export interface OfflineBound {
  /** Whether this QoS 1/2 packet, as routed, was refused for this session; `sendNow`: it is then sent live at once. */
  refused: (packet: object, clientId: string, sendNow: boolean) => boolean
}

export function boundOfflineQueues (p: OutgoingPersistence, opts: OfflineBoundOptions): OfflineBound {
  const { limit, stats, queueLength } = opts
  const queued = new Map<string, number>()
  const synced = new Map<string, number>()
  const refused = new RefusedMessages()
  const enqueue = p.outgoingEnqueueCombi.bind(p)
  const update = p.outgoingUpdate.bind(p)
  const clear = p.outgoingClearMessageId.bind(p)
  const clean = p.cleanSubscriptions.bind(p)

  const resync = resyncer(queued, synced, queueLength)

  /** Decides, then hands what is kept to the store, synchronously up to the store's call. */
  const enqueueNow = (subs: Array<{ clientId: string }>, packet: unknown): Promise<void> => {
    const keep: Array<{ clientId: string }> = []
    for (const s of subs) {
      const n = queued.get(s.clientId) ?? 0
      if (n >= limit) {
        stats.refuse('offline_queue_full')
        refused.mark(packet as RoutedPacket, s.clientId)
        continue
      }
      queued.set(s.clientId, n + 1)
      keep.push(s)
    }
    return keep.length > 0 ? enqueue(keep.length === subs.length ? subs : keep, packet) : Promise.resolve()
  }
  // aedes acknowledges a QoS 1 publish before it routes it and handles the
  // next publish of the same client at once, so publishes are queued
  // concurrently and routed in the order their queueing ends. Two things
  // broke the order of one publisher's messages in a session's queue and
  // on the way out (measured with Redis past the bound: 9 to 16 of 3,000):
  // - a call waiting for its count to be read again (resync) let a later
  //   call decide and queue first. While any call waits, later ones wait
  //   their turn to decide; otherwise the decision is taken at once;
  // - a refused message, which waits for nothing, ended before the queued
  //   ones before it. Each call ends in the order it was made; the store's
  //   work is not serialized, only its ends.
  let waiting = 0
  let turns: Promise<unknown> = Promise.resolve()
  let tail: Promise<unknown> = Promise.resolve()
  p.outgoingEnqueueCombi = (subs, packet) => {
    const full = subs.filter((s) => (queued.get(s.clientId) ?? 0) >= limit).map((s) => s.clientId)
    let work: Promise<void>
    if (waiting === 0 && (queueLength === undefined || full.length === 0)) {
      work = enqueueNow(subs, packet)
    } else {
      waiting++
      const started = turns.then(async () => {
        await resync(full)
        return { work: enqueueNow(subs, packet) }
      }).finally(() => { waiting-- })
      turns = started.catch(() => {})
      work = started.then((s) => s.work)
    }
    const ordered = endAfter(work, tail)
    tail = ordered.catch(() => {})
    return ordered
  }

  // The same for sends to one session: aedes writes each message once the
  // store has recorded its packet id, and a refused message, which the store
  // never sees, went out before the queued ones handed over before it.
  const sends = new Map<string, Promise<unknown>>()
  p.outgoingUpdate = (client, packet) => {
    const work = refused.sending(client.id, packet as RoutedPacket) ? Promise.resolve(undefined) : update(client, packet)
    const ordered = endAfter(work, sends.get(client.id))
    const tail = ordered.catch(() => {})
    sends.set(client.id, tail)
    void tail.then(() => { if (sends.get(client.id) === tail) sends.delete(client.id) })
    return ordered
  }

  p.outgoingClearMessageId = async (client, packet) => {
    const live = refused.acknowledged(client.id, packet as RoutedPacket)
    if (live !== undefined) return live
    const removed = await clear(client, packet)
    // Only what was in the queue counts down (an unknown id removes nothing).
    if (removed != null) {
      const n = queued.get(client.id)
      if (n !== undefined) {
        if (n <= 1) queued.delete(client.id)
        else queued.set(client.id, n - 1)
      }
    }
    return removed
  }

  p.cleanSubscriptions = async (client, ...rest) => {
    queued.delete(client.id)
    synced.delete(client.id)
    refused.forget(client.id)
    return await clean(client, ...rest)
  }
  return { refused: (packet, clientId, sendNow) => refused.delivering(packet, clientId, sendNow) }
}

/** Messages refused for a session, and the packet ids they went out with, kept away from the store. */
class RefusedMessages {
  /**
   * The sessions each message (by routing key) was refused for, in two
   * generations: a mark is needed only while the message is routed, which is
   * milliseconds to seconds, so marks older than one to two MARK_TTL_MS go.
   * (aedes copies the packet for each subscription, so the mark cannot ride
   * on the packet itself.)
   */
  private marks = new Map<string, Set<string>>()
  private older = new Map<string, Set<string>>()
  private rotated = Date.now()
  /** Per session: routing keys of refused messages being handed to it, not yet sent. */
  private readonly keys = new Map<string, Set<string>>()
  /** Per session: packet ids sent for refused messages, not yet acknowledged. */
  private readonly sent = new Map<string, Map<number, RoutedPacket>>()

  mark (packet: RoutedPacket, clientId: string): void {
    const key = routingKey(packet)
    if (key === null) return
    const now = Date.now()
    if (now - this.rotated > MARK_TTL_MS) {
      this.older = this.marks
      this.marks = new Map()
      this.rotated = now
    }
    let ids = this.marks.get(key)
    if (ids === undefined) this.marks.set(key, ids = new Set<string>())
    ids.add(clientId)
  }

  /** Whether the message was refused for the session; if so and `sendNow`, its send is expected. */
  delivering (packet: RoutedPacket, clientId: string, sendNow: boolean): boolean {
    // Nothing refused of late (the usual case): no key built per delivery.
    if (this.marks.size === 0 && this.older.size === 0) return false
    if (Date.now() - this.rotated > 2 * MARK_TTL_MS) {
      // Both generations are past their time: forget them.
      this.marks = new Map()
      this.older = new Map()
      return false
    }
    const key = routingKey(packet)
    if (key === null) return false
    if (this.marks.get(key)?.has(clientId) !== true && this.older.get(key)?.has(clientId) !== true) return false
    if (!sendNow) return true
    let keys = this.keys.get(clientId)
    if (keys === undefined) this.keys.set(clientId, keys = new Set<string>())
    keys.add(key)
    // Handed over and never sent (the connection ended first): forget the
    // oldest rather than grow.
    if (keys.size > PENDING_MAX) keys.delete(keys.values().next().value as string)
    return true
  }

  /** Whether this send (aedes' outgoingUpdate) is of a refused message: then the store must not see it. */
  sending (clientId: string, packet: RoutedPacket): boolean {
    const sent = this.sent.get(clientId)
    const id = packet.messageId
    // QoS 2's second step, for a message the store never had.
    if (packet.cmd === 'pubrel') return id !== undefined && sent?.has(id) === true
    const key = routingKey(packet)
    if (key !== null && id !== undefined && this.keys.get(clientId)?.delete(key) === true) {
      let ids = sent
      if (ids === undefined) this.sent.set(clientId, ids = new Map<number, RoutedPacket>())
      ids.set(id, packet)
      return true
    }
    // A packet id now given to a stored message is no longer a refused one's
    // (the connection that sent that one may have ended before its PUBACK).
    if (id !== undefined) sent?.delete(id)
    return false
  }

  /** The refused message this acknowledgement is for, if it is one. */
  acknowledged (clientId: string, packet: RoutedPacket): RoutedPacket | undefined {
    const sent = this.sent.get(clientId)
    const id = packet.messageId
    const live = id === undefined ? undefined : sent?.get(id)
    if (live === undefined || id === undefined || sent === undefined) return undefined
    sent.delete(id)
    if (sent.size === 0) this.sent.delete(clientId)
    return live
  }

  forget (clientId: string): void {
    this.keys.delete(clientId)
    this.sent.delete(clientId)
  }
}

/** Reads sessions' real queue lengths into `queued`, each at most once per RESYNC_MS. */
function resyncer (queued: Map<string, number>, synced: Map<string, number>, queueLength?: (clientId: string) => Promise<number>): (ids: string[]) => Promise<void> {
  return async (ids) => {
    if (queueLength === undefined) return
    const now = Date.now()
    const due = ids.filter((id) => now - (synced.get(id) ?? 0) >= RESYNC_MS)
    await Promise.all(due.map(async (id) => {
      synced.set(id, now)
      const n = await queueLength(id)
      if (n > 0) queued.set(id, n)
      else queued.delete(id)
    }))
  }
}

/** `work`'s outcome, once `before` has settled too: calls end in the order they were made. */
async function endAfter<T> (work: Promise<T>, before: Promise<unknown> | undefined): Promise<T> {
  try {
    return await work
  } finally {
    await before
  }
}

/** A message's identity across the routing: the broker that routed it and its counter there. */
function routingKey (p: RoutedPacket): string | null {
  return p.brokerId === undefined || p.brokerId === '' || p.brokerCounter === undefined ? null : `${p.brokerId}\u0000${p.brokerCounter}`
}
