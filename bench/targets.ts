/**
 * The systems under test of the benchmarks, as child processes on loopback:
 * Warbler spawned with the real CLI (`node dist/cli/warbler.js start`),
 * Debian's Mosquitto with a generated config, redis-server for `--workers`.
 * a bare aedes (bench/aedes.ts) as its own process. Each is stopped by its
 * own PID (SIGTERM, then SIGKILL after a grace time). Node processes can be
 * spawned with bench/gc-ipc.ts preloaded, to read their memory after a full
 * GC (`gcMemory`). Also the /proc readings (CPU ticks, RSS, child processes) and the machine
 * description that go with the figures.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
export const CLI = path.join(ROOT, 'dist', 'cli', 'warbler.js')
const HERE = path.dirname(fileURLToPath(import.meta.url))
/**
 * node flags that preload bench/gc-ipc.ts: with an IPC channel to the
 * process, `gcMemory` then reads its memory after a full GC.
 */
export const GC_NODE_ARGS: readonly string[] = ['--expose-gc', '--import', pathToFileURL(path.join(HERE, 'gc-ipc.js')).href]
/** USER_HZ on Linux: the unit of utime and stime in /proc/PID/stat. */
export const TICKS = 100

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

export interface Proc {
  child: ChildProcess
  pid: number
  out: () => string
  err: () => string
  exited: Promise<void>
  /** SIGTERM to this PID, SIGKILL after graceMs; resolves when it has exited. */
  stop: () => Promise<void>
}

/** Keep a child's output (stderr's tail) and stop it by its PID. */
export function track (child: ChildProcess, graceMs = 15_000): Proc {
  let out = ''
  let err = ''
  child.stdout?.on('data', (d: Buffer) => { out = (out + d.toString()).slice(-200_000) })
  child.stderr?.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-50_000) })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  return {
    child,
    pid: child.pid ?? -1,
    out: () => out,
    err: () => err,
    exited,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
      process.kill(child.pid, 'SIGTERM')
      const timer = setTimeout(() => { if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL') }, graceMs)
      await exited
      clearTimeout(timer)
    }
  }
}

/** A port that was free a moment ago on 127.0.0.1 (for servers that cannot bind port 0 themselves). */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })
}

/** Wait until something accepts TCP connections on 127.0.0.1:port (bounded). */
export async function waitForPort (port: number, child: ChildProcess | null = null, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1')
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    if (child !== null && child.exitCode !== null) throw new Error(`exited (${child.exitCode}) before listening on ${port}`)
    if (Date.now() > deadline) throw new Error(`nothing listening on ${port} after ${timeoutMs} ms`)
    await sleep(20)
  }
}

