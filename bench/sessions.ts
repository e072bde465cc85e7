/**
 * Idle sessions and the connect rate: memory per idle, authenticated,
 * subscribed MQTT connection, and connections per second, for Warbler (the
 * embedded default, and `--bridge off`), a bare aedes and Mosquitto, in one
 * run on one machine.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/sessions.js [--sizes 5000,19000] [--runs 3] [--concurrency 100]
 *                            [--targets warbler,warbler-off,aedes,mosquitto]
 *                            [--addresses 8] [--settle 3] [--json FILE]
 *                            [--cpu-prof DIR] [--heap-snapshot DIR] [--keep N]
 *
 * A session is what an SDK device holds: an MQTT 3.1.1 connection (clean
 * session, keepalive 60 s) that logs in with a device token
 * (`wbd.<id>.<secret>`; anonymous for aedes and Mosquitto) and subscribes to
 * `wb/u/{user}/inbox` and `wb/d/{clientId}` at QoS 1. Each user has one
 * device. The connections come from a worker thread of this process over raw
 * sockets, spread over the loopback source addresses 127.0.0.2.. (ephemeral
 * ports), at most `concurrency` of them between their CONNECT and SUBACK.
 *
 * Per target, size and run, a fresh broker process: its resident set
 * (VmRSS from /proc) and, for the Node brokers, the V8 heap are read after a
 * full GC (bench/gc-ipc.ts) before and after the sessions are open (after
 * WARMUP sessions, so that one-time costs are not counted); the
 * difference over their count is the memory per session. The connect rate
 * is sessions / (first CONNECT to last SUBACK). Medians over runs.
 *
 * Warbler's users and tokens are written to its database before it starts
 * (the identity cache holds them from then on, so they are in the "before"
 * figure), and its limits that would refuse this load are raised:
 * --max-connections, --conn-rate 0 (per address), --login-failures.
 * `--heap-snapshot DIR` writes V8 heap snapshots of the Node brokers before
 * and after the sessions open (to compare by constructor); `--keep N` holds
 * the sessions N seconds after measuring.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import { hashSecret } from '../broker/identity/store.js'
import { intOption } from './load-worker.js'

const HERE = path.dirname(fileURLToPath(import.meta.url))
const ROOT = path.resolve(HERE, '..', '..')
const CLI = path.join(ROOT, 'dist', 'cli', 'warbler.js')
const GC_IPC = path.join(HERE, 'gc-ipc.js')
const MOSQUITTO = process.env.MOSQUITTO ?? '/usr/sbin/mosquitto'

type Target = 'warbler' | 'warbler-off' | 'aedes' | 'mosquitto'
/** Sessions opened before the first reading (not counted). */
const WARMUP = 200
const TARGETS: readonly Target[] = ['warbler', 'warbler-off', 'aedes', 'mosquitto']

interface Cred { clientId: string, user: string, password: string | null }

// ---------------------------------------------------------------- generator

interface OpenCmd { cmd: 'open', port: number, creds: Cred[], concurrency: number, addresses: number }
interface OpenResult { opened: number, failed: number, ms: number, firstError: string | null }

function varint (n: number): number[] {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return out
}

function mqttString (s: string): Buffer {
  const b = Buffer.from(s, 'utf8')
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 255]), b])
}

function packet (type: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([type, ...varint(body.length)]), body])
}

function connectPacket (c: Cred): Buffer {
  let flags = 0x02 // clean session
  const parts = [mqttString('MQTT'), Buffer.from([4, 0, 0, 60]), mqttString(c.clientId)]
  if (c.password !== null) {
    flags |= 0xc0
    parts.push(mqttString(c.user), mqttString(c.password))
  }
  ;(parts[1] as Buffer)[1] = flags
  return packet(0x10, Buffer.concat(parts))
}

function subscribePacket (c: Cred): Buffer {
  const filters = [`wb/u/${c.user}/inbox`, `wb/d/${c.clientId}`]
  return packet(0x82, Buffer.concat([Buffer.from([0, 1]), ...filters.map((f) => Buffer.concat([mqttString(f), Buffer.from([1])]))]))
}

