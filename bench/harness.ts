/**
 * What the scenarios of `warbler bench` share: the options, the system under
 * test (started fresh for every run, stopped by its PID), identities
 * provisioned in the data dir beforehand, the generator threads
 * (bench/gen.ts), measured phases (throughput, latency, CPU per message, RSS
 * over time, generator load), the drain and loss check, and the live
 * progress line on stderr.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { hashPassword } from '../broker/identity/password.js'
import { IdentityStore } from '../broker/identity/store.js'
import type { ClientSpec, Counters, GenPlan, GoArg, Mark, SenderSpec } from './gen.js'
import { encodeString, LeanClient } from './lean.js'
import { ThreadHandle } from './load-worker.js'
import { GC_NODE_ARGS, gcMemory, percentile, processTree, type Proc, rssMb, sleep, spawnAedes, spawnMosquitto, spawnRedis, spawnWarbler, TICKS, ticksOf } from './targets.js'

export const SCENARIOS = ['conns', 'chat', 'group', 'overload', 'soak'] as const
export type Scenario = typeof SCENARIOS[number]
/** What Warbler can be compared with (`--against`): Debian's Mosquitto, a bare aedes (bench/aedes.ts). */
export const REFERENCES = ['mosquitto', 'aedes'] as const
export type Reference = typeof REFERENCES[number]
export type TargetName = 'warbler' | Reference
export const TARGET_LABEL: Record<TargetName, string> = { warbler: 'Warbler', mosquitto: 'Mosquitto', aedes: 'bare aedes' }

export interface BenchOptions {
  scenario: Scenario
  /** The references, in the order given (empty: Warbler alone). */
  against: Reference[]
  /** Warbler's `--bridge` (conns only: the other scenarios need the message service). */
  bridge: 'embedded' | 'off'
  runs: number
  sessions: number
  pairs: number
  window: number
  rate: number
  duration: number
  warmup: number
  members: number
  senders: number
  payload: number
  workers: number
  generators: number
  sources: number
  connectConcurrency: number
  json: string | null
  md: string | null
  svg: string | null
  /** Write a V8 CPU profile of each Warbler process to this directory (node --cpu-prof). */
  cpuProf: string | null
}

/** Every wait on the network is bounded by this. */
export const NET_TIMEOUT_MS = 20_000

// ---------------------------------------------------------------- progress

const fmt0 = (n: number): string => Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-'

/** The live line on stderr: rewritten in place on a terminal, a plain line every few seconds otherwise. */
export class Progress {
  private lastPlain = 0
  private shown = false
  readonly tty = process.stderr.isTTY === true
  constructor (private readonly head: string) {}

  update (phase: string, elapsedS: number, fields: string): void {
    const line = `${this.head}  ${phase}  ${elapsedS.toFixed(1)}s  ${fields}`
    if (this.tty) {
      process.stderr.write(`\r${line.slice(0, (process.stderr.columns ?? 120) - 1)}\x1b[K`)
      this.shown = true
    } else if (Date.now() - this.lastPlain >= 3000) {
      process.stderr.write(line + '\n')
      this.lastPlain = Date.now()
    }
  }

  /** A line that stays (ends the live line first). */
  say (text: string): void {
    if (this.tty && this.shown) process.stderr.write('\r\x1b[K')
    this.shown = false
    process.stderr.write(`${this.head}  ${text}\n`)
  }
}

// ---------------------------------------------------------------- system under test

export interface Target {
  name: TargetName
  port: number
  httpPort: number | null
  /** The processes whose CPU and memory are measured (Warbler: the primary, its workers, Redis). */
  pids: () => number[]
  stop: () => Promise<void>
  errTail: () => string
  /**
   * Node targets spawned with bench/gc-ipc.ts (aedes always; Warbler in the
   * conns scenario, one process): a full GC, then process.memoryUsage().
   * Null where memory can only be read as it is (Mosquitto, Warbler's workers).
   */
  gcMemory: (() => Promise<NodeJS.MemoryUsage | null>) | null
}

export const PASSWORD = 'bench-password-1'

/**
 * Users with one device token each, written to the data dir before the node
 * starts (as `warbler token create USER --device NAME` does, in one
 * transaction). One scrypt hash is shared by all users: hashing a password
 * per user would take minutes for thousands; the benchmark logs in with the
 * tokens only.
 */
