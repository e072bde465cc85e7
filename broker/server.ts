/**
 * Start and stop a Warbler node: identity store, aedes with its hooks,
 * persistence, listeners, $SYS and the HTTP port. `startWarbler` resolves
 * once every listener is bound; a failed start releases what it opened.
 *
 * `close()` is idempotent and graceful, in this order:
 * 1. new connections are refused; $SYS stops;
 * 2. clients holding a will are closed first, and close() waits (bounded by
 *    WILL_TIMEOUT_MS) until aedes has published each will: routed to the
 *    subscribers that are still connected, and queued in the persistence for
 *    offline persistent sessions;
 * 3. every other client is closed (aedes); publishes still being routed
 *    get up to DRAIN_TIMEOUT_MS; then the listeners and HTTP close;
 * 4. the persistence is flushed and closed (Redis: QUIT after the commands
 *    already issued), then the identity store (SQLite).
 * Errors aedes emits on the broker (a failing persistence, for one) are
 * logged and never crash the process.
 */
import { readFileSync } from 'node:fs'
import type { Duplex } from 'node:stream'
import type http from 'node:http'
import type { EventEmitter } from 'node:events'
import { Aedes, type Client } from 'aedes'
import { Acl } from './acl.js'
import { Authenticator } from './auth.js'
import { type Config, parseAclRule } from './config.js'
import { PublishGate } from './flow.js'
import { guardConnection } from './guard.js'
import { classifyClientError, createHooks } from './hooks.js'
import { createDeliveryFixes } from './delivery.js'
import { createHttpServer } from './http.js'
import { IdentityCache } from './identity/cache.js'
import { IdentityStore } from './identity/store.js'
import { createListeners, closeServer, type Listener, listen, portOf } from './listeners.js'
import { createLogger, type Logger } from './log.js'
import { createMetrics } from './metrics.js'
import { createSharedRouting, type SharedRouting } from './mq.js'
import { type BrokerPersistence, createPersistence } from './persistence.js'
import { announceService, answerServiceBirth, CLIENTS_TOPIC } from './service-watch.js'
import { Stats } from './stats.js'
import { SYS_ROOT, SysPublisher } from './sys.js'
import { getSession } from './session.js'
import type { Registry } from 'prom-client'
import { clientIdBelongsTo, isValidUsername } from '../sdk/src/protocol.js'
import { adminRoutes } from '../bridge/http.js'
import { registerServiceMetrics, serviceSys } from '../bridge/metrics.js'
import { RedisMirror } from '../bridge/mirror.js'
import { Retention } from '../bridge/retention.js'
import { MessageService } from '../bridge/service.js'
import { attachEmbedded, embeddedTransport } from '../bridge/transport.js'

/** Longest wait for the wills of connected clients at close. */
const WILL_TIMEOUT_MS = 3000

/** Longest wait at close for publishes still being routed. */
const DRAIN_TIMEOUT_MS = 2000

/** ioredis' errors: a command refused by Redis, or given up after reconnect attempts. */
function isRedisError (err: Error): boolean {
  return err.name === 'ReplyError' || err.name === 'MaxRetriesPerRequestError' || err.message === 'Connection is closed.'
}

async function drained (done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
}

/** aedes client internals read at close (not in its typings). */
interface ClientInternals { will?: unknown, _disconnected?: boolean }

export const VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

export interface Warbler {
  /** Bound ports by listener name: mqtt, ws, http, and mqtts/wss with TLS. */
  readonly ports: Readonly<Record<string, number>>
  readonly broker: Aedes
  readonly stats: Stats
  readonly identity: IdentityStore
  readonly log: Logger
  /** The embedded message service; null with `--bridge off`. */
  readonly service: MessageService | null
  /** The current $SYS values (for tests and the admin API). */
  sys: () => Promise<Record<string, string>>
  /** Where this broker publishes its $SYS tree: `$SYS/broker`, or per node and worker with Redis. */
  readonly sysRoot: string
  /** The Prometheus registry /metrics serves (a cluster's primary aggregates the workers'). */
  readonly registry: Registry
  /** The message service's admin HTTP API, when the service runs here. */
  readonly routes?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean
  close: () => Promise<void>
}

export interface StartOptions {
  log?: Logger
  /** This broker's index among the workers of a cluster (`--workers N`); 0 otherwise. */
  worker?: number
}

/**
 * The root of a broker's $SYS tree. Without Redis, `$SYS/broker` (Mosquitto's).
 * With Redis every broker's publishes reach every other broker, so each
 * broker (worker of a node) has its own subtree, under `$SYS/broker/` so the
 * admin rules stay as they are: `$SYS/broker/node/{nodeName}/{worker}`.
 */