/** One connection through CONNECT/CONNACK and SUBSCRIBE/SUBACK; resolves when subscribed. */
function openOne (port: number, local: string, c: Cred, sockets: net.Socket[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: local })
    let buf: Buffer = Buffer.alloc(0)
    let state = 0 // 0: waiting for CONNACK, 1: for SUBACK, 2: done
    const timer = setTimeout(() => { fail(new Error('no CONNACK/SUBACK in 30 s')) }, 30_000)
    const fail = (err: Error): void => {
      if (state === 2) return
      state = 2
      clearTimeout(timer)
      socket.destroy()
      reject(err)
    }
    socket.setNoDelay(true)
    socket.on('connect', () => { socket.write(connectPacket(c)) })
    socket.on('error', (err) => { fail(err) })
    socket.on('close', () => { fail(new Error('closed before SUBACK')) })
    const onData = (d: Buffer): void => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d])
      while (buf.length >= 2 && state < 2) {
        const len = buf[1] as number // CONNACK and a 2-filter SUBACK are short
        if (buf.length < 2 + len) return
        const type = (buf[0] as number) >> 4
        const body = buf.subarray(2, 2 + len)
        buf = buf.subarray(2 + len)
        if (state === 0 && type === 2) {
          if (body[1] !== 0) { fail(new Error(`CONNACK ${String(body[1])}`)); return }
          state = 1
          socket.write(subscribePacket(c))
        } else if (state === 1 && type === 9) {
          if (body.subarray(2).includes(0x80)) { fail(new Error('SUBACK refused')); return }
          state = 2
          clearTimeout(timer)
          socket.off('data', onData)
          socket.on('data', () => {}) // idle: whatever comes is dropped
          sockets.push(socket)
          resolve()
        }
      }
    }
    socket.on('data', onData)
  })
}

function runGenerator (): void {
  const port = parentPort
  if (port === null) return
  let sockets: net.Socket[] = []
  // One shared PINGREQ sweep keeps every session inside its keepalive.
  const ping = Buffer.from([0xc0, 0])
  const pinger = setInterval(() => { for (const s of sockets) if (!s.destroyed) s.write(ping) }, 30_000)
  port.on('message', (m: OpenCmd | { cmd: 'close' } | { cmd: 'exit' }) => {
    if (m.cmd === 'open') {
      const started = performance.now()
      let next = 0
      let opened = 0
      let failed = 0
      let firstError: string | null = null
      const lane = async (): Promise<void> => {
        while (next < m.creds.length) {
          const i = next++
          const local = `127.0.0.${2 + (i % m.addresses)}`
          try {
            await openOne(m.port, local, m.creds[i] as Cred, sockets)
            opened++
          } catch (err) {
            failed++
            firstError ??= (err as Error).message
          }
        }
      }
      void Promise.all(Array.from({ length: m.concurrency }, lane)).then(() => {
        const r: OpenResult = { opened, failed, ms: performance.now() - started, firstError }
        port.postMessage(r)
      })
    } else if (m.cmd === 'close') {
      for (const s of sockets) s.destroy()
      sockets = []
      setTimeout(() => port.postMessage({ closed: true }), 500)
    } else {
      clearInterval(pinger)
      port.close()
    }
  })
}

// ---------------------------------------------------------------- brokers

function serveBareAedes (): void {
  void (async () => {
    const { Aedes } = await import('aedes')
    const broker = await Aedes.createBroker()
    const server = net.createServer((conn) => { broker.handle(conn) })
    server.listen(Number(process.env.BARE_AEDES_PORT), '127.0.0.1', () => { process.stdout.write('listening\n') })
    process.on('SIGTERM', () => { broker.close(() => { server.close(() => process.exit(0)) }) })
  })()
}

function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port
      s.close(() => resolve(p))
    })
  })
}

async function waitForPort (port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' })
      s.once('connect', () => { s.destroy(); resolve(true) })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    await sleep(100)
  }
  throw new Error(`nothing listening on ${port} after ${ms} ms`)
}

