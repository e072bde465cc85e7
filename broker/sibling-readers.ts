/**
 * Which of the message service's delivery topics (a user's inbox and feed, a
 * device's topic and feed: docs/protocol.md) the clients of the other workers
 * of this node read, so that the service's worker publishes a frame only
 * where someone reads it and sends a copy on the local bus only to a worker
 * that has a reader for it (with `--workers N`, the service runs in one
 * worker and cannot see the others' subscriptions).
 *
 * Every worker counts its clients' subscriptions whose filters can match a
 * delivery topic. The service's worker announces itself (`serve`) to each
 * sibling whenever a connection between them comes up; a sibling answers
 * with its whole set (`sync`), then tells it of each filter's first
 * subscriber (`add`, acknowledged) and last (`del`). These control frames
 * travel on the bus' sockets in order with the publishes.
 *
 * Order: a subscription's callback (aedes then writes the SUBACK) waits for
 * the service's worker to acknowledge the `add`, so a message committed
 * after the SUBACK finds its new reader. The wait is bounded (ACK_WAIT_MS:
 * only a hung service worker does not answer, and it commits nothing
 * meanwhile); a service worker not connected releases it at once.
 *
 * Trust: the service's worker trusts what it knows of a sibling only from
 * that sibling's `sync` on the current connection until the connection
 * closes; while any sibling is not synced (at start, after a restart of
 * either), it reports the set incomplete and the service publishes to every
 * topic, as it does when it cannot tell.
 */
import { parseChatTopic, TOPIC_ROOT } from '@warbler/sdk/protocol'
import type { Logger } from '../shared/log.js'
import { topicMatches } from './acl.js'

/** Longest a SUBACK waits for the service's worker to take the news of its subscription. */
const ACK_WAIT_MS = 2000

/** The delivery topics, as filters: a subscription that overlaps none of them is not reported. */
const DELIVERY = [[TOPIC_ROOT, 'u', '+', 'inbox'], [TOPIC_ROOT, 'u', '+', 'feed'], [TOPIC_ROOT, 'd', '+'], [TOPIC_ROOT, 'd', '+', 'feed']]

/** Whether some topic matches both a filter and a pattern of single-level wildcards. */
function overlaps (filter: readonly string[], pattern: readonly string[]): boolean {
  for (let i = 0; i < filter.length; i++) {
    const f = filter[i] as string
    if (f === '#') return true
    if (i >= pattern.length) return false
    const p = pattern[i] as string
    if (f !== '+' && p !== '+' && f !== p) return false
  }
  return filter.length === pattern.length
}

/** Whether a subscription filter can match a topic the message service delivers on. */
function spansDelivery (filter: string): boolean {
  if (filter.startsWith('$')) return false
  const levels = filter.split('/')
  return DELIVERY.some((p) => overlaps(levels, p))
}

/** Whether a topic is one the message service delivers on (a cheap test first: most topics are not under the root). */
export function isDeliveryTopic (topic: string): boolean {
  if (!topic.startsWith(TOPIC_ROOT + '/')) return false
  const kind = parseChatTopic(topic)?.kind
  return kind === 'inbox' || kind === 'device'
}

/** What the service's worker knows of one sibling's readers. */
interface Known {
  synced: boolean
  exact: Set<string>
  /** Filters with wildcards (rare: the ACL lets a user span only its own topics), split in levels. */
  wild: Map<string, string[]>
}

/** One control message of this module, as it travels (bus-frames.ts control frames). */
type Control =
  | { t: 'serve' }
  | { t: 'sync', filters: string[] }
  | { t: 'add', seq: number, f: string }
  | { t: 'del', f: string }
  | { t: 'ack', seq: number }

/** A local subscription filter's count, and when the service's worker knew of it. */
interface Local { n: number, known: Promise<void> }

export interface ReaderCounts {
  /** SUBACKs released after ACK_WAIT_MS without the service worker's answer. */
  timeouts: number
}

export class SiblingReaders {
  readonly counts: ReaderCounts = { timeouts: 0 }
  private send: (to: number, message: Control) => boolean = () => false
  /** Reporting side: this worker's filters, and the siblings running the service (normally one). */
  private readonly local = new Map<string, Local>()
  private readonly listeners = new Set<number>()
  private readonly waiting = new Map<number, { to: number, done: () => void }>()
  private seq = 0
  /** Service side: what each sibling told. */
  private readonly known = new Map<number, Known>()

  /** `serve`: this worker runs the message service and keeps the siblings' sets. */
  constructor (private readonly opts: { index: number, count: number, serve: boolean, log: Logger }) {
    for (let i = 0; i < opts.count; i++) if (i !== opts.index) this.known.set(i, { synced: false, exact: new Set(), wild: new Map() })
  }

