/** Seeded randomness for the corpus: the same bytes on every run. */

/** mulberry32: a small seeded PRNG, so the corpus is the same on every run. */
export function prng (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6D2B79F5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export class Gen {
  constructor (readonly rnd: () => number) {}
  int (a: number, b: number): number { return a + Math.floor(this.rnd() * (b - a + 1)) }
  chance (p: number): boolean { return this.rnd() < p }
  pick<T> (xs: readonly T[]): T { return xs[Math.floor(this.rnd() * xs.length)] as T }
  /** Zipf-like: the first words of a list are the most frequent, as in real text. */
  zipf<T> (xs: readonly T[]): T {
    const n = xs.length
    // Inverse CDF of a continuous 1/x law over [1, n+1).
    const i = Math.floor(Math.exp(this.rnd() * Math.log(n + 1))) - 1
    return xs[Math.min(n - 1, Math.max(0, i))] as T
  }

  /** Log-normal with the given median. */
  lognormal (median: number, sigma: number): number {
    const u = 1 - this.rnd()
    const v = this.rnd()
    return median * Math.exp(sigma * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v))
  }

  weighted<T> (xs: ReadonlyArray<readonly [T, number]>): T {
    let r = this.rnd() * xs.reduce((s, [, w]) => s + w, 0)
    for (const [x, w] of xs) { r -= w; if (r < 0) return x }
    return (xs[xs.length - 1] as readonly [T, number])[0]
  }

  token (n: number, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789'): string {
    let s = ''
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(this.rnd() * alphabet.length)]
    return s
  }
}
