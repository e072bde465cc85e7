/**
 * Backpressure for publishers.
 *
 * Aedes acknowledges a QoS 1 PUBLISH before routing it, and a client's next
 * packets are parsed as soon as its current batch is routed; with many
 * publishers the routing queue (mqemitter) grows without bound while
 * delivered throughput falls. This gate bounds the number of publishes being
 * routed at once. It sits in authorizePublish, which aedes calls before the
 * PUBACK: when the gate is full the callback is held, so the publisher gets
 * no PUBACK and aedes reads nothing more from its socket; TCP flow control
 * then slows the publisher itself. `published` (called once routing is
 * complete) releases the slot and admits the next waiter, oldest first.
 */
export class PublishGate {
  private inflight = 0
  private readonly waiting: Array<() => void> = []
  private head = 0

  constructor (readonly limit: number, private readonly onWait: () => void = () => {}) {}

  /** Run `admit` now if a slot is free, or once one is. */
  enter (admit: () => void): void {
    if (this.inflight < this.limit && this.head === this.waiting.length) {
      this.inflight++
      admit()
      return
    }
    this.onWait()
    this.waiting.push(admit)
  }

  /** Release one slot (a publish finished routing). */
  leave (): void {
    if (this.head < this.waiting.length) {
      const next = this.waiting[this.head] as () => void
      this.waiting[this.head++] = noop
      if (this.head > 1024 && this.head * 2 > this.waiting.length) {
        this.waiting.splice(0, this.head)
        this.head = 0
      }
      next() // the slot passes straight to the waiter
      return
    }
    if (this.inflight > 0) this.inflight--
  }

  get active (): number { return this.inflight }
  get queued (): number { return this.waiting.length - this.head }
}

function noop (): void {}
