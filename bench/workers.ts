/**
 * The workers benchmark: throughput of one node with 1..N broker workers
 * (`warbler start --workers N --redis URL`), against the same load on one
 * process without Redis, in one run on one machine.
 *
 *   npm run bench:workers -- [--max-workers N] [--pairs 32] [--window 16]
 *                            [--duration 8] [--warmup 2] [--runs 1]
 *                            [--modes plain,chat] [--json FILE] [--cpu-prof DIR]
 *
 * Each point is a fresh redis-server (no persistence to disk) and a fresh
 * node spawned with the real CLI on loopback ports. The load is bench/load.ts
 * (the archive benchmark's generator, in a worker thread, on a lean MQTT
 * client): K sender/receiver pairs, each sender keeping `window` messages
 * unacknowledged (closed loop, saturated and bounded).
 * - plain: QoS 1 publishes on `bench/p{i}` to one subscriber each (broker
 *   routing only, `--bridge off`): the part that spreads over workers;
 *   a sender and its receiver land on different workers about half the time
 *   (round-robin), so half the traffic crosses Redis.
 * - chat: direct chat through the message service (stored, delivered to
 *   both members' inboxes, acknowledged after COMMIT): one service in worker
 *   0 for the whole node, so this shows the single authority's ceiling.
 * Measured over the window: messages received per second, send-to-ack
 * latency, CPU of the node's processes (primary and workers) and of Redis,
 * from /proc, and the generator's event-loop utilization (near 1, the
 * generator is the bottleneck, not the node). Prints markdown and JSON.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { IdentityStore } from '../broker/identity/identity-store.js'
import type { LoadResult } from './load.js'
import { intOption, LoadWorker } from './load-worker.js'
import { median, type Proc, sleep, spawnRedis, spawnWarbler, TICKS, ticksOf } from './targets.js'

const PASSWORD = 'bench-password-1'

type Mode = 'plain' | 'chat'

interface Options {
  maxWorkers: number
  pairs: number
  window: number
  duration: number
  warmup: number
  runs: number
  modes: Mode[]
  json: string | null
  /** Write V8 CPU profiles of the node's processes (primary and workers) here. */
  cpuProf: string | null
}

function parseOptions (argv: string[]): Options {
  const o: Options = { maxWorkers: os.availableParallelism(), pairs: 32, window: 16, duration: 8, warmup: 2, runs: 1, modes: ['plain', 'chat'], json: null, cpuProf: null }
  const int = intOption
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string
    const v = (): string | undefined => argv[++i]
    switch (a) {
      case '--max-workers': o.maxWorkers = int(a, v(), 1, 64); break
      case '--pairs': o.pairs = int(a, v(), 1, 500); break
      case '--window': o.window = int(a, v(), 1, 10_000); break
      case '--duration': o.duration = int(a, v(), 1, 300); break
      case '--warmup': o.warmup = int(a, v(), 0, 60); break
      case '--runs': o.runs = int(a, v(), 1, 20); break
      case '--modes': o.modes = (v() ?? '').split(',').map((m) => {
        if (m !== 'plain' && m !== 'chat') throw new Error(`unknown mode ${m}`)
        return m
      }); break
      case '--json': o.json = v() ?? null; break
      case '--cpu-prof': o.cpuProf = v() ?? null; break
      default: throw new Error(`unknown option ${a}`)
    }
  }
  return o
}

interface Point {
  mode: Mode
  /** 0: one process without Redis (the embedded default); N: --workers N with Redis. */
  workers: number
  run: number
  msgsPerSec: number
  acksPerSec: number
  latencyMs: LoadResult['latencyMs']
  /** CPU of the node's processes (primary and workers), % of one core. */
  nodeCpuPct: number
  redisCpuPct: number
  generatorElu: number
  errors: number
  drained: boolean
}

