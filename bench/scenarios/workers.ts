/**
 * workers: 1:1 chat (the chat scenario's saturated phase) against Warbler in
 * one process without Redis, then with `--workers 1`..`--max-workers` and a
 * redis-server, each a fresh node and data dir, in one run, then the message
 * service in a process of its own (`--service-process on`) beside 1 and
 * `--max-workers` connection workers (the other rows run with it off); and against
 * Mosquitto (`--against mosquitto`, plain QoS 1 between the same pairs).
 *
 * Per point: delivered msg/s, send-to-receipt latency, the CPU per delivered
 * message of the node's processes (primary and workers) and of Redis apart,
 * and the Redis commands per message (INFO commandstats over the window):
 * what a message costs, whatever the rate, which is the figure to read on a
 * shared machine. Warbler's points are the rows of the report; Mosquitto has
 * one configuration, so its figures are repeated on every row (the ratio
 * column reads "this Warbler point / Mosquitto").
 */
import { mkdirSync } from 'node:fs'
import path from 'node:path'
import { Redis } from 'ioredis'
import type { BenchOptions } from '../bench-options.js'
import { Generators } from '../generators.js'
import { type Check, drain, measure, type PhaseStats, type Sample } from '../phases.js'
import type { RunContext } from '../run-context.js'
import type { RunResult } from '../run.js'
import { provision, startTarget } from '../system-under-test.js'
import { TICKS, ticksOf } from '../targets.js'
import { chatPairs, chatUsers, empty } from './build.js'
import type { Metric, ScenarioDef } from './scenario.js'

/**
 * The points of a run: 0 is one process without Redis, N is `--workers N`
 * with Redis and the service in worker 0; -N is N connection workers and the
 * service in a process of its own.
 */
function points (o: BenchOptions): number[] {
  const own = [...new Set([1, o.maxWorkers])].filter((n) => n >= 1).map((n) => -n)
  return [...Array.from({ length: o.maxWorkers + 1 }, (_, i) => i), ...own]
}

const label = (w: number): string => w === 0
  ? '1 process'
  : `${Math.abs(w)} worker${Math.abs(w) > 1 ? 's' : ''}${w < 0 ? ' + service process' : ''} + Redis`

/** The key prefix of a point's figures. */
const keyOf = (w: number): string => w < 0 ? `w${-w}s_` : `w${w}_`

async function commandCalls (url: string): Promise<number> {
  const r = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: true })
  r.on('error', () => {})
  try {
    await r.connect()
    const info = await r.info('commandstats')
    // The INFO call itself is counted by Redis, and is not a message's.
    return [...info.matchAll(/^cmdstat_(\S+):calls=(\d+)/gm)].reduce((s, m) => s + (m[1] === 'info' ? 0 : Number(m[2])), 0)
  } finally {
    r.disconnect()
  }
}

interface Point { w: number, phase: PhaseStats, redisCpuUsPerMsg: number, redisCmdsPerMsg: number, check: Check }

/** One configuration: a fresh node (and Redis), the chat pairs connected, a saturated window, the drain; then all stopped. */
async function point (ctx: RunContext, w: number, timeline: Sample[], t00: number): Promise<Point> {
  const o = ctx.o
  const warbler = ctx.target === 'warbler'
  const dir = path.join(ctx.dir, keyOf(w).slice(0, -1))
  mkdirSync(dir)
  const tokens = warbler ? await provision(dir, chatUsers('c', o.pairs)) : null
  const profDir = o.cpuProf !== null ? path.join(o.cpuProf, `workers-${keyOf(w).slice(0, -1)}`) : undefined
  const shape = warbler && w !== 0 ? { serviceProcess: w < 0 ? 'on' as const : 'off' as const } : {}
  const t = await startTarget(ctx.target, dir, o, { workers: Math.abs(w), redis: warbler && w !== 0, cpuProfDir: profDir, ...shape })
  ctx.cleanup.push(t.stop)
  const p = empty()
  chatPairs(p, warbler, tokens, 'c', o.pairs, 0)
  const gens = new Generators(o, t.port, p.clients, p.senders)
  let closed = false
  const close = async (): Promise<void> => { if (!closed) { closed = true; await gens.close() } }
  ctx.cleanup.push(close)
  try {
    const c = await gens.connect(ctx.progress, p.clients.length, `${label(w)}: connect`)
    if (c.counters.connectFailures > 0) throw new Error(`${label(w)}: ${c.counters.connectFailures} connects failed: ${c.counters.firstError ?? ''}`)
    const redis = t.redis
    let r0 = 0
    let r1 = 0
    let k0 = 0
    let k1 = 0
    const onWindow = async (edge: 'start' | 'end'): Promise<void> => {
      if (redis === null) return
      if (edge === 'start') { r0 = ticksOf(redis.pid); k0 = await commandCalls(redis.url) } else { r1 = ticksOf(redis.pid); k1 = await commandCalls(redis.url) }
    }
    const phase = await measure(gens, t, ctx.progress, { name: label(w), go: { mode: 'closed', window: o.window }, warmup: o.warmup, duration: o.duration, onWindow }, timeline, t00)
    const check = await drain(gens, ctx.progress)
    const per = (x: number): number => phase.delivered === 0 ? NaN : x / phase.delivered
    return { w, phase, redisCpuUsPerMsg: redis === null ? NaN : per((r1 - r0) / TICKS * 1e6), redisCmdsPerMsg: redis === null ? NaN : per(k1 - k0), check }
  } finally {
    await close()
    await t.stop()
  }
}

