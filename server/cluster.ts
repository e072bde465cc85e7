/**
 * `warbler start --workers N` (N > 1): the primary process forks N broker
 * workers with node:cluster. docs/architecture.md explains the design; in
 * short:
 *
 * - Every worker runs `startWarbler` with the same configuration and listens
 *   on the same MQTT and WebSocket ports; node:cluster's primary accepts the
 *   connections and hands them to the workers in turn (round-robin).
 * - The workers share sessions (aedes-persistence-redis) through Redis, and
 *   hand each other their publishes on the local bus (broker/local-bus.ts:
 *   Unix sockets in a private directory the primary makes, mode 0700, and
 *   removes at stop), so a message published on one worker reaches
 *   subscribers on every worker; Redis pub/sub (mq.ts) carries only what
 *   goes to other nodes. A client id that connects to a second worker takes
 *   its session over from the first.
 * - The message service (one authority for seq and storage) runs in worker 0
 *   only, when `bridge` is `embedded`; it gets every worker's
 *   `wb/u/+/out/+` publishes on the local bus. The other workers run with
 *   `--bridge off`. With `serviceProcess: on`, worker 0 is the service's
 *   own process: it joins the bus but listens on no client port, and the
 *   connections go to workers 1..N.
 * - The primary serves the HTTP port itself: /healthz, /readyz (200 while at
 *   least one worker is listening and the node is not stopping), /metrics
 *   (the workers' registries, collected over the cluster IPC channel and
 *   summed with prom-client's aggregator, plus the primary's own worker
 *   figures), and forwards the message service's admin API to worker 0.
 * - The primary prints the one `warbler ready {...}` line once every worker
 *   listens; a worker that dies is restarted with exponential backoff and
 *   logged; SIGTERM/SIGINT stop every worker gracefully (bounded), then the
 *   primary exits 0. Workers exit at once if the primary dies (node:cluster).
 */
/* eslint-disable no-new -- a prom-client metric registers itself with the registry its constructor is given */
import cluster, { type Worker } from 'node:cluster'
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import client, { AggregatorRegistry, Registry } from 'prom-client'

/** One registry's metrics as `getMetricsAsJSON()` gives them. */
type MetricJson = object
import { type Config, readMetricsToken } from '../shared/config.js'
import { createHttpServer } from './ops-http.js'
import { webAppRoutes } from './web-app.js'
import { closeServer, listen } from '../broker/listeners.js'
import { clientAddress, CLIENT_ADDRESS_HEADER, FORWARD_KEY_HEADER } from '../broker/http-address.js'
import type { RecentFailure } from '../broker/login-log.js'
import { EXIT } from '../shared/start-error.js'
import type { Logger } from '../shared/log.js'

/** Messages from a worker to the primary. */
export type FromWorker =
  | { t: 'ready', ports: Record<string, number>, admin: number | null }
  | { t: 'failed', name: string, message: string, exitCode?: number }
  | { t: 'metrics', id: number, data: MetricJson[] }
  // Worker 0 (which serves the admin API) asks for the node's refused logins; each worker answers with its own.
  | { t: 'node-refusals', id: number }
  | { t: 'own-refusals', id: number, rows: RecentFailure[] }

/** Messages from the primary to a worker. */
export type ToWorker = { t: 'stop' } | { t: 'metrics', id: number }
  | { t: 'own-refusals', id: number }
  | { t: 'node-refusals', id: number, rows: RecentFailure[] }

/** Environment of a forked worker: its index and the primary's resolved configuration. */
export const WORKER_ENV = 'WARBLER_CLUSTER_WORKER'
export const CONFIG_ENV = 'WARBLER_CLUSTER_CONFIG'
/** Environment of a forked worker: the node's local bus, as JSON `{ dir, node }`. */
export const BUS_ENV = 'WARBLER_CLUSTER_BUS'
/** Environment of a forked worker: set (to 1) for the message service's own process, which takes no connections. */
export const SERVICE_ENV = 'WARBLER_CLUSTER_SERVICE'
/** Environment of a forked worker: the key with which the primary names a forwarded request's client (broker/http-address.ts). */
export const FORWARD_ENV = 'WARBLER_CLUSTER_FORWARD_KEY'

/** Restart backoff: first delay, doubled per quick death, capped. */
const RESTART_MIN_MS = 250
const RESTART_MAX_MS = 15_000
/** A worker that lived this long resets its backoff. */
const STABLE_MS = 10_000
/** Longest wait at stop for the workers' graceful close, then SIGKILL. */
const STOP_TIMEOUT_MS = 20_000
/** Longest wait for a worker's metrics at a scrape. */
const METRICS_TIMEOUT_MS = 2000
/** Longest wait for all workers at the first start. */
const START_TIMEOUT_MS = 60_000

