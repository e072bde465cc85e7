/**
 * Reconnect delays: exponential backoff with full jitter, between a minimum
 * and a maximum. Attempt n waits a uniformly random time in
 * [min, min(max, min * 2^n)], so that many clients dropped at once do not
 * come back at once.
 */
export interface BackoffOptions {
  /** Smallest delay before a reconnect attempt, ms. Default 250. */
  minDelay: number
  /** Largest delay, ms. Default 30 000. */
  maxDelay: number
}

export function backoffDelay (attempt: number, o: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(o.maxDelay, o.minDelay * 2 ** Math.min(attempt, 30))
  return o.minDelay + random() * Math.max(0, ceiling - o.minDelay)
}
