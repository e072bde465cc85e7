/**
 * conns: many idle sessions, each subscribed to its feed and device feed
 * at QoS 1 (Warbler: logged in with a device token; Mosquitto and bare aedes:
 * anonymous, the same two filters). WARMUP sessions are opened first and
 * not counted, so that one-time costs (code compiled, caches such as
 * mqtt-packet's number buffers, modules loaded on first use) are not taken
 * for a per-session cost. Memory is read after them and again after the
 * counted sessions; for the Node targets (Warbler in one process, aedes)
 * after a full GC (bench/gc-ipc.ts), so that garbage is not counted:
 * VmRSS and V8 heap used; Mosquitto: VmRSS. Per session: the difference over
 * the sessions held. Connect rate: counted sessions / (first CONNECT to last
 * SUBACK); the target's CPU per connect over the same phase.
 */
import { generators } from '../generators.js'
import { TARGET_LABEL } from '../bench-options.js'
import type { RunContext } from '../run-context.js'
import type { RunResult } from '../run.js'
import { cpuTicks, heapUsed, provision, rssOf, type Target, target } from '../system-under-test.js'
import { sleep, TICKS } from '../targets.js'
import { empty, idle, idleUsers } from './build.js'
import type { ScenarioDef } from './scenario.js'

/** Sessions opened before the first reading, not counted. */
export const WARMUP = 200

interface Reading { rssMb: number, heap: number }

/** RSS (MB) and heap (bytes) now: after a full GC where the target allows it. */
async function reading (t: Target): Promise<Reading> {
  if (t.gcMemory !== null) {
    const m = await t.gcMemory()
    if (m === null) throw new Error(`${t.name} did not answer the GC request`)
    // Let the pages freed by the collection leave the resident set.
    await sleep(500)
    return { rssMb: rssOf(t), heap: m.heapUsed }
  }
  return { rssMb: rssOf(t), heap: await heapUsed(t) }
}

function howRead (t: Target, o: RunContext['o']): string {
  const label = TARGET_LABEL[t.name]
  if (t.gcMemory !== null) return `${label}: memory read after a full GC (spawned with \`node --expose-gc\` and bench/gc-ipc.ts preloaded, asked over an IPC channel): VmRSS from /proc, V8 heap used from process.memoryUsage()`
  if (t.name === 'mosquitto') return 'Mosquitto: VmRSS from /proc (no garbage collector to run)'
  return `${label} (\`--workers ${o.workers}\`): RSS of all its processes and V8 heap used from /metrics, read as they are (no GC: the primary cannot collect its workers' garbage)`
}

async function run (ctx: RunContext): Promise<RunResult> {
  const warbler = ctx.target === 'warbler'
  const n = ctx.o.sessions
  const tokens = warbler ? await provision(ctx.dir, [...idleUsers('w', WARMUP), ...idleUsers('u', n)]) : null
  const t = await target(ctx)
  const pw = empty()
  idle(pw, warbler, tokens, 'w', WARMUP, false, true)
  const p = empty()
  idle(p, warbler, tokens, 'u', n, false, true)
  const warm = generators(ctx, t, pw.clients, pw.senders)
  const gens = generators(ctx, t, p.clients, p.senders)
  // Let the broker finish what the connects started (up to 3 s for large counts).
  const settle = (count: number): number => Math.min(3000, 1000 + count / 5)
  const w = await warm.connect(ctx.progress, WARMUP, 'warm-up')
  if (w.counters.connectFailures > 0) throw new Error(`${w.counters.connectFailures} warm-up connects failed: ${w.counters.firstError ?? ''}`)
  await sleep(settle(WARMUP))
  const m0 = await reading(t)
  const cpu0 = cpuTicks(t)
  const c = await gens.connect(ctx.progress, n)
  const cpu1 = cpuTicks(t)
  ctx.progress.say(`connected ${c.counters.connected.toLocaleString('en-US')} sessions in ${c.span.toFixed(1)} s; settling ${settle(n) / 1000} s`)
  await sleep(settle(n))
  const m1 = await reading(t)
  const sessions = (await gens.counters()).counters.open
  const warmHeld = (await warm.counters()).counters.open
  const per = (a: number, b: number, unit: number): number => sessions === 0 ? NaN : (b - a) / unit / sessions
  const notes = [
    `${WARMUP} warm-up sessions are opened first and not counted; memory is read after them (and ${settle(WARMUP) / 1000} s) and again after the counted sessions (and ${settle(n) / 1000} s); per session: the difference over the counted sessions held. Connect rate: counted sessions / (first CONNECT to last SUBACK); CPU per connect over the same phase`,
    howRead(t, ctx.o)
  ]
  if (warmHeld !== WARMUP) notes.push(`${TARGET_LABEL[ctx.target]} run ${ctx.run}: ${warmHeld} of the ${WARMUP} warm-up sessions still open at the end`)
  if (c.counters.firstError !== null) notes.push(`first connect error: ${c.counters.firstError}`)
  if (warbler && ctx.o.bridge === 'off') notes.push('Warbler runs with `--bridge off` (no message service)')
  return {
    target: ctx.target,
    run: ctx.run,
    values: {
      sessions,
      connect_rate: c.span > 0 ? c.counters.connected / c.span : NaN,
      connect_failures: c.counters.connectFailures,
      cpu_us_per_connect: c.counters.connected === 0 ? NaN : (cpu1 - cpu0) / TICKS * 1e6 / c.counters.connected,
      rss_before_mb: m0.rssMb,
      rss_after_mb: m1.rssMb,
      kb_per_session: per(m0.rssMb, m1.rssMb, 1 / 1024),
      heap_kb_per_session: per(m0.heap, m1.heap, 1024)
    },
    phases: {},
    timeline: [],
    check: null,
    notes
  }
}

export const conns: ScenarioDef = {
  about: `idle sessions, each subscribed at QoS 1 to its feed and device feed (Warbler: logged in with a device token; Mosquitto, bare aedes: anonymous), after ${WARMUP} warm-up sessions that are not counted`,
  metrics: [
    { key: 'sessions', label: 'sessions held (counted)', unit: '', better: 'higher', chart: true },
    { key: 'connect_rate', label: 'connect rate', unit: 'sessions/s', better: 'higher', chart: true },
    { key: 'connect_failures', label: 'connect failures', unit: '', better: 'lower' },
    { key: 'cpu_us_per_connect', label: 'CPU per connect', unit: 'µs', better: 'lower', digits: 0 },
    { key: 'rss_before_mb', label: 'RSS after the warm-up', unit: 'MB', better: 'lower', digits: 1 },
    { key: 'rss_after_mb', label: 'RSS with the sessions', unit: 'MB', better: 'lower', digits: 1 },
    { key: 'kb_per_session', label: 'memory per session (RSS)', unit: 'KB', better: 'lower', digits: 2, chart: true },
    { key: 'heap_kb_per_session', label: 'V8 heap per session', unit: 'KB', better: 'lower', digits: 2 }
  ],
  run
}