export async function provision (dataDir: string, users: string[], admins: string[] = []): Promise<Map<string, string>> {
  const store = await IdentityStore.open(dataDir)
  const tokens = new Map<string, string>()
  try {
    const hash = await hashPassword(PASSWORD)
    await store.db.transaction(async () => {
      for (const u of [...users, ...admins]) {
        await store.db.run('INSERT INTO users(name, password_hash, admin, created_at, service) VALUES (?, ?, ?, ?, 0)', [u, hash, admins.includes(u) ? 1 : 0, Date.now()])
        tokens.set(u, (await store.createDeviceToken(u, 'bench')).token)
      }
    })
  } finally {
    await store.close()
  }
  return tokens
}

/** Start the system under test for one run, in `dir`. */
export async function startTarget (name: TargetName, dir: string, o: BenchOptions): Promise<Target> {
  if (name === 'mosquitto') {
    const m = await spawnMosquitto(dir)
    return { name, port: m.port, httpPort: null, pids: () => [m.pid], stop: m.stop, errTail: () => m.err(), gcMemory: null }
  }
  if (name === 'aedes') {
    const a = await spawnAedes(GC_NODE_ARGS)
    return { name, port: a.port, httpPort: null, pids: () => [a.pid], stop: a.stop, errTail: () => a.err().trim().split('\n').slice(-8).join('\n'), gcMemory: () => gcMemory(a.child) }
  }
  let redis: (Proc & { url: string }) | null = null
  if (o.workers > 1) redis = await spawnRedis(dir)
  // The conns scenario reads memory after a full GC (one process only: a primary cannot collect its workers' garbage).
  const gc = o.scenario === 'conns' && o.workers <= 1
  try {
    const nodeArgs = [...(gc ? GC_NODE_ARGS : []), ...(o.cpuProf !== null ? ['--cpu-prof', '--cpu-prof-dir', o.cpuProf] : [])]
    const w = await spawnWarbler({ dataDir: dir, bridge: o.bridge, workers: o.workers > 0 ? o.workers : undefined, redis: redis?.url, readyTimeoutMs: 60_000, nodeArgs, ...(gc ? { ipc: true } : {}) })
    let tree = processTree(w.pid)
    let treeAt = Date.now()
    return {
      name,
      port: w.port,
      httpPort: w.httpPort,
      pids: () => {
        if (Date.now() - treeAt > 5000) { tree = processTree(w.pid); treeAt = Date.now() }
        return redis !== null ? [...tree, redis.pid] : tree
      },
      stop: async () => { await w.stop(); await redis?.stop() },
      errTail: () => w.err().trim().split('\n').slice(-8).join('\n'),
      gcMemory: gc ? () => gcMemory(w.child) : null
    }
  } catch (err) {
    await redis?.stop()
    throw err
  }
}

export function cpuTicks (t: Target): number { return t.pids().reduce((s, pid) => s + ticksOf(pid), 0) }
export function rssOf (t: Target): number { return t.pids().reduce((s, pid) => s + rssMb(pid), 0) }

/** Heap used by the Warbler processes, from /metrics (bytes; NaN when not available). */
export async function heapUsed (t: Target): Promise<number> {
  if (t.httpPort === null) return NaN
  try {
    const res = await fetch(`http://127.0.0.1:${t.httpPort}/metrics`, { signal: AbortSignal.timeout(5000) })
    const text = await res.text()
    let sum = 0
    let found = false
    for (const m of text.matchAll(/^\w*nodejs_heap_size_used_bytes(?:\{[^}]*\})? (\S+)/gm)) { sum += Number(m[1]); found = true }
    return found ? sum : NaN
  } catch {
    return NaN
  }
}

/**
 * The owner creates a group through the service's MQTT requests
 * (`group.create`, then `group.add` for members past the first request's
 * list); its conversation id.
 */
