/**
 * overload: measure saturation with a short saturated chat phase, then offer
 * twice that rate (open loop, but each sender may have at most `window`
 * unacknowledged: what it cannot send is counted as held back, nothing queues
 * in the generator). Reports delivered/s against the measured peak, the
 * broker's RSS over time (it must stay bounded) and checks that every
 * acknowledged message reached its receiver exactly once, in order.
 */
import { drain, measure, type Sample } from '../phases.js'
import type { RunContext } from '../run-context.js'
import type { RunResult } from '../run.js'
import { connectedChatPairs } from './build.js'
import { LATENCY, latencyValues, type ScenarioDef } from './scenario.js'

async function run (ctx: RunContext): Promise<RunResult> {
  const o = ctx.o
  const { t, gens } = await connectedChatPairs(ctx)
  const timeline: Sample[] = []
  const t00 = performance.now()
  const peak = await measure(gens, t, ctx.progress, { name: 'peak', go: { mode: 'closed', window: o.window }, warmup: o.warmup, duration: Math.max(1, Math.min(5, o.duration)) }, timeline, t00)
  const offered = Math.max(1, Math.round(2 * peak.deliveredPerSec))
  ctx.progress.say(`peak ${Math.round(peak.deliveredPerSec).toLocaleString('en-US')} msg/s; offering ${offered.toLocaleString('en-US')} msg/s`)
  const over = await measure(gens, t, ctx.progress, { name: '2x peak', go: { mode: 'paced', window: o.window, rates: { chat: offered } }, warmup: Math.min(1, o.warmup), duration: o.duration }, timeline, t00)
  const check = await drain(gens, ctx.progress)
  const rss = timeline.filter((s) => s.phase === '2x peak').map((s) => s.rssMb)
  return {
    target: ctx.target,
    run: ctx.run,
    values: {
      peak_msgs_per_s: peak.deliveredPerSec,
      offered_per_s: offered,
      overload_msgs_per_s: over.deliveredPerSec,
      ratio_to_peak: over.deliveredPerSec / peak.deliveredPerSec,
      held_back_per_s: over.heldBackPerSec,
      ...latencyValues('', over.latencyMs),
      rss_peak_mb: Math.max(peak.rssPeakMb, over.rssPeakMb),
      rss_growth_mb: rss.length < 2 ? 0 : (rss[rss.length - 1] as number) - (rss[0] as number),
      generator_elu: Math.max(peak.generatorElu, over.generatorElu),
      lost_acked: check.lostAcked,
      gaps: check.gaps,
      dups: check.dups,
      errors: check.errors
    },
    phases: { peak, overload: over },
    timeline,
    check,
    notes: []
  }
}

export const overload: ScenarioDef = {
  about: 'chat offered at twice the measured saturation, publishers paced by their acks (at most `window` unacknowledged each)',
  metrics: [
    { key: 'peak_msgs_per_s', label: 'saturation (peak)', unit: 'msg/s', better: 'higher', chart: true },
    { key: 'offered_per_s', label: 'offered (2 x peak)', unit: 'msg/s', better: null },
    { key: 'overload_msgs_per_s', label: 'delivered under overload', unit: 'msg/s', better: 'higher', chart: true },
    { key: 'ratio_to_peak', label: 'delivered / peak', unit: '', better: 'higher', digits: 2, chart: true },
    { key: 'held_back_per_s', label: 'held back by the generator', unit: 'msg/s', better: null },
    ...LATENCY('', 'under overload'),
    { key: 'rss_peak_mb', label: 'peak RSS', unit: 'MB', better: 'lower', digits: 1, chart: true },
    { key: 'rss_growth_mb', label: 'RSS growth during overload', unit: 'MB', better: 'lower', digits: 1 },
    { key: 'generator_elu', label: 'generator event-loop load', unit: '', better: null, digits: 2 },
    { key: 'lost_acked', label: 'acknowledged messages lost', unit: '', better: 'lower' },
    { key: 'gaps', label: 'gaps in a sender\'s sequence', unit: '', better: 'lower' },
    { key: 'dups', label: 'duplicates or reordered', unit: '', better: 'lower' },
    { key: 'errors', label: 'error notices', unit: '', better: 'lower' }
  ],
  run
}
