/**
 * The entry point of one broker worker of `warbler start --workers N`
 * (cluster.ts forks it). It runs `startWarbler` with the primary's resolved
 * configuration, except:
 * - no HTTP port of its own (the primary serves /readyz and /metrics, and
 *   asks each worker for its metrics over the IPC channel);
 * - the message service only in worker 0 (`bridge: off` elsewhere); worker 0
 *   serves the service's admin API on a private loopback port that the
 *   primary forwards to;
 * - with `serviceProcess: on`, worker 0 listens on no client port (the
 *   service's own process, reached on the local bus).
 * It never writes to stdout (the primary prints the ready line); logs carry
 * `worker: N`. It stops gracefully on the primary's stop message, or on
 * SIGTERM/SIGINT (the primary then restarts it unless the node is
 * stopping), and exits at once if the primary dies (node:cluster).
 */
import cluster from 'node:cluster'
import { rmSync } from 'node:fs'
import type http from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Config } from '../shared/config.js'
import { BUS_ENV, CONFIG_ENV, FORWARD_ENV, type FromWorker, SERVICE_ENV, type ToWorker, WORKER_ENV } from './cluster.js'
import type { RecentFailure } from '../broker/login-log.js'
import { createHttpServer } from './ops-http.js'
import { createLogger, type Level, type Logger } from '../shared/log.js'
import { startWarbler, type Warbler } from './node.js'

function send (m: FromWorker, then?: () => void): void {
  process.send?.(m, undefined, undefined, () => then?.())
}

function withWorker (log: Logger, worker: number): Logger {
  const add = (f: (msg: string, fields?: Record<string, unknown>) => void) => (msg: string, fields?: Record<string, unknown>) => f(msg, { worker, ...fields })
  return { error: add(log.error), warn: add(log.warn), info: add(log.info), debug: add(log.debug) }
}

async function main (): Promise<void> {
  if (!cluster.isWorker) throw new Error('cluster-worker.js runs only as a worker of `warbler start --workers N`')
  const index = Number(process.env[WORKER_ENV])
  const base = JSON.parse(process.env[CONFIG_ENV] ?? '{}') as Config
  const log = withWorker(createLogger(base.logLevel as Level), index)
  // The message service's own process (serviceProcess on) listens on no client port: it is reached on the local bus only.
  const service = process.env[SERVICE_ENV] === '1'
  const cfg: Config = Object.freeze({ ...base, httpPort: -1, bridge: index === 0 ? base.bridge : 'off', ...(service ? { mqttPort: -1, wsPort: -1, mqttsPort: -1, wssPort: -1 } : {}) })

  let node: Warbler | null = null
  let admin: http.Server | null = null
  let stopping: Promise<void> | null = null
  const stop = (why: string): void => {
    stopping ??= (async () => {
      log.info('worker stopping', { reason: why })
      if (node === null) process.exit(0)
      await node.close().catch((err: unknown) => { log.error('error while stopping', { error: String(err) }) })
      if (admin !== null) await new Promise<void>((resolve) => (admin as http.Server).close(() => resolve()))
      process.exit(0)
    })()
  }
  const askedRefusals = new Map<number, (rows: RecentFailure[]) => void>()
  let nextAsk = 0
  /** The node's refused logins, every worker's, gathered by the primary (for the admin API worker 0 serves). */
  const refusals = async (): Promise<RecentFailure[]> => await new Promise((resolve) => {
    const id = ++nextAsk
    const timer = setTimeout(() => { askedRefusals.delete(id); resolve(node?.recentFailures() ?? []) }, 5000)
    askedRefusals.set(id, (rows) => { clearTimeout(timer); askedRefusals.delete(id); resolve(rows) })
    send({ t: 'node-refusals', id })
  })
  process.on('message', (m: ToWorker) => {
    if (m.t === 'stop') stop('stop')
    else if (m.t === 'own-refusals') send({ t: 'own-refusals', id: m.id, rows: node?.recentFailures() ?? [] })
    else if (m.t === 'node-refusals') askedRefusals.get(m.id)?.(m.rows)
    else if (m.t === 'metrics' && node !== null) {
      node.registry.getMetricsAsJSON().then((data) => { send({ t: 'metrics', id: m.id, data }) }, () => { send({ t: 'metrics', id: m.id, data: [] }) })
    }
  })
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))

  try {
    const bus = JSON.parse(process.env[BUS_ENV] ?? 'null') as { dir: string, node: string, count: number } | null
    // A primary killed outright cannot remove the bus' directory; its workers exit with it (the IPC channel gone) and do.
    process.on('exit', () => {
      if (bus !== null && !process.connected) try { rmSync(bus.dir, { recursive: true, force: true }) } catch { /* a sibling removed it */ }
    })
    const forwardKey = process.env[FORWARD_ENV]
    node = await startWarbler(cfg, { log, worker: index, refusals, ...(forwardKey !== undefined ? { forwardKey } : {}), ...(bus !== null ? { bus } : {}) })
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err))
    log.debug('worker failed to start', { error: e.stack ?? e.message })
    const exitCode = (e as Error & { exitCode?: unknown }).exitCode
    send({ t: 'failed', name: e.name, message: e.message, ...(typeof exitCode === 'number' ? { exitCode } : {}) }, () => process.exit(1))
    return
  }
  if (stopping !== null) return
  if (node.routes !== undefined && index === 0) {
    // The web app's logins and the admin API, for the primary only (it forwards them to worker 0): loopback, a port of its own (not shared through the cluster).
    // No /metrics here: the primary collects them over IPC, and this port has no metrics token.
    const routes = node.routes
    admin = createHttpServer({ ready: () => stopping === null, routes })
    const srv = admin
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject)
      srv.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => resolve())
    })
  }
  send({ t: 'ready', ports: { ...node.ports }, admin: admin === null ? null : (admin.address() as AddressInfo).port })
}

main().catch((err: unknown) => {
  process.stderr.write(`warbler worker: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exit(1)
})
