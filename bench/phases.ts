/**
 * The measured phases of `warbler bench` (throughput, latency, CPU per
 * message, RSS over time, generator load), and the drain and loss check that
 * ends a run's sending.
 */
import type { Counters, GoArg, Mark } from './gen.js'
import { type Generators, sumCounters } from './generators.js'
import { fmt0, type Progress } from './progress.js'
import { cpuTicks, rssOf, type Target } from './system-under-test.js'
import { percentile, sleep, TICKS } from './targets.js'

export interface Latency { p50: number, p95: number, p99: number, max: number, mean: number, samples: number }

export interface Sample { t: number, phase: string, msgsPerSec: number, rssMb: number, p99: number }

export interface PhaseStats {
  seconds: number
  /** Messages received by the receivers (each group delivery counts). */
  delivered: number
  deliveredPerSec: number
  ackedPerSec: number
  sentPerSec: number
  heldBackPerSec: number
  latencyMs: Latency
  /** CPU of the system under test over the window, % of one core, and per delivered message. */
  cpuPct: number
  cpuUsPerMsg: number
  rssPeakMb: number
  /** Highest event-loop utilization of a generator thread over the window (1 = saturated). */
  generatorElu: number
  errors: number
}

function latencyOf (parts: Float64Array[]): Latency {
  const n = parts.reduce((s, p) => s + p.length, 0)
  const all = new Float64Array(n)
  let off = 0
  for (const p of parts) { all.set(p, off); off += p.length }
  all.sort()
  let sum = 0
  for (const x of all) sum += x
  return { p50: percentile(all, 50), p95: percentile(all, 95), p99: percentile(all, 99), max: n === 0 ? 0 : all[n - 1] as number, mean: n === 0 ? 0 : sum / n, samples: n }
}

export interface PhaseSpec {
  name: string
  go: GoArg
  warmup: number
  duration: number
  /** Called once a second during the phase (soak's reconnects). */
  onTick?: (second: number) => void
  /** Called as the measured window starts and as it ends (the workers scenario reads Redis there). */
  onWindow?: (edge: 'start' | 'end') => Promise<void>
}

/** Run a phase: warm up, then measure `duration` seconds, sampling once a second. */
export async function measure (gens: Generators, target: Target, progress: Progress, spec: PhaseSpec, timeline: Sample[], t00: number): Promise<PhaseStats> {
  await gens.go(spec.go)
  let rssPeak = 0
  let last = await gens.counters()
  let lastT = performance.now()
  const tick = async (label: string, t0: number): Promise<void> => {
    await sleep(1000 - ((performance.now() - t0) % 1000))
    const now = await gens.counters()
    const t = performance.now()
    const rate = (now.counters.received - last.counters.received) / ((t - lastT) / 1000)
    const rss = rssOf(target)
    rssPeak = Math.max(rssPeak, rss)
    timeline.push({ t: (t - t00) / 1000, phase: label, msgsPerSec: rate, rssMb: rss, p99: now.p99 })
    progress.update(label, (t - t0) / 1000, `${fmt0(rate)} msg/s  p99 ${Number.isFinite(now.p99) ? now.p99.toFixed(1) : '-'} ms  rss ${fmt0(rss)} MB${now.counters.heldBack > 0 ? `  held back ${fmt0(now.counters.heldBack)}` : ''}${now.counters.errors > 0 ? `  errors ${now.counters.errors}` : ''}`)
    last = now
    lastT = t
  }
  const w0 = performance.now()
  for (let i = 0; i < spec.warmup; i++) await tick(`${spec.name} warmup`, w0)
  await spec.onWindow?.('start')
  const c0 = cpuTicks(target)
  const m0 = await gens.all<Mark>('mark', true)
  const t0 = performance.now()
  rssPeak = 0
  for (let i = 0; i < spec.duration; i++) {
    spec.onTick?.(i)
    await tick(spec.name, t0)
  }
  const m1 = await gens.all<Mark>('mark', false)
  const t1 = performance.now()
  const c1 = cpuTicks(target)
  await spec.onWindow?.('end')
  rssPeak = Math.max(rssPeak, rssOf(target))
  const lat = latencyOf(await gens.all<Float64Array>('latencies'))
  const a = sumCounters(m0.map((m) => m.counters))
  const b = sumCounters(m1.map((m) => m.counters))
  const secs = (t1 - t0) / 1000
  const delivered = b.received - a.received
  const cpuS = (c1 - c0) / TICKS
  return {
    seconds: secs,
    delivered,
    deliveredPerSec: delivered / secs,
    ackedPerSec: (b.acked - a.acked) / secs,
    sentPerSec: (b.sent - a.sent) / secs,
    heldBackPerSec: (b.heldBack - a.heldBack) / secs,
    latencyMs: lat,
    cpuPct: cpuS / secs * 100,
    cpuUsPerMsg: delivered === 0 ? NaN : cpuS * 1e6 / delivered,
    rssPeakMb: rssPeak,
    generatorElu: Math.max(...m1.map((m) => m.elu)),
    errors: b.errors - a.errors
  }
}

export interface Check {
  /** Acknowledged messages some receiver did not get (after the drain). */
  lostAcked: number
  gaps: number
  dups: number
  errors: number
  drained: boolean
  firstError: string | null
  totals: Counters
}

/** Stop sending, wait (bounded) for in-flight messages to be acknowledged and delivered, and check. */
export async function drain (gens: Generators, progress: Progress, timeoutMs = 30_000): Promise<Check> {
  await gens.go({ mode: 'off', window: 1 })
  const t0 = performance.now()
  let c = (await gens.counters()).counters
  const done = (x: Counters): boolean => x.inflight <= 0 && x.received >= x.expected
  while (!done(c) && performance.now() - t0 < timeoutMs) {
    progress.update('drain', (performance.now() - t0) / 1000, `${fmt0(c.inflight)} unacknowledged, ${fmt0(Math.max(0, c.expected - c.received))} deliveries to come`)
    await sleep(200)
    c = (await gens.counters()).counters
  }
  return { lostAcked: Math.max(0, c.expected - c.received), gaps: c.gaps, dups: c.dups, errors: c.errors, drained: done(c), firstError: c.firstError, totals: c }
}