export function sysRootOf (cfg: Config, worker: number): string {
  return cfg.redis === '' ? SYS_ROOT : `${SYS_ROOT}/node/${cfg.nodeName}/${worker}`
}

export async function startWarbler (cfg: Config, opts: StartOptions = {}): Promise<Warbler> {
  const log = opts.log ?? createLogger(cfg.logLevel as 'info')
  const stats = new Stats()
  const identity = await IdentityStore.open(cfg.dataDir)
  const cache = new IdentityCache(identity)
  let persistence: BrokerPersistence
  try {
    await cache.start()
    persistence = await createPersistence({ redis: cfg.redis, offlineQueue: cfg.offlineQueue, stats, log })
  } catch (err) {
    cache.stop()
    await identity.close()
    throw err
  }

  let broker: Aedes | undefined
  const getBroker = (): Aedes => broker as Aedes
  const connected = (): number => broker?.connectedClients ?? 0
  const gate = new PublishGate(cfg.maxInflight, () => { stats.backpressureWaits++ })
  const auth = new Authenticator(cfg, cache, stats, log, connected)
  const acl = new Acl(cfg.acl.map(parseAclRule), cfg.dev, cfg.bridge === 'off')
  const hooks = createHooks({ cfg, auth, acl, gate, stats, log, broker: getBroker })

  /** Close what was opened before the broker; for a failed start and the end of close(). */
  const release = async (): Promise<void> => {
    await persistence.close().catch((err: unknown) => { log.error('error closing persistence', { error: String(err) }) })
    cache.stop()
    auth.close()
    await identity.close()
  }

  const { onDisconnect, setIngest: _setIngest, ...aedesHooks } = hooks
  const concurrency = Math.max(100, Math.min(cfg.maxInflight, 1000))
  // With Redis, routing is shared through it too (mq.ts): by workers and nodes.
  let mq: SharedRouting | null = null
  let b: Aedes
  try {
    if (cfg.redis !== '') mq = await createSharedRouting(cfg.redis, { concurrency, log })
    b = await Aedes.createBroker({
      ...aedesHooks,
      persistence: persistence.instance,
      ...(mq !== null ? { mq: mq.instance } : {}),
      drainTimeout: cfg.drainTimeout * 1000,
      // aedes' own ceiling (its matcher throws past 100 levels); hooks.ts
      // enforces cfg.maxTopicLevels with SUBACK 0x80 and a refusal notice.
      maxTopicLevels: 100,
      maxClientsIdLength: 64,
      concurrency
    })
  } catch (err) {
    mq?.instance.close(() => {})
    await release()
    throw err
  }
  broker = b
  // aedes emits 'error' when the persistence fails where no client can be
  // told (queueing for offline sessions, publishing stale wills): log it.
  // Without a listener an 'error' event would crash the process.
  ;(b as EventEmitter).on('error', (err: Error) => {
    log.error('broker error', { error: err.message })
  })
  b.on('clientDisconnect', onDisconnect)
  b.on('clientError', (client, err) => {
    const reason = classifyClientError(err)
    if (reason !== null) stats.refuse(reason)
    // A failing Redis surfaces here too (aedes closes that client): an operator must see it.
    if (isRedisError(err)) log.warn('persistence error; client disconnected', { clientId: client.id, error: err.message })
    else log.debug('client error', { clientId: client.id, error: err.message })
  })
  b.on('connectionError', (client, err) => {
    const reason = classifyClientError(err)
    if (reason !== null) stats.refuse(reason)
    log.debug('connection error', { error: err.message })
  })

  // A message service that starts later learns who is connected here (service-watch.ts).
  const unwatch = mq !== null ? answerServiceBirth(b) : null

  // The message service, embedded (the default): archive, sequence, deliver.
  let service: MessageService | null = null
  let mirror: RedisMirror | undefined
  let detach: (() => Promise<void>) | null = null
  let retention: Retention | null = null
  const closeService = async (): Promise<void> => {
    retention?.stop()
    await detach?.()
    await service?.close()
    await mirror?.close()
  }
  if (cfg.bridge === 'embedded') {
    try {
      mirror = cfg.redis !== '' ? await RedisMirror.connect(cfg.redis, log) : undefined
      service = await MessageService.open({ dataDir: cfg.dataDir, transport: embeddedTransport(b), log, maxPayload: cfg.maxPayload, durability: cfg.durability === 'power' ? 'power' : 'process', ...(mirror !== undefined ? { mirror } : {}) })
    } catch (err) {
      await mirror?.close()
      await new Promise<void>((resolve) => b.close(() => resolve()))
      await release()
      throw err
    }
    const svc = service
    detach = attachEmbedded(b, svc, hooks.setIngest)
    if (mq === null) {
      b.on('clientReady', (client) => {
        const s = getSession(client)
        if (s?.user != null && !s.service) svc.presence(s.user, true)
      })
      b.on('clientDisconnect', (client) => {
        const s = getSession(client)
        if (s?.user != null && !s.service) svc.presence(s.user, false)
      })
    } else {
      // With Redis, clients of every broker (worker, node) count: follow
      // aedes' connect and disconnect notices, as `warbler bridge` does.
      const detachChat = detach
      const detachPresence = followPresence(b, svc, (user) => cache.users.get(user)?.service === true)
      announceService(b)
      detach = async () => { await detachPresence(); await detachChat() }
    }
    retention = new Retention(svc.writer, { days: cfg.retentionDays, messages: cfg.retentionMessages })
  }

  // A removed user or a revoked device token loses its live connections too.
  cache.onReload = () => {
    for (const client of Object.values((b as unknown as { clients: Record<string, Client> }).clients)) {
      const s = getSession(client)
      if (s !== undefined && !client.closed && !auth.stillValid(s)) {
        log.info('connection closed: credential revoked', { user: s.user, clientId: client.id })
        client.close()
      }
    }
  }

  let closing: Promise<void> | null = null
  // CONNACK before any message, and no message lost to aedes' dedupe (delivery.ts).
  const fixDelivery = createDeliveryFixes(b)
  const handle = (conn: Duplex, req?: http.IncomingMessage): void => {
    if (closing !== null) { conn.destroy(); return }
    guardConnection(conn, cfg.maxPacket, stats, log)
    fixDelivery(b.handle(conn, req), conn)
  }
  let listeners: Listener[]
  try {
    listeners = createListeners(cfg, handle)
  } catch (err) {
    await new Promise<void>((resolve) => b.close(() => resolve()))
    await closeService()
    await release()
    throw err
  }

  let ready = false
  const redisReady = persistence.redisReady
  const routing = mq
  const registry = createMetrics({
    stats,
    connected,
    inflight: () => gate.active,
    queued: () => gate.queued,
    ...(cfg.redis !== '' ? { redisConnected: () => (redisReady?.() ?? true) && (routing?.connected() ?? true) && (mirror?.connected ?? true) } : {})
  })
  const svc = service
  if (svc !== null) registerServiceMetrics(registry, svc)
  const routes = svc === null
    ? undefined
    : adminRoutes({ reader: svc.reader, admin: async (token) => { const who = await auth.bearer(token); return who?.admin === true ? who.user : null } })
  const httpServer = cfg.httpPort !== -1 ? createHttpServer({ registry, ready: () => ready && closing === null, ...(routes !== undefined ? { routes } : {}) }) : null
  const sysRoot = sysRootOf(cfg, opts.worker ?? 0)
  const sys = new SysPublisher(b, {
    stats,
    version: VERSION,
    connected,
    offline: () => persistence.countOffline(),
    retainedCount: () => persistence.retainedCount(),
    inflight: () => gate.active,
    extra: () => svc === null ? {} : serviceSys(svc)
  }, cfg.sysInterval, sysRoot)

  const ports: Record<string, number> = {}
  try {
    for (const l of listeners) ports[l.name] = await listen(l.server, portOf(l, cfg), cfg.listenHost)
    if (httpServer !== null) ports.http = await listen(httpServer, cfg.httpPort, cfg.listenHost)
  } catch (err) {
    await Promise.all(listeners.map((l) => l.close()))
    if (httpServer !== null) await closeServer(httpServer)
    await new Promise<void>((resolve) => b.close(() => resolve()))
    await closeService()
    await release()
    throw err
  }
  sys.start()
  retention?.start()
  ready = true

  /**
   * Close the clients that hold a will, while everyone else is still
   * connected, and wait until aedes has published each will (its 'publish'
   * event comes after the will was queued for offline sessions and handed to
   * the connected subscribers).
   */
  const publishWills = async (): Promise<void> => {
    const pending = new Map<unknown, unknown>()
    const clients = (b as unknown as { clients: Record<string, Client> }).clients
    for (const c of Object.values(clients)) {
      const i = c as unknown as ClientInternals
      if (!c.closed && i.will != null && i._disconnected !== true) pending.set(c, i.will)
    }
    if (pending.size === 0) return
    await new Promise<void>((resolve) => {
      const finish = (): void => {
        clearTimeout(timer)
        b.off('publish', onPublish)
        resolve()
      }
      const timer = setTimeout(() => {
        log.warn('wills not all published at close', { pending: pending.size })
        finish()
      }, WILL_TIMEOUT_MS)
      const onPublish = (packet: unknown, client: unknown): void => {
        if (client !== null && pending.get(client) === packet) {
          pending.delete(client)
          if (pending.size === 0) finish()
        }
      }
      b.on('publish', onPublish)
      for (const c of [...pending.keys()]) (c as Client).close()
    })
    // Let the will packets reach the subscribers' sockets before those close.
    await new Promise((resolve) => setImmediate(resolve))
  }

  const close = (): Promise<void> => {
    closing ??= (async () => {
      sys.stop()
      await publishWills()
      // Closes every remaining client.
      await new Promise<void>((resolve) => b.close(() => resolve()))
      // aedes sends a QoS 1 PUBACK before it stores and routes the message;
      // wait (bounded) for publishes still being routed, so their persistence
      // commands are issued before the persistence is flushed and closed.
      await drained(() => gate.active === 0, DRAIN_TIMEOUT_MS)
      // Every send that reached the service is committed before SQLite closes.
      await closeService()
      await unwatch?.()
      await Promise.all(listeners.map((l) => l.close()))
      if (httpServer !== null) await closeServer(httpServer)
      await release()
    })()
    return closing
  }

  return {
    ports: Object.freeze({ ...ports }),
    broker: b,
    stats,
    identity,
    log,
    service: svc,
    sys: () => sys.snapshot(),
    sysRoot,
    registry,
    ...(routes !== undefined ? { routes } : {}),
    close
  }
}