/** Checks of every point of the run, as one. */
function together (cs: Check[]): Check {
  const first = cs[0] as Check
  return cs.slice(1).reduce((a, c) => ({
    lostAcked: a.lostAcked + c.lostAcked,
    gaps: a.gaps + c.gaps,
    dups: a.dups + c.dups,
    errors: a.errors + c.errors,
    drained: a.drained && c.drained,
    firstError: a.firstError ?? c.firstError,
    totals: a.totals
  }), first)
}

async function run (ctx: RunContext): Promise<RunResult> {
  const timeline: Sample[] = []
  const t00 = performance.now()
  const ws = ctx.target === 'warbler' ? points(ctx.o) : [0]
  const done: Point[] = []
  for (const w of ws) done.push(await point(ctx, w, timeline, t00))
  const first = done[0]
  if (first === undefined) throw new Error('no configuration was measured')
  const values: Record<string, number> = {}
  const phases: Record<string, PhaseStats> = {}
  // Mosquitto's one configuration stands on every row.
  for (const w of points(ctx.o)) {
    const x = done.find((d) => d.w === w) ?? first
    const k = keyOf(w)
    Object.assign(values, {
      [`${k}msgs_per_s`]: x.phase.deliveredPerSec,
      [`${k}p50_ms`]: x.phase.latencyMs.p50,
      [`${k}p99_ms`]: x.phase.latencyMs.p99,
      [`${k}cpu_us_per_msg`]: x.phase.cpuUsPerMsg,
      [`${k}redis_cpu_us_per_msg`]: x.redisCpuUsPerMsg,
      [`${k}node_cpu_us_per_msg`]: x.phase.cpuUsPerMsg - (Number.isFinite(x.redisCpuUsPerMsg) ? x.redisCpuUsPerMsg : 0),
      [`${k}redis_cmds_per_msg`]: x.redisCmdsPerMsg,
      [`${k}generator_elu`]: x.phase.generatorElu
    })
    if (done.some((d) => d.w === w)) phases[label(w)] = x.phase
  }
  const check = together(done.map((d) => d.check))
  const notes = ctx.target === 'warbler'
    ? ['Warbler\'s rows: one process without Redis (the embedded default), then `--workers N --redis URL` with a fresh redis-server (`--service-process off`: the service in worker 0), then N connection workers and the service in a process of its own (`--service-process on`); CPU per message is the node\'s processes (primary and workers) plus Redis, node and Redis also apart.']
    : ['Mosquitto is one process: its figures stand on every row, and the ratios read "this Warbler configuration / Mosquitto".']
  return { target: ctx.target, run: ctx.run, values: { ...values, lost_acked: check.lostAcked, errors: check.errors }, phases, timeline, check, notes }
}

function metrics (o: BenchOptions): Metric[] {
  return points(o).map((w) => [w, keyOf(w)] as const).flatMap(([w, k]): Metric[] => [
    { key: `${k}msgs_per_s`, label: `${label(w)}: throughput`, unit: 'msg/s', better: 'higher', chart: true },
    { key: `${k}p50_ms`, label: `${label(w)}: latency p50`, unit: 'ms', better: 'lower', digits: 2 },
    { key: `${k}p99_ms`, label: `${label(w)}: latency p99`, unit: 'ms', better: 'lower', digits: 2, chart: true },
    { key: `${k}cpu_us_per_msg`, label: `${label(w)}: CPU per message`, unit: 'µs', better: 'lower', digits: 1, chart: true },
    { key: `${k}node_cpu_us_per_msg`, label: `${label(w)}: node's CPU per message`, unit: 'µs', better: 'lower', digits: 1 },
    { key: `${k}redis_cpu_us_per_msg`, label: `${label(w)}: Redis' CPU per message`, unit: 'µs', better: 'lower', digits: 1 },
    { key: `${k}redis_cmds_per_msg`, label: `${label(w)}: Redis commands per message`, unit: '', better: 'lower', digits: 2 },
    { key: `${k}generator_elu`, label: `${label(w)}: generator event-loop load`, unit: '', better: null, digits: 2 }
  ]).concat([
    { key: 'lost_acked', label: 'acknowledged messages lost', unit: '', better: 'lower' },
    { key: 'errors', label: 'error notices', unit: '', better: 'lower' }
  ])
}

export const workers: ScenarioDef = {
  about: '1:1 QoS 1 chat, saturated, against one process and 1..N broker workers with Redis, each a fresh node',
  metrics,
  run
}