interface Slot {
  index: number
  worker: Worker | null
  ready: boolean
  startedAt: number
  failures: number
  restart: NodeJS.Timeout | null
  admin: number | null
  /** The message service's own process (serviceProcess on): no client ports. */
  service: boolean
}

export interface ClusterNode {
  readonly ports: Readonly<Record<string, number>>
  close: () => Promise<void>
}

/** A failure at the first start, as the CLI reports it (name: StartError, ConfigError...). */
class WorkerStartError extends Error {
  constructor (name: string, message: string, readonly exitCode?: number) {
    super(message)
    this.name = name
  }
}

/** What the primary keeps about its workers, shared by the steps below. */
interface Primary {
  readonly cfg: Config
  readonly log: Logger
  readonly slots: Slot[]
  /** The local bus' socket directory, the node's id and how many processes join it, for every worker. */
  readonly bus: { dir: string, node: string, count: number }
  /** Scrapes waiting for a worker's metrics, by request id. */
  readonly pending: Map<number, (data: MetricJson[]) => void>
  /** Requests waiting for a worker's refused logins, by request id. */
  readonly pendingRefusals: Map<number, (rows: RecentFailure[]) => void>
  /** Made at start, handed to the workers only: proves a request's client address header came from here. */
  readonly forwardKey: string
  stopping: boolean
  started: boolean
  /** The ports the first ready worker listens on. */
  ports: Record<string, number> | null
  restarts: number
  firstStart: { resolve: () => void, reject: (err: Error) => void } | null
}

/** Fork the worker of a slot, and restart it with backoff when it dies (after the first start). */
function fork (p: Primary, slot: Slot): void {
  const { cfg, log, slots } = p
  const w = cluster.fork({ [WORKER_ENV]: String(slot.index), [CONFIG_ENV]: JSON.stringify(cfg), [BUS_ENV]: JSON.stringify(p.bus), [FORWARD_ENV]: p.forwardKey, ...(slot.service ? { [SERVICE_ENV]: '1' } : {}) })
  slot.worker = w
  slot.ready = false
  slot.admin = null
  slot.startedAt = Date.now()
  log.info('worker started', { worker: slot.index, pid: w.process.pid })
  w.on('message', (m: FromWorker) => {
    if (m.t === 'ready') {
      slot.ready = true
      slot.admin = m.admin
      // The service's own process listens on no client port.
      if (!slot.service) {
        if (p.ports === null) p.ports = m.ports
        else if (JSON.stringify(p.ports) !== JSON.stringify(m.ports)) log.warn('worker listens on other ports than the first', { worker: slot.index, ports: m.ports, first: p.ports })
      }
      if (p.started) log.info('worker ready', { worker: slot.index, pid: w.process.pid })
      if (!p.started && slots.every((s) => s.ready)) p.firstStart?.resolve()
    } else if (m.t === 'failed') {
      if (!p.started) p.firstStart?.reject(new WorkerStartError(m.name, m.message, m.exitCode))
      else log.error('worker failed to start', { worker: slot.index, pid: w.process.pid, error: m.message })
    } else if (m.t === 'metrics') {
      p.pending.get(m.id)?.(m.data)
    } else if (m.t === 'own-refusals') {
      p.pendingRefusals.get(m.id)?.(m.rows)
    } else if (m.t === 'node-refusals') {
      void nodeRefusals(p).then((rows) => { try { w.send({ t: 'node-refusals', id: m.id, rows } satisfies ToWorker) } catch { /* the worker is gone */ } })
    }
  })
  w.on('exit', (code, signal) => {
    if (slot.worker !== w) return
    slot.worker = null
    slot.ready = false
    slot.admin = null
    if (p.stopping) return
    if (!p.started) {
      p.firstStart?.reject(new WorkerStartError('StartError', `worker ${slot.index} exited (code ${String(code)}, signal ${String(signal)}) before it was listening`))
      return
    }
    const lived = Date.now() - slot.startedAt
    slot.failures = lived >= STABLE_MS ? 0 : slot.failures + 1
    const delay = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** Math.max(0, slot.failures - 1))
    p.restarts++
    log.warn('worker exited; restarting it', { worker: slot.index, pid: w.process.pid, code, signal, livedMs: lived, restartInMs: delay })
    slot.restart = setTimeout(() => {
      slot.restart = null
      if (!p.stopping) fork(p, slot)
    }, delay)
  })
}