const CLIENT_NOTICE = /^\$SYS\/([^/]+)\/(new|disconnect)\/clients$/

/**
 * Presence from aedes' `$SYS/{broker id}/new|disconnect/clients` notices,
 * which every broker publishes through the shared Redis routing: the clients
 * of every worker and node count. The service account's own connections
 * (`warbler bridge`) do not. A broker that dies without closing its clients
 * (SIGKILL) sends no disconnect notices: its clients' users are taken
 * offline when aedes stops seeing its heartbeats (`brokers` below: three
 * missed heartbeats of aedes' heartbeatInterval).
 */
function followPresence (b: Aedes, svc: MessageService, isService: (user: string) => boolean): () => Promise<void> {
  /** Connected client ids (with their user) by broker id, and when each broker was first noticed. */
  const byBroker = new Map<string, { since: number, clients: Map<string, string> }>()
  const handler = (packet: { topic: string, payload: Buffer | string }, cb: () => void): void => {
    const all = CLIENTS_TOPIC.exec(packet.topic)
    if (all !== null) {
      // A broker's connected clients, sent when this service starts (service-watch.ts).
      let ids: unknown
      try { ids = JSON.parse(packet.payload.toString()) } catch { ids = [] }
      if (Array.isArray(ids)) {
        for (const id of ids) {
          if (typeof id === 'string') handler({ topic: `$SYS/${all[1] as string}/new/clients`, payload: id }, () => {})
        }
      }
      cb()
      return
    }
    const m = CLIENT_NOTICE.exec(packet.topic)
    const id = packet.payload.toString()
    const user = id.split('-')[0] ?? ''
    if (m !== null && isValidUsername(user) && clientIdBelongsTo(id, user) && !isService(user)) {
      const brokerId = m[1] as string
      let entry = byBroker.get(brokerId)
      if (m[2] === 'new') {
        if (entry === undefined) byBroker.set(brokerId, entry = { since: Date.now(), clients: new Map() })
        if (!entry.clients.has(id)) { entry.clients.set(id, user); svc.presence(user, true) }
      } else if (entry?.clients.delete(id) === true) {
        svc.presence(user, false)
      }
    }
    cb()
  }
  const aedes = b as unknown as { brokers: Record<string, number>, id: string, opts: { heartbeatInterval: number } }
  const heartbeat = aedes.opts.heartbeatInterval
  const sweep = setInterval(() => {
    const now = Date.now()
    for (const [brokerId, entry] of byBroker) {
      if (brokerId === aedes.id) continue
      const seen = Math.max(aedes.brokers[brokerId] ?? 0, entry.since)
      if (seen + 3 * heartbeat >= now) continue
      byBroker.delete(brokerId)
      for (const user of entry.clients.values()) svc.presence(user, false)
    }
  }, heartbeat)
  sweep.unref()
  const filters = ['$SYS/+/new/clients', '$SYS/+/disconnect/clients', '$SYS/+/warbler/clients']
  for (const f of filters) b.subscribe(f, handler as never, () => {})
  return async () => {
    clearInterval(sweep)
    await Promise.all(filters.map((f) => new Promise<void>((resolve) => { b.unsubscribe(f, handler as never, () => resolve()) })))
  }
}