export async function createGroup (port: number, owner: string, token: string, members: string[]): Promise<string> {
  const cid = `${owner}-setup`
  const c = await LeanClient.connect(port, cid, { username: owner, password: token }, '127.0.0.1', { timeoutMs: NET_TIMEOUT_MS })
  const waiting = new Map<string, { resolve: (data: { conv?: string }) => void, reject: (e: Error) => void }>()
  c.handlers.onPublish = (_topic, payload) => {
    const f = JSON.parse(payload.toString('utf8')) as { t: string, id?: string, ref?: string, data?: { conv?: string }, message?: string }
    const w = waiting.get(f.id ?? f.ref ?? '')
    if (f.t === 'res') w?.resolve(f.data ?? {})
    else if (f.t === 'error') w?.reject(new Error(`group request refused: ${String(f.message)}`))
  }
  let n = 0
  const request = async (op: string, params: Record<string, unknown>): Promise<{ conv?: string }> => {
    const id = `g${++n}`
    let timer: NodeJS.Timeout | undefined
    const answer = new Promise<{ conv?: string }>((resolve, reject) => {
      waiting.set(id, { resolve, reject })
      timer = setTimeout(() => reject(new Error(`no answer to ${op} within ${NET_TIMEOUT_MS} ms`)), NET_TIMEOUT_MS)
    })
    c.publish1(encodeString(`wb/u/${owner}/out`), Buffer.from(JSON.stringify({ t: 'req', id, op, ...params })), n)
    try { return await answer } finally { clearTimeout(timer); waiting.delete(id) }
  }
  try {
    await c.subscribe([`wb/d/${cid}`])
    const CHUNK = 250
    const conv = (await request('group.create', { name: 'bench', members: members.slice(0, CHUNK) })).conv
    if (typeof conv !== 'string') throw new Error('group.create answered without a conversation id')
    for (let i = CHUNK; i < members.length; i += CHUNK) await request('group.add', { conv, users: members.slice(i, i + CHUNK) })
    return conv
  } finally {
    c.end()
  }
}

// ---------------------------------------------------------------- generators

const SUM_KEYS = ['connected', 'open', 'connectFailures', 'sent', 'acked', 'errored', 'received', 'selfCopies', 'heldBack', 'gaps', 'dups', 'errors', 'reconnects', 'reconnectFailures', 'expected', 'inflight'] as const

export function sumCounters (cs: Counters[]): Counters {
  const out: Counters = { connected: 0, open: 0, connectFailures: 0, sent: 0, acked: 0, errored: 0, received: 0, selfCopies: 0, heldBack: 0, gaps: 0, dups: 0, errors: 0, reconnects: 0, reconnectFailures: 0, expected: 0, inflight: 0, firstError: null }
  for (const c of cs) {
    for (const key of SUM_KEYS) out[key] += c[key]
    out.firstError ??= c.firstError
  }
  return out
}

/**
 * The generator threads. Clients are dealt out by `slot` (a chat pair's two
 * clients share a slot, so a thread holds whole pairs); senders go with their client.
 */
export class Generators {
  readonly threads: ThreadHandle[] = []
  /** Per thread: senders by class, for splitting paced rates. */
  private readonly classCounts: Array<Map<string, number>> = []

  constructor (o: BenchOptions, port: number, clients: Array<ClientSpec & { slot: number }>, senders: Array<Omit<SenderSpec, 'client'> & { clientId: string }>) {
    const n = Math.max(1, Math.min(o.generators, clients.length))
    const sources = Array.from({ length: o.sources }, (_, i) => `127.0.0.${i + 2}`)
    const plans: GenPlan[] = Array.from({ length: n }, (_, index) => ({
      index, port, host: '127.0.0.1', sources, clients: [], senders: [], payloadBytes: o.payload,
      connectConcurrency: Math.max(1, Math.ceil(o.connectConcurrency / n)), timeoutMs: NET_TIMEOUT_MS
    }))
    const where = new Map<string, { plan: GenPlan, index: number }>()
    for (const c of clients) {
      const plan = plans[c.slot % n] as GenPlan
      where.set(c.clientId, { plan, index: plan.clients.length })
      const { slot: _slot, ...spec } = c
      plan.clients.push(spec)
    }
    for (const s of senders) {
      const w = where.get(s.clientId)
      if (w === undefined) throw new Error(`sender ${s.clientId} has no client`)
      const { clientId: _id, ...spec } = s
      w.plan.senders.push({ ...spec, client: w.index })
    }
    for (const plan of plans) {
      const counts = new Map<string, number>()
      for (const s of plan.senders) counts.set(s.cls, (counts.get(s.cls) ?? 0) + 1)
      this.classCounts.push(counts)
      this.threads.push(new ThreadHandle(new URL('./gen.js', import.meta.url), plan, `generator ${plan.index}`))
    }
  }

  all<T> (cmd: string, arg?: unknown, timeoutMs = NET_TIMEOUT_MS * 2): Promise<T[]> {
    return Promise.all(this.threads.map((t) => t.call<T>(cmd, timeoutMs, arg)))
  }

