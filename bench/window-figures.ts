/**
 * Where a Warbler process's time went over a measured window, from its
 * /metrics (prom-client text) and /proc, read as the window starts and as it
 * ends: archive commits (sends per commit, time per commit), the message
 * service's stages of a send, event-loop delay, garbage collection, and the
 * event loop's own CPU beside SQLite's threads. For one process (the
 * primary); the figures are NaN for the references and when /metrics does
 * not answer.
 */
import type { PhaseSpec, PhaseStats } from './phases.js'
import type { Target } from './system-under-test.js'
import { mainThreadTicks, TICKS } from './targets.js'

type Scrape = Map<string, number>

/** Every sample of /metrics by name plus labels as written (`name{a="b"}`), and summed over its labels by name. */
async function scrape (t: Target): Promise<Scrape | null> {
  if (t.httpPort === null) return null
  try {
    const res = await fetch(`http://127.0.0.1:${t.httpPort}/metrics`, { signal: AbortSignal.timeout(5000) })
    const out: Scrape = new Map()
    for (const m of (await res.text()).matchAll(/^(\w+)(\{[^}]*\})? (\S+)$/gm)) {
      const [, name, labels, value] = m as unknown as [string, string, string | undefined, string]
      if (labels !== undefined) out.set(name + labels, Number(value))
      out.set(name, (labels !== undefined ? out.get(name) ?? 0 : 0) + Number(value))
    }
    return out
  } catch {
    return null
  }
}

interface Edge { m: Scrape | null, mainTicks: number }

/** The window's figures: keys without a prefix (the scenario adds its own). */
export type WindowFigures = Record<'sends_per_commit' | 'commit_ms' | 'stored_ms' | 'routed_ms' | 'loop_delay_p99_ms' | 'gc_us_per_msg' | 'loop_cpu_us_per_msg', number>

/**
 * Read at both edges of a phase's window (`onWindow`), then `figures(phase)`.
 * The event-loop delay is prom-client's monitorEventLoopDelay histogram,
 * which each read of /metrics resets: the end's p99 is the window's.
 */
export function windowProbe (t: Target): { onWindow: NonNullable<PhaseSpec['onWindow']>, figures: (p: PhaseStats) => WindowFigures } {
  const edges: Partial<Record<'start' | 'end', Edge>> = {}
  const pid = t.name === 'warbler' ? t.pids()[0] : undefined
  return {
    onWindow: async (edge) => {
      edges[edge] = { m: pid === undefined ? null : await scrape(t), mainTicks: pid === undefined ? NaN : mainThreadTicks(pid) }
    },
    figures: (p) => {
      const a = edges.start?.m
      const b = edges.end?.m
      const d = (k: string): number => a == null || b == null ? NaN : (b.get(k) ?? NaN) - (a.get(k) ?? NaN)
      const stageMs = (stage: string): number => 1000 * d(`warbler_send_stage_seconds_sum{stage="${stage}"}`) / d(`warbler_send_stage_seconds_count{stage="${stage}"}`)
      const perMsg = (seconds: number): number => p.delivered === 0 ? NaN : seconds * 1e6 / p.delivered
      return {
        sends_per_commit: d('warbler_messages_stored_total') / d('warbler_store_batches_total'),
        commit_ms: 1000 * d('warbler_store_latency_seconds_sum') / d('warbler_store_latency_seconds_count'),
        stored_ms: stageMs('stored'),
        routed_ms: stageMs('routed'),
        loop_delay_p99_ms: 1000 * (b?.get('warbler_nodejs_eventloop_lag_p99_seconds') ?? NaN),
        gc_us_per_msg: perMsg(d('warbler_nodejs_gc_duration_seconds_sum')),
        loop_cpu_us_per_msg: perMsg(((edges.end?.mainTicks ?? NaN) - (edges.start?.mainTicks ?? NaN)) / TICKS)
      }
    }
  }
}