async function waitReady (port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`)
      if (res.ok) return
    } catch { /* not yet */ }
    await sleep(100)
  }
  throw new Error(`warbler not ready after ${ms} ms`)
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

interface Broker {
  proc: ChildProcess
  port: number
  dir: string | null
  /** Full GC, then the V8 figures (Node brokers only). */
  heap: () => Promise<NodeJS.MemoryUsage | null>
}

/** Users `b{i}` with one device each, `b{i}-d`, logging in with a device token written straight to the store. */
async function seedIdentities (dir: string, n: number): Promise<Cred[]> {
  const { IdentityStore } = await import('../broker/identity/store.js')
  const store = await IdentityStore.open(dir)
  const creds: Cred[] = []
  // One scrypt hash for all (nobody logs in with the password here).
  const hash = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$y9Kx0i5mQ8u1m8kJkzq3r0b0b0b0b0b0b0b0b0b0b0A='
  await store.db.transaction(async () => {
    const addUser = await store.db.prepare('INSERT INTO users(name, password_hash, admin, created_at, service) VALUES (?, ?, 0, ?, 0)')
    const addToken = await store.db.prepare('INSERT INTO device_tokens(id, user, name, secret_hash, created_at) VALUES (?, ?, ?, ?, ?)')
    const now = Date.now()
    for (let i = 0; i < n; i++) {
      const user = `b${i}`
      const id = i.toString(16).padStart(16, '0')
      const secret = randomBytes(32).toString('base64url')
      await addUser.run([user, hash, now])
      await addToken.run([id, user, 'bench', hashSecret(secret), now])
      creds.push({ clientId: `${user}-d`, user, password: `wbd.${id}.${secret}` })
    }
  })
  await store.close()
  return creds
}

function anonymousCreds (n: number): Cred[] {
  return Array.from({ length: n }, (_, i) => ({ clientId: `b${i}-d`, user: `b${i}`, password: null }))
}

function nodeArgs (opts: Options, name: string): string[] {
  const args = ['--expose-gc', '--import', GC_IPC, '--heapsnapshot-signal=SIGUSR2']
  if (opts.cpuProf !== null) args.push('--cpu-prof', '--cpu-prof-dir', opts.cpuProf, '--cpu-prof-name', `${name}-${Date.now()}.cpuprofile`)
  return args
}

function heapOf (proc: ChildProcess): () => Promise<NodeJS.MemoryUsage | null> {
  return () => new Promise((resolve) => {
    const timer = setTimeout(() => { proc.off('message', onMessage); resolve(null) }, 20_000)
    const onMessage = (m: { memory?: NodeJS.MemoryUsage }): void => {
      if (m.memory === undefined) return
      clearTimeout(timer)
      proc.off('message', onMessage)
      resolve(m.memory)
    }
    proc.on('message', onMessage)
    proc.send({ gc: true })
  })
}

async function startBroker (target: Target, opts: Options, creds: { n: number }): Promise<{ broker: Broker, creds: Cred[] }> {
  const port = await freePort()
  const stdio: Array<'ignore' | 'inherit' | 'ipc'> = ['ignore', 'ignore', 'inherit', 'ipc']
  if (target === 'mosquitto') {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'warbler-sessions-'))
    const conf = path.join(dir, 'mosquitto.conf')
    writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\npersistence false\nlog_dest none\n`)
    const proc = spawn(MOSQUITTO, ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] })
    await waitForPort(port, 10_000)
    return { broker: { proc, port, dir, heap: async () => null }, creds: anonymousCreds(creds.n) }
  }
  if (target === 'aedes') {
    const proc = spawn(process.execPath, [...nodeArgs(opts, 'aedes'), fileURLToPath(import.meta.url), '--serve-aedes'], { stdio, cwd: opts.heapSnapshot ?? os.tmpdir(), env: { ...process.env, BARE_AEDES_PORT: String(port) } })
    await waitForPort(port, 10_000)
    return { broker: { proc, port, dir: null, heap: heapOf(proc) }, creds: anonymousCreds(creds.n) }
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), 'warbler-sessions-'))
  const seeded = await seedIdentities(dir, creds.n)
  const http = await freePort()
  const args = [
    ...nodeArgs(opts, target), CLI, 'start', '--data-dir', dir, '--host', '127.0.0.1',
    '--mqtt-port', String(port), '--ws-port', '-1', '--http-port', String(http),
    '--max-connections', String(creds.n + 1000), '--conn-rate', '0', '--login-failures', '1000000',
    ...(target === 'warbler-off' ? ['--bridge', 'off'] : [])
  ]
  const proc = spawn(process.execPath, args, { stdio, cwd: opts.heapSnapshot ?? os.tmpdir() })
  await waitReady(http, 30_000)
  return { broker: { proc, port, dir, heap: heapOf(proc) }, creds: seeded }
}

async function stopBroker (b: Broker): Promise<void> {
  if (b.proc.exitCode === null) {
    const exited = new Promise<void>((resolve) => b.proc.once('exit', () => resolve()))
    b.proc.kill('SIGTERM')
    await Promise.race([exited, sleep(20_000)])
    if (b.proc.exitCode === null) b.proc.kill('SIGKILL')
  }
  if (b.dir !== null) rmSync(b.dir, { recursive: true, force: true })
}

