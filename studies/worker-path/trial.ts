/**
 * One trial: one path, one payload size, one fan-out, one rate. Fresh
 * processes (the sender, 1..3 receivers and, for the ipc paths, the cluster
 * primary that relays), a warm-up, then the measured packets between two
 * readings of every process's CPU time (cpu.ts), Redis' included on the
 * redis path. Every process is ended by its PID at the end, whatever happened.
 */
import { type ChildProcess, fork } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Redis } from 'ioredis'
import { cpuNs } from './cpu.js'
import type { PathName, PeerConfig } from './paths.js'

export interface TrialSpec {
  path: PathName
  size: number
  receivers: number
  /** Packets a second; 0: as fast as the path takes them. */
  rate: number
  n: number
  warm: number
}

export interface TrialResult {
  /** CPU microseconds per packet sent (a broadcast's copies count as one packet). */
  cpu: { sender: number, hub: number, receivers: number, redis: number, total: number }
  msgsPerS: number
  p50: number
  p99: number
  /** Bytes written into sockets and pipes per packet sent, every hop and copy. */
  bytes: number
}

const STEP_TIMEOUT_MS = 120_000
const EXIT_WAIT_MS = 5000
let nextId = 1

interface Reply { ctl: string, id?: number, from?: number, pid?: number, error?: string, [k: string]: unknown }

/** Request/reply over one child's IPC channel; `from` tells the workers of a cluster primary apart. */
class Driver {
  private readonly calls = new Map<number, (r: Reply) => void>()
  private readonly ready = new Map<number, number>()
  private readonly readyWaits = new Map<number, (pid: number) => void>()
  constructor (readonly child: ChildProcess, private readonly label: string) {
    child.on('message', (m: Reply) => {
      if (m.ctl === 'ready') {
        const k = m.from ?? 0
        this.ready.set(k, m.pid as number)
        this.readyWaits.get(k)?.(m.pid as number)
      } else if (m.id !== undefined) {
        const c = this.calls.get(m.id)
        this.calls.delete(m.id)
        c?.(m)
      }
    })
  }

  whenReady (k = 0): Promise<number> {
    const pid = this.ready.get(k)
    if (pid !== undefined) return Promise.resolve(pid)
    return bounded(new Promise<number>((resolve) => this.readyWaits.set(k, resolve)), `${this.label} #${k} ready`)
  }

  call (msg: Record<string, unknown>, to?: number): Promise<Reply> {
    const id = nextId++
    const p = new Promise<Reply>((resolve, reject) => {
      this.calls.set(id, (r) => { if (r.error !== undefined) reject(new Error(`${this.label}: ${r.error}`)); else resolve(r) })
    })
    this.child.send({ ...msg, id, ...(to === undefined ? {} : { to }) })
    return bounded(p, `${this.label} ${String(msg.ctl)}`)
  }
}

