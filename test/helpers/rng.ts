/**
 * A small seeded pseudo-random generator (mulberry32) for tests that must be
 * reproducible from a printed seed: the fuzzer and the chaos test. Not for
 * anything secret.
 */
import { randomInt } from 'node:crypto'

export class Rng {
  private a: number

  constructor (readonly seed: number) { this.a = seed >>> 0 }

  /** A float in [0, 1). */
  next (): number {
    this.a = (this.a + 0x6d2b79f5) >>> 0
    let t = this.a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /** An integer in [0, n). */
  int (n: number): number { return Math.floor(this.next() * n) }

  /** An integer in [lo, hi]. */
  range (lo: number, hi: number): number { return lo + this.int(hi - lo + 1) }

  bool (p = 0.5): boolean { return this.next() < p }

  pick<T> (items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list')
    return items[this.int(items.length)] as T
  }

  /** One of the keys, with probability proportional to its weight. */
  weighted<K extends string> (weights: Readonly<Record<K, number>>): K {
    const entries = Object.entries(weights) as Array<[K, number]>
    let x = this.next() * entries.reduce((s, [, w]) => s + w, 0)
    for (const [k, w] of entries) {
      x -= w
      if (x < 0) return k
    }
    return (entries[entries.length - 1] as [K, number])[0]
  }

  bytes (n: number): Buffer {
    const b = Buffer.alloc(n)
    for (let i = 0; i < n; i++) b[i] = this.int(256)
    return b
  }

  /** A string of `n` characters drawn from `alphabet`. */
  string (n: number, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789'): string {
    let s = ''
    for (let i = 0; i < n; i++) s += alphabet[this.int(alphabet.length)] as string
    return s
  }

  /** An independent generator for item `i` of this seed (so one item can be replayed alone). */
  fork (i: number): Rng {
    return new Rng((this.seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0)
  }
}

/** The seed from environment variable `name` (decimal or 0x hex), or a fresh random one. */
export function seedFrom (name: string): number {
  const v = process.env[name]
  if (v === undefined || v === '') return randomInt(0, 2 ** 32 - 1)
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 0 || n >= 2 ** 32) throw new Error(`${name} must be a whole number from 0 to 4294967295, not ${v}`)
  return n
}

/** A whole number from environment variable `name`, or `def`. */
export function intFrom (name: string, def: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  const v = process.env[name]
  if (v === undefined || v === '') return def
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new Error(`${name} must be a whole number from ${min} to ${max}, not ${v}`)
  return n
}
