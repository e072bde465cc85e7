/**
 * Rate limiting primitives, all in memory on the hot path.
 */

/** A token bucket: `rate` tokens per second, at most `burst` banked. */
export class TokenBucket {
  private tokens: number
  private last: number
  constructor (private readonly rate: number, private readonly burst: number, now = Date.now()) {
    this.tokens = burst
    this.last = now
  }

  /** Take one token; false when the bucket is empty. */
  take (now = Date.now()): boolean {
    const elapsed = now - this.last
    if (elapsed > 0) {
      this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.rate) / 1000)
      this.last = now
    }
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }
}

/**
 * One token bucket per key (a source address), forgotten after `idleMs` of
 * disuse so the map stays bounded by the number of recently active keys.
 */
export class KeyedBuckets {
  private readonly buckets = new Map<string, { bucket: TokenBucket, seen: number }>()
  private readonly timer: NodeJS.Timeout
  constructor (private readonly rate: number, private readonly burst: number, private readonly idleMs = 60_000) {
    this.timer = setInterval(() => this.sweep(), idleMs)
    this.timer.unref()
  }

  take (key: string, now = Date.now()): boolean {
    if (this.rate === 0) return true
    let entry = this.buckets.get(key)
    if (entry === undefined) {
      entry = { bucket: new TokenBucket(this.rate, this.burst, now), seen: now }
      this.buckets.set(key, entry)
    }
    entry.seen = now
    return entry.bucket.take(now)
  }

  private sweep (now = Date.now()): void {
    for (const [key, entry] of this.buckets) {
      if (now - entry.seen > this.idleMs) this.buckets.delete(key)
    }
  }

  get size (): number { return this.buckets.size }

  close (): void { clearInterval(this.timer) }
}

/**
 * Counts events per key in fixed windows (failed logins per address per
 * minute). `blocked` is true once a key reached `limit` in its window.
 */
export class WindowCounter {
  private readonly counts = new Map<string, { n: number, until: number }>()
  private readonly timer: NodeJS.Timeout
  constructor (private readonly limit: number, private readonly windowMs = 60_000) {
    this.timer = setInterval(() => this.sweep(), windowMs)
    this.timer.unref()
  }

  blocked (key: string, now = Date.now()): boolean {
    const e = this.counts.get(key)
    return e !== undefined && e.until > now && e.n >= this.limit
  }

  /** Events counted for key in its current window. */
  count (key: string, now = Date.now()): number {
    const e = this.counts.get(key)
    return e !== undefined && e.until > now ? e.n : 0
  }

  add (key: string, now = Date.now()): void {
    const e = this.counts.get(key)
    if (e === undefined || e.until <= now) this.counts.set(key, { n: 1, until: now + this.windowMs })
    else e.n++
  }

  private sweep (now = Date.now()): void {
    for (const [key, e] of this.counts) if (e.until <= now) this.counts.delete(key)
  }

  close (): void { clearInterval(this.timer) }
}
