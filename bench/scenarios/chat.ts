/**
 * chat: 1:1 QoS 1 chat through the message service (Warbler: stored, then
 * delivered to both users' feeds, acknowledged after COMMIT; Mosquitto: plain QoS
 * 1 pub/sub between the same pairs). Two phases on the same connections:
 * saturated (closed loop, each sender keeps `window` unacknowledged), then a
 * fixed total rate (open loop paced by a timer, bounded by the same window)
 * for latency at a known load. Latency is end to end: send to receipt of the
 * stored message by the receiving client.
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
  const sat = await measure(gens, t, ctx.progress, { name: 'saturated', go: { mode: 'closed', window: o.window }, warmup: o.warmup, duration: o.duration }, timeline, t00)
  const fixed = await measure(gens, t, ctx.progress, { name: `${o.rate}/s`, go: { mode: 'paced', window: o.window, rates: { chat: o.rate } }, warmup: Math.min(1, o.warmup), duration: o.duration }, timeline, t00)
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
    { key: 'rss_peak_mb', label: 'peak RSS', unit: 'MB', better: 'lower', digits: 1, chart: true },
    { key: 'generator_elu', label: 'generator event-loop load', unit: '', better: null, digits: 2 },
    { key: 'lost_acked', label: 'acknowledged messages lost', unit: '', better: 'lower' },
    { key: 'errors', label: 'error notices', unit: '', better: 'lower' }
  ],
  run
}