export function installed (program: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${program}`]).status === 0
}

/** Wait for `warbler ready {...}` on the child's stdout; its ports. */
export function readyPorts (p: Proc, timeoutMs = 30_000): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`warbler not ready after ${timeoutMs / 1000} s: ${p.err()}`)) }, timeoutMs)
    const check = (): void => {
      const m = /^warbler ready (\{.*\})$/m.exec(p.out())
      if (m !== null) { clearTimeout(timer); resolve(JSON.parse(m[1] as string) as Record<string, number>) }
    }
    p.child.stdout?.on('data', check)
    check()
    void p.exited.then(() => { clearTimeout(timer); reject(new Error(`warbler exited before ready: ${p.err()}`)) })
  })
}

/**
 * Flags of `warbler start` that keep the node's protective limits from
 * capping a benchmark (each with why), for the spawn and for the report.
 */
export const GENEROUS_LIMITS: ReadonlyArray<{ flag: string, value: string, why: string }> = [
  { flag: '--publish-rate', value: '0', why: 'no per-client publish rate limit (default 200/s)' },
  { flag: '--conn-rate', value: '0', why: 'no per-address connect rate limit (default 50/s, burst 200)' },
  { flag: '--max-connections', value: '1000000', why: 'connection cap raised (default 50,000)' },
  { flag: '--max-inflight', value: '100000', why: 'publishes routed at once (default 2,000)' },
  { flag: '--offline-queue', value: '100000', why: 'per-session queue (default 1,000)' },
  { flag: '--slow-consumer-bytes', value: String(256 * 1024 * 1024), why: 'unsent bytes before a subscriber counts as slow (default 1 MiB)' },
  { flag: '--drain-timeout', value: '60', why: 'seconds a subscriber may take to drain (default 10)' }
]

export interface WarblerOptions {
  dataDir: string
  bridge: 'embedded' | 'off'
  /** `--workers N`; more than 1 also needs `redis`. */
  workers?: number
  redis?: string
  /** Extra flags (after the generous limits, so they win). */
  extra?: string[]
  /** node flags before the script (e.g. --cpu-prof). */
  nodeArgs?: string[]
  sysInterval?: number
  logLevel?: string
  readyTimeoutMs?: number
  /** An IPC channel to the process (for bench/gc-ipc.ts, see GC_NODE_ARGS). */
  ipc?: boolean
}

export interface Warbler extends Proc {
  ports: Record<string, number>
  port: number
  httpPort: number | null
}

/** `warbler start` on loopback with free ports, auth on (no --dev), the generous limits. */
export async function spawnWarbler (o: WarblerOptions): Promise<Warbler> {
  const args = [...(o.nodeArgs ?? []), CLI, 'start',
    '--host', '127.0.0.1', '--mqtt-port', '0', '--ws-port', '-1', '--http-port', '0', '--data-dir', o.dataDir,
    '--bridge', o.bridge, '--acl', 'readwrite bench/#',
    '--sys-interval', String(o.sysInterval ?? 0), '--log-level', o.logLevel ?? 'warn',
    ...GENEROUS_LIMITS.flatMap((l) => [l.flag, l.value])]
  if (o.redis !== undefined) args.push('--redis', o.redis)
  if (o.workers !== undefined) args.push('--workers', String(o.workers))
  args.push(...(o.extra ?? []))
  const p = track(spawn(process.execPath, args, { stdio: o.ipc === true ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'] }), 20_000)
  try {
    const ports = await readyPorts(p, o.readyTimeoutMs)
    return Object.assign(p, { ports, port: ports.mqtt as number, httpPort: ports.http ?? null })
  } catch (err) {
    await p.stop()
    throw err
  }
}

/** The Mosquitto config of the comparisons: anonymous, no persistence, no cap on queued or in-flight QoS 1. */
export function mosquittoConfig (port: number): string {
  return [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    'persistence false',
    'log_dest none',
    'max_connections -1',
    'max_inflight_messages 0',
    'max_queued_messages 1000000',
    ''
  ].join('\n')
}

export async function spawnMosquitto (dir: string): Promise<Proc & { port: number }> {
  const port = await freePort()
  const conf = path.join(dir, 'mosquitto.conf')
  writeFileSync(conf, mosquittoConfig(port))
  const p = track(spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] }))
  try {
    await waitForPort(port, p.child)
  } catch (err) {
    await p.stop()
    throw new Error(`mosquitto did not start: ${(err as Error).message} ${p.err()}`)
  }
  return Object.assign(p, { port })
}

/** A bare aedes (bench/aedes.ts) on a free loopback port, with `nodeArgs` and an IPC channel. */
export async function spawnAedes (nodeArgs: readonly string[] = GC_NODE_ARGS, timeoutMs = 20_000): Promise<Proc & { port: number }> {
  const p = track(spawn(process.execPath, [...nodeArgs, path.join(HERE, 'aedes.js'), '0'], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] }))
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`not ready after ${timeoutMs / 1000} s`)) }, timeoutMs)
      const check = (): void => {
        const m = /^aedes ready (\{.*\})$/m.exec(p.out())
        if (m !== null) { clearTimeout(timer); resolve((JSON.parse(m[1] as string) as { mqtt: number }).mqtt) }
      }
      p.child.stdout?.on('data', check)
      void p.exited.then(() => { clearTimeout(timer); reject(new Error('exited before ready')) })
      check()
    })
    return Object.assign(p, { port })
  } catch (err) {
    await p.stop()
    throw new Error(`aedes did not start: ${(err as Error).message} ${p.err()}`)
  }
}

/**
 * Full GC in a process spawned with GC_NODE_ARGS and an IPC channel (two
 * passes, see bench/gc-ipc.ts), then its process.memoryUsage(); null if it
 * does not answer within timeoutMs.
 */
export function gcMemory (child: ChildProcess, timeoutMs = 20_000): Promise<NodeJS.MemoryUsage | null> {
  if (child.connected !== true) return Promise.resolve(null)
  return new Promise((resolve) => {
    const done = (m: NodeJS.MemoryUsage | null): void => {
      clearTimeout(timer)
      child.off('message', onMessage)
      child.off('exit', onExit)
      resolve(m)
    }
    const onMessage = (m: { memory?: NodeJS.MemoryUsage }): void => { if (m?.memory !== undefined) done(m.memory) }
    const onExit = (): void => { done(null) }
    const timer = setTimeout(() => { done(null) }, timeoutMs)
    child.on('message', onMessage)
    child.once('exit', onExit)
    child.send({ gc: true }, (err) => { if (err !== null) done(null) })
  })
}

export async function spawnRedis (dir: string): Promise<Proc & { url: string }> {
  const port = await freePort()
  const p = track(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] }))
  try {
    await waitForPort(port, p.child)
  } catch (err) {
    await p.stop()
    throw err
  }
  return Object.assign(p, { url: `redis://127.0.0.1:${port}` })
}