/** CPU time (user + system) of a process so far, in seconds. */
function cpuOf (pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / 100 // utime, stime in USER_HZ ticks
}

function rssOf (pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m === null ? NaN : Number(m[1]) * 1024
}

// ---------------------------------------------------------------- orchestration

interface Options {
  sizes: number[]
  runs: number
  concurrency: number
  addresses: number
  settle: number
  targets: Target[]
  json: string | null
  cpuProf: string | null
  heapSnapshot: string | null
  keep: number
}

function parseOptions (argv: string[]): Options {
  const o: Options = { sizes: [5000, 19000], runs: 3, concurrency: 100, addresses: 8, settle: 3, targets: [...TARGETS], json: null, cpuProf: null, heapSnapshot: null, keep: 0 }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string
    const v = argv[i + 1]
    i++
    if (a === '--sizes') o.sizes = (v ?? '').split(',').map((s) => intOption('--sizes', s, 1, 60_000))
    else if (a === '--runs') o.runs = intOption(a, v, 1, 20)
    else if (a === '--concurrency') o.concurrency = intOption(a, v, 1, 5000)
    else if (a === '--addresses') o.addresses = intOption(a, v, 1, 250)
    else if (a === '--settle') o.settle = intOption(a, v, 0, 120)
    else if (a === '--keep') o.keep = intOption(a, v, 0, 3600)
    else if (a === '--targets') {
      o.targets = (v ?? '').split(',') as Target[]
      for (const t of o.targets) if (!TARGETS.includes(t)) throw new Error(`--targets: unknown ${t} (${TARGETS.join(', ')})`)
    } else if (a === '--json') o.json = v ?? null
    else if (a === '--cpu-prof') o.cpuProf = v ?? null
    else if (a === '--heap-snapshot') o.heapSnapshot = v ?? null
    else throw new Error(`unknown option ${a}`)
  }
  return o
}

interface Sample {
  target: Target
  size: number
  run: number
  /** Resident bytes per session. */
  rssPerSession: number
  /** V8 heap bytes per session (Node brokers). */
  heapPerSession: number | null
  /** Memory outside the V8 heap per session: external + array buffers (Node brokers). */
  externalPerSession: number | null
  connectsPerSecond: number
  /** Broker CPU seconds (user + system) per session opened. */
  cpuPerConnect: number
  rssBefore: number
  rssAfter: number
  failed: number
}

class Generator {
  private readonly worker = new Worker(fileURLToPath(import.meta.url), { workerData: { generator: true } })
  call<T> (msg: unknown, ms: number): Promise<T> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.worker.off('message', onMessage); reject(new Error('generator timed out')) }, ms)
      const onMessage = (m: T): void => { clearTimeout(timer); this.worker.off('message', onMessage); resolve(m) }
      this.worker.on('message', onMessage)
      this.worker.postMessage(msg)
    })
  }

  async exit (): Promise<void> {
    this.worker.postMessage({ cmd: 'exit' })
    await this.worker.terminate()
  }
}

async function measure (gen: Generator, target: Target, size: number, run: number, opts: Options): Promise<Sample> {
  const { broker, creds } = await startBroker(target, opts, { n: WARMUP + size })
  try {
    // Warm-up sessions first: one-time costs (code, caches such as
    // mqtt-packet's 64 Ki number buffers built at the first write) are not per session.
    await gen.call<OpenResult>({ cmd: 'open', port: broker.port, creds: creds.slice(0, WARMUP), concurrency: opts.concurrency, addresses: opts.addresses } satisfies OpenCmd, 60_000)
    await sleep(opts.settle * 1000)
    const heap0 = await broker.heap()
    await snapshot(broker, opts)
    await sleep(500)
    const rss0 = rssOf(broker.proc.pid as number)
    const cpu0 = cpuOf(broker.proc.pid as number)
    const r = await gen.call<OpenResult>({ cmd: 'open', port: broker.port, creds: creds.slice(WARMUP), concurrency: opts.concurrency, addresses: opts.addresses } satisfies OpenCmd, 600_000)
    const cpu = cpuOf(broker.proc.pid as number) - cpu0
    if (r.failed > 0) process.stderr.write(`${target} ${size}: ${r.failed} failed (${String(r.firstError)})\n`)
    await sleep(opts.settle * 1000)
    const heap1 = await broker.heap()
    await snapshot(broker, opts)
    await sleep(500)
    const rss1 = rssOf(broker.proc.pid as number)
    if (opts.keep > 0) {
      process.stderr.write(`holding ${r.opened} sessions on ${target} (pid ${String(broker.proc.pid)}) for ${opts.keep} s\n`)
      await sleep(opts.keep * 1000)
    }
    const n = Math.max(1, r.opened)
    const per = (a: number | undefined, b: number | undefined): number | null => a === undefined || b === undefined ? null : (b - a) / n
    const sample: Sample = {
      target,
      size,
      run,
      rssPerSession: (rss1 - rss0) / n,
      heapPerSession: per(heap0?.heapUsed, heap1?.heapUsed),
      externalPerSession: heap0 === null || heap1 === null ? null : ((heap1.external - heap0.external) / n),
      connectsPerSecond: r.opened / (r.ms / 1000),
      cpuPerConnect: cpu / n,
      rssBefore: rss0,
      rssAfter: rss1,
      failed: r.failed
    }
    process.stderr.write(`${JSON.stringify(sample)}\n`)
    await gen.call({ cmd: 'close' }, 60_000)
    return sample
  } finally {
    await stopBroker(broker)
  }
}