  async counters (): Promise<{ counters: Counters, p99: number }> {
    const rs = await this.all<{ counters: Counters, p99: number }>('stats')
    const p = rs.map((r) => r.p99).filter((x) => Number.isFinite(x))
    return { counters: sumCounters(rs.map((r) => r.counters)), p99: p.length === 0 ? NaN : Math.max(...p) }
  }

  /** Closed loop with `window`, or paced at total `rates` per class (split by each thread's share of senders). */
  async go (arg: GoArg): Promise<void> {
    const total = new Map<string, number>()
    for (const c of this.classCounts) for (const [cls, n] of c) total.set(cls, (total.get(cls) ?? 0) + n)
    await Promise.all(this.threads.map((t, i) => {
      const rates: Record<string, number> = {}
      for (const [cls, r] of Object.entries(arg.rates ?? {})) {
        rates[cls] = r * ((this.classCounts[i] as Map<string, number>).get(cls) ?? 0) / Math.max(1, total.get(cls) ?? 0)
      }
      return t.call('go', NET_TIMEOUT_MS, { ...arg, rates })
    }))
  }

  /**
   * Connect every client (bounded concurrency), showing progress; wall-clock
   * seconds, and `span`: seconds from the first CONNECT to the last SUBACK over all threads.
   */
  async connect (progress: Progress, total: number, phase = 'connect'): Promise<{ seconds: number, span: number, counters: Counters }> {
    const t0 = performance.now()
    let done = false
    const all = this.all<{ counters: Counters, start: number, end: number }>('connect', undefined, NET_TIMEOUT_MS * 4 + total * 50).finally(() => { done = true })
    while (!done) {
      await Promise.race([all.catch(() => {}), sleep(1000)])
      if (done) break
      const { counters: c } = await this.counters()
      const s = (performance.now() - t0) / 1000
      progress.update(phase, s, `${fmt0(c.connected)}/${fmt0(total)} sessions  ${fmt0(c.connected / s)} sessions/s${c.connectFailures > 0 ? `  ${c.connectFailures} failed` : ''}`)
    }
    const rs = await all
    const span = (Math.max(...rs.map((r) => r.end)) - Math.min(...rs.map((r) => r.start))) / 1000
    return { seconds: (performance.now() - t0) / 1000, span, counters: sumCounters(rs.map((r) => r.counters)) }
  }

  async close (): Promise<void> {
    await this.all('close', undefined, 5000).catch(() => {})
    await sleep(200)
    for (const t of this.threads) await t.terminate()
  }
}

// ---------------------------------------------------------------- phases

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

// ---------------------------------------------------------------- one run

export interface RunResult {
  target: TargetName
  run: number
  /** The figures compared across targets (see each scenario's metrics). */
  values: Record<string, number>
  phases: Record<string, PhaseStats>
  timeline: Sample[]
  check: Check | null
  notes: string[]
}

export interface RunContext {
  o: BenchOptions
  target: TargetName
  run: number
  dir: string
  progress: Progress
  /** Registered by the scenario so that an interrupt stops what it started. */
  cleanup: Array<() => Promise<void>>
}

/** A fresh temp dir for one run, removed afterwards; everything started in it is stopped. */
export async function inRun<T> (target: TargetName, run: number, o: BenchOptions, progress: Progress, active: Set<RunContext>, fn: (ctx: RunContext) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `warbler-bench-${o.scenario}-${target}-`))
  const ctx: RunContext = { o, target, run, dir, progress, cleanup: [] }
  active.add(ctx)
  try {
    return await fn(ctx)
  } finally {
    await runCleanup(ctx)
    active.delete(ctx)
    rmSync(dir, { recursive: true, force: true })
  }
}

export async function runCleanup (ctx: RunContext): Promise<void> {
  while (ctx.cleanup.length > 0) {
    const f = ctx.cleanup.pop() as () => Promise<void>
    await f().catch(() => {})
  }
}

/** Start the target and register its stop. */
export async function target (ctx: RunContext): Promise<Target> {
  const t = await startTarget(ctx.target, ctx.dir, ctx.o)
  ctx.cleanup.push(t.stop)
  return t
}

export function generators (ctx: RunContext, t: Target, clients: Array<ClientSpec & { slot: number }>, senders: Array<Omit<SenderSpec, 'client'> & { clientId: string }>): Generators {
  const g = new Generators(ctx.o, t.port, clients, senders)
  ctx.cleanup.push(() => g.close())
  return g
}
