/** Timing codecs: CPU and wall time per frame, calibrated loops, medians of interleaved runs. */
import type { Codec } from './payload-codecs.js'
import { CODECS } from './payload-codecs.js'

/** The options timing needs (a subset of the command's). */
export interface TimingOptions { runs: number, minMs: number }

export function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] as number : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}

/** CPU and wall microseconds per call of fn over items, repeated `reps` times. */
export async function timeLoop<T> (items: T[], fn: (x: T) => unknown, isAsync: boolean, reps: number): Promise<{ cpu: number, wall: number }> {
  const c0 = process.cpuUsage()
  const w0 = process.hrtime.bigint()
  if (isAsync) {
    for (let r = 0; r < reps; r++) for (const x of items) await fn(x)
  } else {
    for (let r = 0; r < reps; r++) for (const x of items) fn(x)
  }
  const wall = Number(process.hrtime.bigint() - w0) / 1000
  const c = process.cpuUsage(c0)
  const n = items.length * reps
  return { cpu: (c.user + c.system) / n, wall: wall / n }
}

/** How many repetitions make a timed loop last at least minMs (4 × minMs for the async codecs, whose runs vary more). */
export async function calibrate<T> (items: T[], fn: (x: T) => unknown, isAsync: boolean, minMs: number): Promise<number> {
  // Warm up (JIT, zlib, stream classes), then size the repetitions.
  if (isAsync) minMs *= 4
  await timeLoop(items, fn, isAsync, 1)
  const one = await timeLoop(items, fn, isAsync, 1)
  return Math.max(1, Math.ceil(minMs * 1000 / Math.max(1, one.wall * items.length)))
}

export interface Timing { cpu: number, wall: number }
export interface Measured { comp: Timing, decomp: Timing }

/** Compress and decompress timings (medians of runs) for each codec over a set of frames, codecs interleaved. */
export async function measure (frames: Uint8Array[], o: TimingOptions, packed: Map<string, Array<Uint8Array | null>>): Promise<Map<string, Measured>> {
  const plan: Array<{ key: string, items: unknown[], fn: (x: never) => unknown, async: boolean, reps: number, runs: Timing[] }> = []
  for (const c of CODECS) {
    const p = packed.get(c.name) as Array<Uint8Array | null>
    const pairs: Array<[Uint8Array, number]> = []
    frames.forEach((f, i) => { const q = p[i]; if (q !== null && q !== undefined) pairs.push([q, f.length]) })
    plan.push({ key: c.name + ':comp', items: frames, fn: (j: Uint8Array) => c.compress(j), async: c.async, reps: 1, runs: [] })
    plan.push({ key: c.name + ':decomp', items: pairs, fn: ([q, n]: [Uint8Array, number]) => c.decompress(q, n), async: c.async, reps: 1, runs: [] })
  }
  for (const p of plan) p.reps = p.items.length === 0 ? 0 : await calibrate(p.items as never[], p.fn, p.async, o.minMs)
  for (let run = 0; run < o.runs; run++) {
    // Rotate the order so no codec always runs right after the same one.
    for (let k = 0; k < plan.length; k++) {
      const p = plan[(k + run * 2) % plan.length] as typeof plan[number]
      if (p.reps > 0) p.runs.push(await timeLoop(p.items as never[], p.fn, p.async, p.reps))
    }
  }
  const out = new Map<string, Measured>()
  const med = (key: string): Timing => {
    const p = plan.find((x) => x.key === key) as typeof plan[number]
    return { cpu: median(p.runs.map((r) => r.cpu)), wall: median(p.runs.map((r) => r.wall)) }
  }
  for (const c of CODECS) out.set(c.name, { comp: med(c.name + ':comp'), decomp: med(c.name + ':decomp') })
  return out
}

/** Bytes on the wire: the compressed envelope when it is smaller, else the plain JSON (as encodeFrame does). */
export function wire (c: Codec, json: Uint8Array, packed: Uint8Array | null): number {
  if (packed === null) return json.length
  const n = packed.length + c.overhead
  return n < json.length ? n : json.length
}