async function point (mode: Mode, workers: number, run: number, o: Options): Promise<Point> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `warbler-bench-workers-${mode}-`))
  let redis: Proc | null = null
  let node: Proc | null = null
  let load: LoadWorker | null = null
  try {
    let redisUrl: string | undefined
    if (workers > 0) {
      const r = await spawnRedis(dir)
      redis = r
      redisUrl = r.url
    }
    const store = await IdentityStore.open(dir)
    try {
      for (let i = 0; i < o.pairs; i++) {
        await store.addUser(`s${i}`, PASSWORD)
        await store.addUser(`r${i}`, PASSWORD)
      }
    } finally { await store.close() }
    const prof = o.cpuProf !== null ? ['--cpu-prof', '--cpu-prof-dir', path.join(o.cpuProf, `${mode}-${workers}`)] : []
    const n = await spawnWarbler({ dataDir: dir, bridge: mode === 'chat' ? 'embedded' : 'off', nodeArgs: prof, logLevel: 'info', redis: redisUrl, workers: workers > 0 ? workers : undefined })
    node = n
    const ports = n.ports
    const pids = [n.pid, ...[...n.err().matchAll(/"msg":"worker started","worker":\d+,"pid":(\d+)/g)].map((m) => Number(m[1]))]
    const nodeTicks = (): number => pids.reduce((s, pid) => s + ticksOf(pid), 0)
    const redisTicks = (): number => redis !== null ? ticksOf(redis.pid) : 0
    load = new LoadWorker({ mode, port: ports.mqtt as number, pairs: o.pairs, window: o.window, payloadBytes: 64, password: PASSWORD, senderInbox: true })
    await load.call('connect')
    await load.call('go')
    await sleep(o.warmup * 1000)
    const c0 = nodeTicks()
    const r0 = redisTicks()
    const t0 = performance.now()
    await load.call('mark')
    await sleep(o.duration * 1000)
    await load.call('mark')
    const secs = (performance.now() - t0) / 1000
    const c1 = nodeTicks()
    const r1 = redisTicks()
    const r = await load.call<LoadResult>('stop')
    // The node's warnings (a stalled routing, dropped copies...) belong with the numbers.
    const warnings = n.err().split('\n').filter((l) => /"level":"(warn|error)"/.test(l))
    if (warnings.length > 0) process.stderr.write(`\n  node warnings (${warnings.length}): ${warnings.slice(0, 3).join('\n  ')}\n  `)
    return {
      mode,
      workers,
      run,
      msgsPerSec: r.window.received / r.window.seconds,
      acksPerSec: r.window.acked / r.window.seconds,
      latencyMs: r.latencyMs,
      nodeCpuPct: ((c1 - c0) / TICKS) / secs * 100,
      redisCpuPct: ((r1 - r0) / TICKS) / secs * 100,
      generatorElu: r.generatorElu,
      errors: r.totals.errors + r.totals.seqErrors,
      drained: r.totals.drained
    }
  } catch (err) {
    const tail = node?.err().trim().split('\n').slice(-10).join('\n') ?? ''
    throw new Error(`${mode} with ${workers} workers failed: ${(err as Error).message}${tail !== '' ? `\nnode stderr (last lines):\n${tail}` : ''}`)
  } finally {
    await load?.terminate()
    await node?.stop()
    await redis?.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

/** CPU of the node's processes and Redis per message delivered, in microseconds: what a message costs, whatever the rate. */
function cpuPerMessage (p: Point): number {
  return (p.nodeCpuPct + p.redisCpuPct) / 100 * 1e6 / p.msgsPerSec
}

function report (points: Point[], o: Options): string {
  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model ?? 'unknown'
  const lines = [
    `Machine: ${cpu}, ${os.availableParallelism()} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB; Node ${process.version}; ` +
    `${o.pairs} pairs, window ${o.window}, ${o.duration} s measured after ${o.warmup} s, 64-byte bodies, median of ${o.runs} run(s).`,
    ''
  ]
  for (const mode of o.modes) {
    lines.push(`**${mode}** (${mode === 'plain' ? 'QoS 1 publish to one subscriber, broker routing only' : 'direct chat: stored, delivered to both inboxes, acknowledged'})`, '')
    lines.push('| node | msgs/s | ack p50 ms | ack p99 ms | node CPU % | Redis CPU % | CPU µs/msg | generator ELU |')
    lines.push('|---|---|---|---|---|---|---|---|')
    const counts = [...new Set(points.filter((p) => p.mode === mode).map((p) => p.workers))].sort((a, b) => a - b)
    for (const w of counts) {
      const ps = points.filter((p) => p.mode === mode && p.workers === w)
      const label = w === 0 ? '1 process, no Redis' : `${w} worker${w > 1 ? 's' : ''} + Redis`
      lines.push(`| ${label} | ${Math.round(median(ps.map((p) => p.msgsPerSec)))} | ${median(ps.map((p) => p.latencyMs.p50)).toFixed(1)} | ${median(ps.map((p) => p.latencyMs.p99)).toFixed(1)} | ` +
        `${Math.round(median(ps.map((p) => p.nodeCpuPct)))} | ${Math.round(median(ps.map((p) => p.redisCpuPct)))} | ${median(ps.map(cpuPerMessage)).toFixed(1)} | ${median(ps.map((p) => p.generatorElu)).toFixed(2)} |`)
    }
    lines.push('')
  }
  return lines.join('\n')
}

async function main (): Promise<void> {
  const o = parseOptions(process.argv.slice(2))
  const counts = [0, ...Array.from({ length: o.maxWorkers }, (_, i) => i + 1)]
  const points: Point[] = []
  for (let run = 1; run <= o.runs; run++) {
    for (const mode of o.modes) {
      for (const w of counts) {
        process.stderr.write(`run ${run}: ${mode}, ${w === 0 ? 'one process without Redis' : `${w} worker(s)`}... `)
        const p = await point(mode, w, run, o)
        process.stderr.write(`${Math.round(p.msgsPerSec)} msgs/s, p99 ${p.latencyMs.p99.toFixed(1)} ms, node CPU ${Math.round(p.nodeCpuPct)} %${p.errors > 0 ? `, ${p.errors} errors` : ''}${p.drained ? '' : ', not drained'}\n`)
        points.push(p)
      }
    }
  }
  process.stdout.write(report(points, o) + '\n')
  if (o.json !== null) writeFileSync(o.json, JSON.stringify({ options: o, points }, null, 2))
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:workers: ${err instanceof Error ? err.message : String(err)}\n`)
  process.exitCode = 1
})