function bounded<T> (p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer to ${what} within ${STEP_TIMEOUT_MS} ms`)), STEP_TIMEOUT_MS)
  })
  return Promise.race([p, late]).finally(() => clearTimeout(timer))
}

/** A peer of the trial as the orchestrator sees it. */
interface Peer { pid: number, call: (m: Record<string, unknown>) => Promise<Reply> }

const HERE = path.dirname(new URL(import.meta.url).pathname)

/** Start the trial's processes; `children` collects every one started, for the cleanup. */
async function startPeers (spec: TrialSpec, redisPort: number, dir: string, children: ChildProcess[]): Promise<{ sender: Peer, receivers: Peer[], hubPid: number | null }> {
  if (spec.path === 'ipc-advanced' || spec.path === 'ipc-json') {
    const child = fork(path.join(HERE, 'hub.js'), [], { env: { ...process.env, WP_HUB: JSON.stringify({ path: spec.path, receivers: spec.receivers, size: spec.size }) } })
    children.push(child)
    const d = new Driver(child, spec.path)
    const peers: Peer[] = []
    for (let i = 0; i <= spec.receivers; i++) peers.push({ pid: await d.whenReady(i), call: (m) => d.call(m, i) })
    return { sender: peers[0] as Peer, receivers: peers.slice(1), hubPid: child.pid ?? null }
  }
  const sockets = Array.from({ length: spec.receivers }, (_v, i) => path.join(dir, `r${i + 1}.sock`))
  const start = async (index: number): Promise<Peer> => {
    const peer: PeerConfig = { role: index === 0 ? 'send' : 'recv', path: spec.path, size: spec.size, redisPort, sockets, index }
    const child = fork(path.join(HERE, 'peer.js'), [], { env: { ...process.env, WP_PEER: JSON.stringify(peer) } })
    children.push(child)
    const d = new Driver(child, `${spec.path} ${index === 0 ? 'sender' : 'receiver'}`)
    return { pid: await d.whenReady(), call: (m) => d.call(m) }
  }
  const receivers: Peer[] = []
  // The control path has a sender only.
  for (let i = 1; i <= (spec.path === 'none' ? 0 : spec.receivers); i++) receivers.push(await start(i))
  return { sender: await start(0), receivers, hubPid: null }
}

async function redisBytes (redis: Redis): Promise<number> {
  const info = await redis.info('stats')
  const field = (name: string): number => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? NaN)
  return field('total_net_input_bytes') + field('total_net_output_bytes')
}

async function stopAll (children: ChildProcess[]): Promise<void> {
  await Promise.all(children.map(async (c) => {
    if (c.exitCode !== null || c.signalCode !== null) return
    const gone = new Promise<void>((resolve) => c.once('exit', () => resolve()))
    if (c.connected) c.send({ ctl: 'exit', id: 0 })
    let timer: NodeJS.Timeout | undefined
    await Promise.race([gone, new Promise<void>((resolve) => { timer = setTimeout(resolve, EXIT_WAIT_MS) })])
    clearTimeout(timer)
    if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
      process.kill(c.pid, 'SIGKILL')
      await gone
    }
  }))
}

export async function runTrial (spec: TrialSpec, redis: { port: number, pid: number, client: Redis }): Promise<TrialResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wp-'))
  const children: ChildProcess[] = []
  try {
    const { sender, receivers, hubPid } = await startPeers(spec, redis.port, dir, children)
    const arm = (n: number): Promise<Reply[]> => Promise.all(receivers.map((r) => r.call({ ctl: 'arm', n })))
    const pass = (n: number, rate: number, seq: number): Promise<[Reply, Reply[]]> =>
      Promise.all([sender.call({ ctl: 'run', n, rate, seq }), Promise.all(receivers.map((r) => r.call({ ctl: 'wait', total: seq + n })))])
    // Warm-up (JIT, connections, buffers), not measured.
    await arm(0)
    await pass(spec.warm, 0, 0)
    await arm(spec.n)
    const onRedis = spec.path === 'redis'
    const pids = { sender: [sender.pid], hub: hubPid === null ? [] : [hubPid], receivers: receivers.map((r) => r.pid), redis: onRedis ? [redis.pid] : [] }
    const sample = (): Record<keyof typeof pids, number> => ({
      sender: pids.sender.reduce((s, p) => s + cpuNs(p), 0),
      hub: pids.hub.reduce((s, p) => s + cpuNs(p), 0),
      receivers: pids.receivers.reduce((s, p) => s + cpuNs(p), 0),
      redis: pids.redis.reduce((s, p) => s + cpuNs(p), 0)
    })
    const bytes0 = onRedis ? await redisBytes(redis.client) : 0
    const before = sample()
    const [sent, got] = await pass(spec.n, spec.rate, spec.warm)
    const after = sample()
    const bytes1 = onRedis ? await redisBytes(redis.client) : 0
    const us = (k: keyof typeof pids): number => (after[k] - before[k]) / 1000 / spec.n
    const cpu = { sender: us('sender'), hub: us('hub'), receivers: us('receivers'), redis: us('redis'), total: 0 }
    cpu.total = cpu.sender + cpu.hub + cpu.receivers + cpu.redis
    const lastNs = got.reduce((m, r) => Math.max(m, Number(BigInt(r.lastNs as string) - BigInt(sent.startNs as string))), 0)
    const worst = (k: 'p50' | 'p99'): number => got.reduce((m, r) => Math.max(m, r[k] as number), got.length === 0 ? NaN : 0)
    if (got.length === 0) return { cpu, msgsPerS: NaN, p50: NaN, p99: NaN, bytes: 0 }
    return { cpu, msgsPerS: spec.n / (lastNs / 1e9), p50: worst('p50'), p99: worst('p99'), bytes: wireBytes(spec, sent, bytes1 - bytes0) }
  } finally {
    await stopAll(children)
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Bytes per packet over every hop: counted by Redis, by the sender's sockets, or (ipc) the channel's encoding. */
function wireBytes (spec: TrialSpec, sent: Reply, redisDelta: number): number {
  if (spec.path === 'redis') return redisDelta / spec.n
  if (typeof sent.written === 'number') return sent.written / (spec.warm + spec.n)
  return NaN // the ipc paths: worker-path.ts computes them from the channel's encoding
}
