/**
 * Backpressure for publishers.
 *
 * Aedes acknowledges a QoS 1 PUBLISH before routing it, and a client's next
 * packets are parsed as soon as its current batch is routed; with many
 * publishers the routing queue (mqemitter) grows without bound while
 * delivered throughput falls. This gate bounds the number of publishes being
 * routed at once. It sits in authorizePublish, which aedes calls before the
 * PUBACK: when the gate is full the callback is held, so the publisher gets
 * no PUBACK and aedes reads nothing more from its socket (aedes parses one
 * socket read at a time and reads the next only when every packet of the
 * current one is done); TCP flow control then slows the publisher itself.
 * `published` (called once routing is complete) releases the slot and admits
 * the next waiter, oldest first.
 *
 * One client may hold at most `perOwner` slots (admitted or waiting for a
 * free one); its further publishes wait in its own backlog. So one client
 * that pipelines a whole socket read of small publishes cannot take every
 * slot, and a client whose slots never come back (a protocol violation that
 * aedes never routes) stalls only itself until it disconnects, when `drop`
 * releases everything it holds.
 *
 * Waiters are admitted from a loop, never recursively: an admitted publish
 * that completes synchronously (no subscribers) releases its slot inside
 * `admit`, and the loop picks up the next waiter.
 */

/** What the gate knows of one client (the owner of slots). */
interface OwnerState {
  /** Publishes admitted and not yet released. */
  admitted: number
  /** Publishes in the shared queue, waiting for a free slot. */
  queued: number
  /** Publishes over the per-client cap, in arrival order. */
  backlog: Array<() => void>
  backlogHead: number
}

interface Waiter {
  owner: OwnerState
  /** null once the owner was dropped. */
  admit: (() => void) | null
}

export class PublishGate {
  private inflight = 0
  private waiting: Waiter[] = []
  private head = 0
  private pumping = false
  private readonly owners = new Map<object, OwnerState>()
  /** Most slots one client may hold (admitted plus queued). */
  readonly perOwner: number

  constructor (readonly limit: number, private readonly onWait: () => void = () => {}, perOwner?: number) {
    this.perOwner = Math.max(1, Math.min(limit, perOwner ?? Math.ceil(limit / 8)))
  }

  /** Run `admit` now if a slot is free for `owner`, or once one is. */
  enter (owner: object, admit: () => void): void {
    let st = this.owners.get(owner)
    if (st === undefined) {
      st = { admitted: 0, queued: 0, backlog: [], backlogHead: 0 }
      this.owners.set(owner, st)
    }
    if (st.admitted + st.queued >= this.perOwner) {
      this.onWait()
      st.backlog.push(admit)
      return
    }
    if (this.inflight < this.limit && this.head === this.waiting.length) {
      this.inflight++
      st.admitted++
      admit()
      return
    }
    this.onWait()
    st.queued++
    this.waiting.push({ owner: st, admit })
    this.pump()
  }

  /** Release one slot of `owner` (one of its publishes finished routing). */
  leave (owner: object): void {
    const st = this.owners.get(owner)
    if (st === undefined || st.admitted === 0) return
    st.admitted--
    this.inflight--
    this.refill(owner, st)
    this.pump()
  }

  /**
   * Forget `owner` (its connection is gone): release its admitted slots and
   * discard its waiting publishes, which are never admitted.
   */
  drop (owner: object): void {
    const st = this.owners.get(owner)
    if (st === undefined) return
    this.owners.delete(owner)
    this.inflight -= st.admitted
    st.admitted = 0
    st.backlog = []
    st.backlogHead = 0
    if (st.queued > 0) {
      for (let i = this.head; i < this.waiting.length; i++) {
        const w = this.waiting[i] as Waiter
        if (w.owner === st) w.admit = null
      }
      st.queued = 0
    }
    this.pump()
  }

  /** Move the owner's oldest backlogged publish into the shared queue, if it is under its cap. */
  private refill (owner: object, st: OwnerState): void {
    if (st.backlogHead < st.backlog.length && st.admitted + st.queued < this.perOwner) {
      const next = st.backlog[st.backlogHead] as () => void
      st.backlog[st.backlogHead++] = noop
      if (st.backlogHead === st.backlog.length) {
        st.backlog = []
        st.backlogHead = 0
      } else if (st.backlogHead > 64 && st.backlogHead * 2 > st.backlog.length) {
        st.backlog.splice(0, st.backlogHead)
        st.backlogHead = 0
      }
      st.queued++
      this.waiting.push({ owner: st, admit: next })
    } else if (st.admitted === 0 && st.queued === 0 && st.backlogHead === st.backlog.length) {
      this.owners.delete(owner)
    }
  }

  /** Admit waiters while slots are free; re-entrant calls return at once. */
  private pump (): void {
    if (this.pumping) return
    this.pumping = true
    try {
      while (this.inflight < this.limit && this.head < this.waiting.length) {
        const w = this.waiting[this.head] as Waiter
        this.waiting[this.head++] = DONE
        if (this.head > 1024 && this.head * 2 > this.waiting.length) {
          this.waiting = this.waiting.slice(this.head)
          this.head = 0
        }
        const admit = w.admit
        if (admit === null) continue
        w.owner.queued--
        w.owner.admitted++
        this.inflight++
        admit()
      }
      if (this.head === this.waiting.length && this.head > 0) {
        this.waiting = []
        this.head = 0
      }
    } finally {
      this.pumping = false
    }
  }

  /** Publishes being routed now (at most `limit`). */
  get active (): number { return this.inflight }
  /** Publishes waiting for a slot now (shared queue and per-client backlogs). */
  get queued (): number {
    let n = 0
    for (const st of this.owners.values()) n += st.queued + st.backlog.length - st.backlogHead
    return n
  }

  /** Clients holding or waiting for slots now. */
  get clients (): number { return this.owners.size }
}

const DONE: Waiter = { owner: { admitted: 0, queued: 0, backlog: [], backlogHead: 0 }, admit: null }

function noop (): void {}
