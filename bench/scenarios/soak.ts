/**
 * soak: steady mixed load for `duration` seconds: 1:1 chat at a fixed total
 * rate, posts to a group at a low rate, and idle sessions of which a few
 * reconnect every few seconds. Throughput, latency, errors, and the RSS
 * sampled every second (it should stay flat: the slope is reported).
 */
import { generators } from '../generators.js'
import { drain, measure, type Sample } from '../phases.js'
import type { RunContext } from '../run-context.js'
import type { RunResult } from '../run.js'
import { createGroup, provision, target } from '../system-under-test.js'
import { chatPairs, chatUsers, empty, group as groupOf, groupUsers, idle, idleUsers } from './build.js'
import { LATENCY, latencyValues, type ScenarioDef } from './scenario.js'

const IDLE = 100
const RECONNECT_EVERY_S = 5
const RECONNECT_COUNT = 10
const GROUP_RATE = 20

async function run (ctx: RunContext): Promise<RunResult> {
  const o = ctx.o
  const warbler = ctx.target === 'warbler'
  const gu = groupUsers('g', 1, o.members)
  const tokens = warbler ? await provision(ctx.dir, [...chatUsers('c', o.pairs), ...gu.senders, ...gu.members, ...idleUsers('i', IDLE)]) : null
  const t = await target(ctx)
  let conv: string | null = null
  if (warbler && tokens !== null) conv = await createGroup(t.port, gu.senders[0] as string, tokens.get(gu.senders[0] as string) as string, gu.members)
  const p = empty()
  chatPairs(p, warbler, tokens, 'c', o.pairs, 0)
  groupOf(p, warbler, tokens, 'g', 1, o.members, conv, 100_000)
  idle(p, warbler, tokens, 'i', IDLE, true)
  const gens = generators(ctx, t, p.clients, p.senders)
  const c = await gens.connect(ctx.progress, p.clients.length)
  if (c.counters.connectFailures > 0) throw new Error(`${c.counters.connectFailures} connects failed: ${c.counters.firstError ?? ''}`)
  const timeline: Sample[] = []
  const reconnects: Array<Promise<unknown>> = []
  const per = Math.max(1, Math.ceil(RECONNECT_COUNT / gens.threads.length))
  const ph = await measure(gens, t, ctx.progress, {
    name: 'soak',
    go: { mode: 'paced', window: o.window, rates: { chat: o.rate, group: GROUP_RATE } },
    warmup: Math.min(1, o.warmup),
    duration: o.duration,
    onTick: (s) => { if (s % RECONNECT_EVERY_S === RECONNECT_EVERY_S - 1) reconnects.push(gens.all('reconnect', per).catch(() => {})) }
  }, timeline, performance.now())
  await Promise.all(reconnects)
  const check = await drain(gens, ctx.progress)
  const soak = timeline.filter((s) => s.phase === 'soak')
  const rss = soak.map((s) => s.rssMb)
  // Least-squares slope of RSS over time, MB per minute.
  const n = soak.length
  const mt = soak.reduce((a, s) => a + s.t, 0) / Math.max(1, n)
  const mr = rss.reduce((a, r) => a + r, 0) / Math.max(1, n)
  const cov = soak.reduce((a, s) => a + (s.t - mt) * (s.rssMb - mr), 0)
  const vt = soak.reduce((a, s) => a + (s.t - mt) ** 2, 0)
  return {
    target: ctx.target,
    run: ctx.run,
    values: {
      msgs_per_s: ph.deliveredPerSec,
      ...latencyValues('', ph.latencyMs),
      cpu_us_per_msg: ph.cpuUsPerMsg,
      cpu_pct: ph.cpuPct,
      rss_first_mb: rss[0] ?? NaN,
      rss_last_mb: rss[rss.length - 1] ?? NaN,
      rss_peak_mb: ph.rssPeakMb,
      rss_slope_mb_per_min: vt === 0 ? 0 : cov / vt * 60,
      reconnects: check.totals.reconnects,
      reconnect_failures: check.totals.reconnectFailures,
      generator_elu: ph.generatorElu,
      lost_acked: check.lostAcked,
      errors: check.errors
    },
    phases: { soak: ph },
    timeline,
    check,
    notes: [`chat at ${o.rate} msg/s over ${o.pairs} pairs, ${GROUP_RATE} posts/s to a group of ${o.members}, ${IDLE} idle sessions of which ${RECONNECT_COUNT} reconnect every ${RECONNECT_EVERY_S} s`]
  }
}

export const soak: ScenarioDef = {
  about: 'steady mixed load: chat at a fixed rate, group posts, idle sessions reconnecting; RSS sampled every second',
  metrics: [
    { key: 'msgs_per_s', label: 'deliveries', unit: 'msg/s', better: 'higher', chart: true },
    ...LATENCY('', 'end to end'),
    { key: 'cpu_us_per_msg', label: 'CPU per delivery', unit: 'µs', better: 'lower', digits: 1, chart: true },
    { key: 'cpu_pct', label: 'CPU', unit: '% of a core', better: 'lower', digits: 0 },
    { key: 'rss_first_mb', label: 'RSS at the start', unit: 'MB', better: 'lower', digits: 1 },
    { key: 'rss_last_mb', label: 'RSS at the end', unit: 'MB', better: 'lower', digits: 1 },
    { key: 'rss_peak_mb', label: 'peak RSS', unit: 'MB', better: 'lower', digits: 1, chart: true },
    { key: 'rss_slope_mb_per_min', label: 'RSS trend', unit: 'MB/min', better: 'lower', digits: 2 },
    { key: 'reconnects', label: 'reconnects', unit: '', better: null },
    { key: 'reconnect_failures', label: 'failed reconnects', unit: '', better: 'lower' },
    { key: 'generator_elu', label: 'generator event-loop load', unit: '', better: null, digits: 2 },
    { key: 'lost_acked', label: 'acknowledged messages lost', unit: '', better: 'lower' },
    { key: 'errors', label: 'error notices', unit: '', better: 'lower' }
  ],
  run
}