// ---------------------------------------------------------------- /proc

function statFields (file: string): string[] | null {
  try {
    const stat = readFileSync(file, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  } catch {
    return null
  }
}

/** utime + stime of a process (all threads), in ticks; 0 once it is gone. */
export function ticksOf (pid: number): number {
  const f = statFields(`/proc/${pid}/stat`)
  return f === null ? 0 : Number(f[11]) + Number(f[12])
}

/** utime + stime of a process's main thread alone (its event loop, for Node). */
export function mainThreadTicks (pid: number): number {
  const f = statFields(`/proc/${pid}/task/${pid}/stat`)
  return f === null ? 0 : Number(f[11]) + Number(f[12])
}

/** Resident set size in MB; 0 once it is gone. */
export function rssMb (pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? 0 : Number(m[1]) / 1024
  } catch {
    return 0
  }
}

/** The PID and all its descendants (a Warbler primary and its workers). */
export function processTree (pid: number): number[] {
  const parent = new Map<number, number>()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const f = statFields(`/proc/${name}/stat`)
    if (f !== null) parent.set(Number(name), Number(f[1]))
  }
  const out = [pid]
  for (let i = 0; i < out.length && i < 10_000; i++) {
    for (const [child, p] of parent) if (p === out[i] && !out.includes(child)) out.push(child)
  }
  return out
}

export function machine (): Record<string, string | number> {
  let cpu = os.cpus()[0]?.model ?? 'unknown'
  try { cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpu } catch { /* no /proc (not Linux): os.cpus() says it */ }
  const git = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() ?? ''
  const dirty = spawnSync('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).stdout?.trim() !== ''
  const mosq = installed('mosquitto') ? spawnSync('sh', ['-c', 'mosquitto -h 2>&1 | head -1'], { encoding: 'utf8' }).stdout.trim() : 'mosquitto not installed'
  return {
    nproc: os.availableParallelism(),
    cpu,
    ramGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    commit: git + (dirty ? ' (with local changes)' : ''),
    mosquitto: mosq
  }
}

// ---------------------------------------------------------------- statistics

export function median (xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] as number : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}

/** Nearest-rank percentile of sorted values (0 when empty). */
export function percentile (sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}