let nextRefusals = 0
/** How many refused logins the console gets: as many as one process keeps (login-log.ts). */
const RECENT_REFUSALS = 100

/** Every ready worker's refused logins, each row naming its worker, the newest RECENT_REFUSALS, oldest first. */
async function nodeRefusals (p: Primary): Promise<RecentFailure[]> {
  const ask = async (slot: Slot): Promise<RecentFailure[]> => {
    const w = slot.worker
    if (w === null || !slot.ready) return []
    const id = ++nextRefusals
    const rows = await new Promise<RecentFailure[]>((resolve) => {
      const timer = setTimeout(() => { p.pendingRefusals.delete(id); resolve([]) }, METRICS_TIMEOUT_MS)
      p.pendingRefusals.set(id, (r) => { clearTimeout(timer); p.pendingRefusals.delete(id); resolve(r) })
      try { w.send({ t: 'own-refusals', id } satisfies ToWorker) } catch { clearTimeout(timer); p.pendingRefusals.delete(id); resolve([]) }
    })
    return rows.map((r) => ({ ...r, worker: slot.index }))
  }
  const all = (await Promise.all(p.slots.map(ask))).flat()
  return all.sort((a, b) => a.at - b.at).slice(-RECENT_REFUSALS)
}

/** Stop every worker: a graceful stop message, then SIGKILL after STOP_TIMEOUT_MS. */
async function stopWorkers (p: Primary): Promise<void> {
  p.stopping = true
  for (const s of p.slots) {
    if (s.restart !== null) clearTimeout(s.restart)
    s.restart = null
  }
  const live = p.slots.map((s) => s.worker).filter((w): w is Worker => w !== null && w.process.exitCode === null && w.process.signalCode === null)
  await Promise.all(live.map(async (w) => {
    const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()))
    try { w.send({ t: 'stop' } satisfies ToWorker) } catch { w.process.kill('SIGTERM') }
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), STOP_TIMEOUT_MS) })
    if (await Promise.race([exited.then(() => false), late])) {
      p.log.warn('worker did not stop in time; killing it', { pid: w.process.pid })
      w.process.kill('SIGKILL')
      await exited
    }
    clearTimeout(timer)
  }))
}

/** Resolves once every worker listens; rejects (every worker stopped) when one fails or START_TIMEOUT_MS passes. */
async function firstStart (p: Primary): Promise<void> {
  let startTimer: NodeJS.Timeout | undefined
  try {
    await new Promise<void>((resolve, reject) => {
      p.firstStart = { resolve, reject }
      startTimer = setTimeout(() => reject(new WorkerStartError('StartError', `not every worker was listening after ${START_TIMEOUT_MS / 1000} s`, EXIT.startTimeout)), START_TIMEOUT_MS)
    })
  } catch (err) {
    await stopWorkers(p)
    throw err
  } finally {
    clearTimeout(startTimer)
    p.firstStart = null
  }
  p.started = true
}

/** /metrics: the workers' registries, asked over IPC and summed, plus the primary's own worker figures. */
function clusterMetrics (p: Primary): Pick<Registry, 'contentType' | 'metrics'> {
  const { slots } = p
  const own = new Registry()
  const conns = slots.filter((s) => !s.service)
  new client.Gauge({ name: 'warbler_cluster_workers', help: 'Broker workers configured (--workers), the message service\'s own process not counted.', registers: [own], collect () { this.set(conns.length) } })
  new client.Gauge({ name: 'warbler_cluster_workers_ready', help: 'Broker workers listening now.', registers: [own], collect () { this.set(conns.filter((s) => s.ready).length) } })
  new client.Gauge({ name: 'warbler_cluster_service_process', help: '1 when the message service runs in a process of its own (serviceProcess), and that process is ready now; 0 otherwise.', registers: [own], collect () { this.set(slots.some((s) => s.service && s.ready) ? 1 : 0) } })
  let reported = 0
  new client.Counter({
    name: 'warbler_cluster_worker_restarts_total',
    help: 'Broker workers restarted after they died.',
    registers: [own],
    collect () { if (p.restarts > reported) this.inc(p.restarts - reported); reported = p.restarts }
  })

  let nextRequest = 0
  const workerMetrics = async (w: Worker): Promise<MetricJson[] | null> => {
    const id = ++nextRequest
    return await new Promise((resolve) => {
      const timer = setTimeout(() => { p.pending.delete(id); resolve(null) }, METRICS_TIMEOUT_MS)
      p.pending.set(id, (data) => { clearTimeout(timer); p.pending.delete(id); resolve(data) })
      try { w.send({ t: 'metrics', id } satisfies ToWorker) } catch { clearTimeout(timer); p.pending.delete(id); resolve(null) }
    })
  }
  return {
    contentType: own.contentType,
    metrics: async (): Promise<string> => {
      const live = slots.filter((s) => s.ready && s.worker !== null).map((s) => s.worker as Worker)
      const got = (await Promise.all(live.map(workerMetrics))).filter((m): m is MetricJson[] => m !== null)
      const merged = Registry.merge([AggregatorRegistry.aggregate(got), own])
      return await merged.metrics()
    }
  }
}

