/**
 * conns: many idle authenticated sessions, each subscribed (Warbler: its
 * inbox and device topic, logged in with a device token; Mosquitto:
 * anonymous, one topic each). Connect rate over the connect phase (a bounded
 * number of connects in flight), sessions held after settling, and memory per
 * session: (RSS after - RSS before) / sessions, and for Warbler the V8 heap
 * used per session from /metrics.
 */
import { generators, heapUsed, provision, rssOf, target, type RunContext, type RunResult } from '../harness.js'
import { sleep } from '../targets.js'
import { empty, idle, idleUsers } from './build.js'
import type { ScenarioDef } from './types.js'


async function run (ctx: RunContext): Promise<RunResult> {
  const warbler = ctx.target === 'warbler'
  const n = ctx.o.sessions
  const tokens = warbler ? await provision(ctx.dir, idleUsers('u', n)) : null
  const t = await target(ctx)
  const p = empty()
  idle(p, warbler, tokens, 'u', n)
  await sleep(1000)
  const rss0 = rssOf(t)
  const heap0 = await heapUsed(t)
  const gens = generators(ctx, t, p.clients, p.senders)
  const c = await gens.connect(ctx.progress, n)
  // Let the broker finish what the connects started (up to 3 s for large counts).
  const SETTLE_MS = Math.min(3000, 1000 + n / 5)
  ctx.progress.say(`connected ${c.counters.connected.toLocaleString('en-US')} sessions in ${c.seconds.toFixed(1)} s; settling ${SETTLE_MS / 1000} s`)
  await sleep(SETTLE_MS)
  const rss1 = rssOf(t)
  const heap1 = await heapUsed(t)
  const held = (await gens.counters()).counters
  const sessions = held.open
  return {
    target: ctx.target,
    run: ctx.run,
    values: {
      sessions,
      connect_rate: c.counters.connected / c.seconds,
      connect_failures: c.counters.connectFailures,
      rss_before_mb: rss0,
      rss_after_mb: rss1,
      kb_per_session: sessions === 0 ? NaN : (rss1 - rss0) * 1024 / sessions,
      heap_kb_per_session: sessions === 0 ? NaN : (heap1 - heap0) / 1024 / sessions
    },
    phases: {},
    timeline: [],
    check: null,
    notes: c.counters.firstError !== null ? [`first connect error: ${c.counters.firstError}`] : []
  }
}

export const conns: ScenarioDef = {
  about: 'idle authenticated sessions, each subscribed to its inbox and device topic (Warbler, device tokens) or one topic (Mosquitto, anonymous)',
  metrics: [
    { key: 'sessions', label: 'sessions held', unit: '', better: 'higher', chart: true },
    { key: 'connect_rate', label: 'connect rate', unit: 'sessions/s', better: 'higher', chart: true },
    { key: 'connect_failures', label: 'connect failures', unit: '', better: 'lower' },
    { key: 'rss_before_mb', label: 'RSS before', unit: 'MB', better: 'lower', digits: 1 },
    { key: 'rss_after_mb', label: 'RSS with the sessions', unit: 'MB', better: 'lower', digits: 1 },
    { key: 'kb_per_session', label: 'memory per session (RSS)', unit: 'KB', better: 'lower', digits: 2, chart: true },
    { key: 'heap_kb_per_session', label: 'V8 heap per session', unit: 'KB', better: 'lower', digits: 2 }
  ],
  run
}
