/**
 * chat: 1:1 QoS 1 chat through the message service (Warbler: stored, then
 * delivered to both users' feeds, acknowledged after COMMIT; Mosquitto: plain QoS
 * 1 pub/sub between the same pairs). Two phases on the same connections:
 * saturated (closed loop, each sender keeps `window` unacknowledged), then a
 * fixed total rate (open loop paced by a timer, bounded by the same window)
 * for latency at a known load. Latency is end to end: send to receipt of the
 * stored message by the receiving client. Memory: RSS once every client is
 * connected and idle for a second (before any load), beside the peak of each
 * phase. Against Warbler, where the fixed rate's time went (window-figures.ts).
 */
import { drain, measure, type Sample } from '../phases.js'
import type { RunContext } from '../run-context.js'
import type { RunResult } from '../run.js'
import { rssOf } from '../system-under-test.js'
import { sleep } from '../targets.js'
import { windowProbe } from '../window-figures.js'
import { connectedChatPairs } from './build.js'
import { LATENCY, latencyValues, type ScenarioDef } from './scenario.js'

async function run (ctx: RunContext): Promise<RunResult> {
  const o = ctx.o
  const { t, gens } = await connectedChatPairs(ctx)
  // Connected, nothing sent yet: what the process holds before the load.
  await sleep(1000)
  const rssIdle = rssOf(t)
  const timeline: Sample[] = []
  const t00 = performance.now()
  const sat = await measure(gens, t, ctx.progress, { name: 'saturated', go: { mode: 'closed', window: o.window }, warmup: o.warmup, duration: o.duration }, timeline, t00)
  const probe = windowProbe(t)
  const fixed = await measure(gens, t, ctx.progress, { name: `${o.rate}/s`, go: { mode: 'paced', window: o.window, rates: { chat: o.rate } }, warmup: Math.min(1, o.warmup), duration: o.duration, onWindow: probe.onWindow }, timeline, t00)
  const where = Object.fromEntries(Object.entries(probe.figures(fixed)).map(([k, v]) => [`rate_${k}`, v]))
  const check = await drain(gens, ctx.progress)
  return {
    target: ctx.target,
    run: ctx.run,
    values: {
      sat_msgs_per_s: sat.deliveredPerSec,
      ...latencyValues('sat_', sat.latencyMs),
      sat_cpu_us_per_msg: sat.cpuUsPerMsg,
      rate_target: o.rate,
      rate_msgs_per_s: fixed.deliveredPerSec,
      rate_held_back_per_s: fixed.heldBackPerSec,
      ...latencyValues('rate_', fixed.latencyMs),
      rate_cpu_us_per_msg: fixed.cpuUsPerMsg,
      rate_cpu_vs_sat: fixed.cpuUsPerMsg / sat.cpuUsPerMsg,
      ...where,
      rss_idle_mb: rssIdle,
      rate_rss_peak_mb: fixed.rssPeakMb,
      rate_rss_vs_idle: fixed.rssPeakMb / rssIdle,
      rss_peak_mb: Math.max(sat.rssPeakMb, fixed.rssPeakMb),
      generator_elu: Math.max(sat.generatorElu, fixed.generatorElu),
      lost_acked: check.lostAcked,
      errors: check.errors
    },
    phases: { saturated: sat, rate: fixed },
    timeline,
    check,
    notes: []
  }
}

export const chat: ScenarioDef = {
  about: '1:1 QoS 1 chat between sender/receiver pairs: saturated, then at a fixed total rate',
  metrics: [
    { key: 'sat_msgs_per_s', label: 'saturated throughput', unit: 'msg/s', better: 'higher', chart: true },
    ...LATENCY('sat_', 'saturated', false),
    { key: 'sat_cpu_us_per_msg', label: 'saturated CPU per message', unit: 'µs', better: 'lower', digits: 1, chart: true },
    { key: 'rate_target', label: 'fixed rate offered', unit: 'msg/s', better: null },
    { key: 'rate_msgs_per_s', label: 'fixed rate delivered', unit: 'msg/s', better: 'higher' },
    { key: 'rate_held_back_per_s', label: 'fixed rate held back', unit: 'msg/s', better: 'lower' },
    ...LATENCY('rate_', 'fixed rate'),
    { key: 'rate_cpu_us_per_msg', label: 'fixed rate CPU per message', unit: 'µs', better: 'lower', digits: 1 },
    { key: 'rate_cpu_vs_sat', label: 'fixed rate CPU per message / saturated', unit: '', better: 'lower', digits: 2 },
    { key: 'rate_loop_cpu_us_per_msg', label: 'fixed rate: event loop CPU per message', unit: 'µs', better: 'lower', digits: 1 },
    { key: 'rate_gc_us_per_msg', label: 'fixed rate: GC per message', unit: 'µs', better: 'lower', digits: 1 },
    { key: 'rate_loop_delay_p99_ms', label: 'fixed rate: event-loop delay p99', unit: 'ms', better: 'lower', digits: 2 },
    { key: 'rate_sends_per_commit', label: 'fixed rate: sends per archive commit', unit: '', better: null, digits: 1 },
    { key: 'rate_commit_ms', label: 'fixed rate: archive commit (mean)', unit: 'ms', better: 'lower', digits: 2 },
    { key: 'rate_stored_ms', label: 'fixed rate: send to commit done (mean)', unit: 'ms', better: 'lower', digits: 2 },
    { key: 'rate_routed_ms', label: 'fixed rate: commit to routed and acked (mean)', unit: 'ms', better: 'lower', digits: 2 },
    { key: 'rss_idle_mb', label: 'idle RSS (connected, before load)', unit: 'MB', better: 'lower', digits: 1 },
    { key: 'rate_rss_peak_mb', label: 'fixed rate peak RSS', unit: 'MB', better: 'lower', digits: 1 },
    { key: 'rate_rss_vs_idle', label: 'fixed rate peak RSS / idle', unit: '', better: 'lower', digits: 2 },
    { key: 'rss_peak_mb', label: 'peak RSS', unit: 'MB', better: 'lower', digits: 1, chart: true },
    { key: 'generator_elu', label: 'generator event-loop load', unit: '', better: null, digits: 2 },
    { key: 'lost_acked', label: 'acknowledged messages lost', unit: '', better: 'lower' },
    { key: 'errors', label: 'error notices', unit: '', better: 'lower' }
  ],
  run
}