/** A heap snapshot of a Node broker (SIGUSR2, --heapsnapshot-signal), waited for. */
async function snapshot (b: Broker, opts: Options): Promise<void> {
  const dir = opts.heapSnapshot
  if (dir === null || b.proc.spawnfile !== process.execPath) return
  const count = (): number => readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot')).length
  const before = count()
  b.proc.kill('SIGUSR2')
  for (let i = 0; i < 600 && count() === before; i++) await sleep(100)
  await sleep(3000) // the file appears before it is complete
}

function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m] as number : ((s[m - 1] as number) + (s[m] as number)) / 2
}

const kb = (b: number | null): string => b === null ? '–' : (b / 1024).toFixed(1)

async function main (): Promise<void> {
  const opts = parseOptions(process.argv.slice(2))
  const gen = new Generator()
  const samples: Sample[] = []
  try {
    for (const size of opts.sizes) {
      for (let run = 1; run <= opts.runs; run++) {
        for (const target of opts.targets) samples.push(await measure(gen, target, size, run, opts))
      }
    }
  } finally {
    await gen.exit()
  }
  const lines = [
    `Node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), ${opts.runs} run(s), concurrency ${opts.concurrency}; medians.`,
    '',
    '| target | sessions | RSS KB/session | heap KB/session | external KB/session | connects/s | vs Mosquitto | broker CPU µs/connect |',
    '|---|---:|---:|---:|---:|---:|---:|---:|'
  ]
  for (const size of opts.sizes) {
    const mosq = samples.filter((s) => s.size === size && s.target === 'mosquitto')
    for (const target of opts.targets) {
      const ss = samples.filter((s) => s.size === size && s.target === target)
      const rate = median(ss.map((s) => s.connectsPerSecond))
      // Ratio of each run to Mosquitto in the same run, then the median.
      const ratios = ss.flatMap((s) => {
        const m = mosq.find((x) => x.run === s.run)
        return m === undefined ? [] : [s.connectsPerSecond / m.connectsPerSecond]
      })
      const heaps = ss.flatMap((s) => s.heapPerSession === null ? [] : [s.heapPerSession])
      const ext = ss.flatMap((s) => s.externalPerSession === null ? [] : [s.externalPerSession])
      lines.push(`| ${target} | ${size} | ${kb(median(ss.map((s) => s.rssPerSession)))} | ${heaps.length > 0 ? kb(median(heaps)) : '–'} | ${ext.length > 0 ? kb(median(ext)) : '–'} | ${rate.toFixed(0)} | ${ratios.length > 0 ? median(ratios).toFixed(2) + 'x' : '–'} | ${(median(ss.map((s) => s.cpuPerConnect)) * 1e6).toFixed(0)} |`)
    }
  }
  process.stdout.write(lines.join('\n') + '\n')
  if (opts.json !== null) writeFileSync(opts.json, JSON.stringify({ node: process.version, opts, samples }, null, 2))
}

if (!isMainThread && (workerData as { generator?: boolean } | null)?.generator === true) runGenerator()
else if (process.argv.includes('--serve-aedes')) serveBareAedes()
else {
  main().catch((err: unknown) => {
    process.stderr.write(`${String((err as Error).stack ?? err)}\n`)
    process.exitCode = 1
  })
}