/**
 * The web app's logins and the message service's admin API live in worker 0:
 * forward to it, naming the client's address (its own, or what a trusted
 * proxy says) with the node's key, so that worker 0 limits logins per client
 * and not all of them as the primary's one loopback address.
 */
function forwardToAdmin (p: Primary): (req: http.IncomingMessage, res: http.ServerResponse) => boolean {
  const trust = { proxies: p.cfg.httpTrustedProxies }
  return (req, res) => {
    const admin = p.slots[0]?.admin ?? null
    if (admin === null) return false
    const headers = { ...req.headers, [CLIENT_ADDRESS_HEADER]: clientAddress(req, trust), [FORWARD_KEY_HEADER]: p.forwardKey }
    const up = http.request({ host: '127.0.0.1', port: admin, method: req.method, path: req.url, headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers)
      r.pipe(res)
    })
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain; charset=utf-8' })
      res.end('the message service did not answer\n')
    })
    req.pipe(up)
    return true
  }
}

export async function startCluster (cfg: Config, log: Logger): Promise<ClusterNode> {
  // The primary alone serves /metrics, so it alone reads the token (workers never see it).
  const metricsToken = cfg.httpPort !== -1 && cfg.metricsTokenFile !== '' ? readMetricsToken(cfg.metricsTokenFile) : undefined
  const workerEntry = fileURLToPath(new URL('./cluster-worker.js', import.meta.url))
  cluster.setupPrimary({ exec: workerEntry, args: [], silent: false })
  // Round-robin hand-off of connections (the default except on Windows; set for clarity).
  cluster.schedulingPolicy = cluster.SCHED_RR

  // With the service in its own process, it is worker 0 (where the admin API is forwarded) and the connections go to workers 1..N.
  const own = cfg.serviceProcess === 'on' ? 1 : 0
  const slots: Slot[] = Array.from({ length: cfg.workers + own }, (_, index) => ({ index, worker: null, ready: false, startedAt: 0, failures: 0, restart: null, admin: null, service: index < own }))
  // mkdtemp makes the directory 0700: only this user reaches the workers' sockets.
  // In the temp dir, not the data dir: a socket path must stay under ~100 bytes.
  const bus = { dir: mkdtempSync(path.join(os.tmpdir(), 'warbler-bus-')), node: randomUUID(), count: slots.length }
  const removeBus = (): void => { rmSync(bus.dir, { recursive: true, force: true }) }
  log.info('local bus between the workers', { dir: bus.dir })
  const p: Primary = { cfg, log, slots, bus, pending: new Map(), pendingRefusals: new Map(), forwardKey: randomBytes(32).toString('base64url'), stopping: false, started: false, ports: null, restarts: 0, firstStart: null }
  for (const s of slots) fork(p, s)
  await firstStart(p).catch((err: unknown) => { removeBus(); throw err })

  // -- the HTTP port ---------------------------------------------------------
  const httpServer = cfg.httpPort !== -1
    ? createHttpServer({ registry: clusterMetrics(p), ...(metricsToken !== undefined ? { metricsToken } : {}), ready: () => !p.stopping && slots.some((s) => s.ready && !s.service), web: webAppRoutes(() => p.ports ?? {}), routes: forwardToAdmin(p) })
    : null
  const allPorts: Record<string, number> = { ...(p.ports ?? {}) }
  if (httpServer !== null) {
    try {
      allPorts.http = await listen(httpServer, cfg.httpPort, cfg.httpListenHost, 'http')
    } catch (err) {
      await stopWorkers(p)
      removeBus()
      throw err
    }
  }

  let closing: Promise<void> | null = null
  return {
    ports: Object.freeze(allPorts),
    close: () => {
      closing ??= (async () => {
        await stopWorkers(p)
        removeBus()
        if (httpServer !== null) await closeServer(httpServer)
      })()
      return closing
    }
  }
}