  /** The bus is up: control messages go out from now on (those the start missed are sent now). */
  attach (send: (to: number, message: object) => boolean): void {
    this.send = send
    for (const i of this.known.keys()) {
      if (this.opts.serve) this.send(i, { t: 'serve' })
      if (this.listeners.has(i)) this.sync(i)
    }
  }

  /** The local bus' events (local-bus.ts), for its options. */
  readonly events = {
    control: (from: number, m: Record<string, unknown>): void => { this.control(from, m as Control) },
    up: (i: number): void => {
      if (this.opts.serve) this.send(i, { t: 'serve' })
      if (this.listeners.has(i)) this.sync(i)
    },
    down: (i: number): void => {
      for (const [seq, w] of this.waiting) if (w.to === i) { this.waiting.delete(seq); w.done() }
    },
    joined: (i: number): void => { if (this.opts.serve) this.send(i, { t: 'serve' }) },
    left: (i: number): void => { this.known.set(i, { synced: false, exact: new Set(), wild: new Map() }) }
  }

  /**
   * A local subscription to `filter`: `cb` (when given) runs once the
   * service's worker knows of it. Returns the callback to hand on.
   */
  subscribed (filter: string, cb: (() => void) | undefined): (() => void) | undefined {
    if (!spansDelivery(filter)) return cb
    let entry = this.local.get(filter)
    if (entry === undefined) {
      entry = { n: 0, known: this.announce(filter) }
      this.local.set(filter, entry)
    }
    entry.n++
    if (cb === undefined) return undefined
    const known = entry.known
    let ready = false
    let called = false
    void known.then(() => { ready = true; if (called) cb() })
    return () => { called = true; if (ready) cb() }
  }

  /** A local subscription to `filter` ended. */
  unsubscribed (filter: string): void {
    const entry = this.local.get(filter)
    if (entry === undefined || --entry.n > 0) return
    this.local.delete(filter)
    for (const to of this.listeners) this.send(to, { t: 'del', f: filter })
  }

  /** Whether every sibling's set is known (synced on its current connection). */
  complete (): boolean {
    for (const k of this.known.values()) if (!k.synced) return false
    return true
  }

  /** Whether a client of some sibling reads `topic` (as far as known: see complete()). */
  reads (topic: string): boolean {
    for (const i of this.known.keys()) if (this.readsAt(i, topic)) return true
    return false
  }

  /** Whether sibling `i` may have a reader for a delivery topic: true unless its set is known and has none. */
  wants (i: number, topic: string): boolean {
    const k = this.known.get(i)
    return k === undefined || !k.synced || this.readsAt(i, topic)
  }

  private readsAt (i: number, topic: string): boolean {
    const k = this.known.get(i)
    if (k === undefined) return false
    if (k.exact.has(topic)) return true
    if (k.wild.size === 0) return false
    const levels = topic.split('/')
    for (const f of k.wild.values()) if (topicMatches(f, levels)) return true
    return false
  }

  /** Tell every service worker of a new filter; resolves when all answered, or could not be told, or ACK_WAIT_MS passed. */
  private announce (filter: string): Promise<void> {
    const acks: Array<Promise<void>> = []
    for (const to of this.listeners) {
      const seq = ++this.seq
      if (!this.send(to, { t: 'add', seq, f: filter })) continue
      acks.push(new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          if (!this.waiting.delete(seq)) return
          this.counts.timeouts++
          this.opts.log.warn('the message service\'s worker did not confirm a subscription in time; its SUBACK goes out anyway', { to, ms: ACK_WAIT_MS })
          resolve()
        }, ACK_WAIT_MS)
        this.waiting.set(seq, { to, done: () => { clearTimeout(timer); resolve() } })
      }))
    }
    return acks.length === 0 ? Promise.resolve() : Promise.all(acks).then(() => {})
  }

  private sync (to: number): void {
    this.send(to, { t: 'sync', filters: [...this.local.keys()] })
  }

  private control (from: number, m: Control): void {
    const k = this.known.get(from)
    switch (m.t) {
      case 'serve':
        this.listeners.add(from)
        this.sync(from)
        break
      case 'ack': {
        const w = this.waiting.get(m.seq)
        this.waiting.delete(m.seq)
        w?.done()
        break
      }
      case 'sync':
        if (k === undefined || !Array.isArray(m.filters)) return
        k.exact.clear()
        k.wild.clear()
        for (const f of m.filters) this.learn(k, String(f))
        k.synced = true
        break
      case 'add':
        if (k !== undefined) this.learn(k, String(m.f))
        this.send(from, { t: 'ack', seq: m.seq })
        break
      case 'del':
        k?.exact.delete(m.f)
        k?.wild.delete(m.f)
        break
      default:
        this.opts.log.debug('an unknown control message on the local bus', { from })
    }
  }

  private learn (k: Known, filter: string): void {
    if (filter.includes('+') || filter.includes('#')) k.wild.set(filter, filter.split('/'))
    else k.exact.add(filter)
  }
}
