/**
 * Start and stop a Warbler node: identity store, aedes with its hooks,
 * persistence, listeners, $SYS and the HTTP port. `startWarbler` resolves
 * once every listener is bound; a failed start releases what it opened.
 * The embedded message service is wired in embedded-service.ts.
 *
 * `close()` is idempotent and graceful: new connections are refused at
 * once, then shutdown.ts closes the rest in its order (wills first, then
 * the other clients, the service, the listeners, the persistence).
 * Errors aedes emits on the broker (a failing persistence, for one) are
 * logged and never crash the process.
 */
import { dropGhostRegistrations } from '../broker/connect-race.js'
import { followSessionsElsewhere } from '../broker/session-handover.js'
import { readFileSync } from 'node:fs'
import type { Duplex } from 'node:stream'
import type http from 'node:http'
import type { EventEmitter } from 'node:events'
import { Aedes } from 'aedes'
import { Acl } from '../broker/acl.js'
import { connackErrorCode, connectedClients } from '../broker/aedes-internals.js'
import { Authenticator } from '../broker/auth.js'
import { type Config, parseAclRule, readMetricsToken } from '../shared/config.js'
import { PublishGate } from '../broker/flow.js'
import { sayKeepAliveTimeout } from '../broker/reason-codes.js'
import { guardConnection } from '../broker/guard.js'
import { classifyClientError, createHooks } from '../broker/hooks/create-hooks.js'
import { createAedesFixes } from '../broker/aedes-fixes.js'
import { createPubackAfterPublish } from '../broker/puback-after-publish.js'
import { createDeliveryFixes } from '../broker/delivery.js'
import { createReceiveWindow } from '../broker/receive-window.js'
import { sayTakeoverAcrossBrokers } from '../broker/takeover-notice.js'
import { createUnspecifiedSubacks } from '../broker/unspecified-refusals.js'
import { type EmbeddedDeps, type EmbeddedService, startEmbeddedService } from './embedded-service.js'
import { createHttpServer } from './ops-http.js'
import { webAppRoutes } from './web-app.js'
import { IdentityCache } from '../broker/identity/cache.js'
import { IdentityStore, passwordFingerprint } from '../broker/identity/identity-store.js'
import { type IdentityReplica, startIdentityReplica } from '../broker/identity/identity-replica.js'
import { createListeners, closeServer, type Listener, listen, portOf } from '../broker/listeners.js'
import { HEARTBEAT_MS } from '../shared/heartbeat.js'
import { createLogger, type Logger } from '../shared/log.js'
import { logConnections, markClose, type RecentFailure } from '../broker/login-log.js'
import { createMetrics, registerInterestMetrics, registerRoutingMetrics, routingSys } from '../broker/metrics.js'
import { BUS_FRAME_HEADROOM, createSharedRouting, type SharedRouting } from '../broker/mq.js'
import type { InboundQos2 } from '../broker/inbound-qos2.js'
import { type BrokerPersistence, createPersistence } from '../broker/persistence.js'
import { answerServiceBirth } from '../broker/service-watch.js'
import { closeBroker, shutdown } from './shutdown.js'
import { Stats } from '../broker/stats.js'
import { SYS_ROOT, SysPublisher } from '../broker/sys.js'
import { getSession } from '../broker/session.js'
import type { Registry } from 'prom-client'
import { adminRoutes } from '../bridge/admin-api.js'
import { adminIdentityRoutes } from './admin-routes.js'
import { openWebLogins, type WebLogins } from '../broker/identity/web-logins.js'
import { webSessionRoutes } from '../broker/web-session.js'
import { clientAddress } from '../broker/http-address.js'
import { registerServiceMetrics, serviceSys } from '../bridge/service-metrics.js'
import type { MessageService } from '../bridge/service.js'

/** ioredis' errors: a command refused by Redis, or given up after reconnect attempts. */
function isRedisError (err: Error): boolean {
  return err.name === 'ReplyError' || err.name === 'MaxRetriesPerRequestError' || err.message === 'Connection is closed.'
}

/**
 * Connections closed before MQTT (no valid PROXY protocol header): logged as
 * a warning, at most one line every 10 s with how many more there were, so a
 * misconfigured proxy or a scanner does not flood the log.
 */
function refusedBeforeMqtt (log: Logger): (peer: string, reason: string) => void {
  let last = 0
  let more = 0
  return (peer, reason) => {
    const now = Date.now()
    if (now - last < 10_000) { more++; return }
    log.warn('connection closed before MQTT', { peer, reason, ...(more > 0 ? { alsoClosedSinceLastLine: more } : {}) })
    last = now
    more = 0
  }
}

const VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

export interface Warbler {
  /** Bound ports by listener name: mqtt, ws, http, and mqtts/wss with TLS. */
  readonly ports: Readonly<Record<string, number>>
  readonly broker: Aedes
  readonly stats: Stats
  /** The inbound QoS 2 packets each client id holds (for tests). */
  readonly inbound: InboundQos2
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
  /** This process's last refused logins, oldest first (a cluster's primary gathers every worker's). */
  recentFailures: () => RecentFailure[]
  /** The web app's login routes, and the message service's admin HTTP API when the service runs here. */
  readonly routes?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean
  close: () => Promise<void>
}

export interface StartOptions {
  log?: Logger
  /** This broker's index among the workers of a cluster (`--workers N`); 0 otherwise. */
  worker?: number
  /** The node's local bus between its workers (cluster.ts): the socket directory, the node's id, and how many processes join it. */
  bus?: { dir: string, node: string, count: number }
  /** The node's refused logins for the admin API, when more processes than this one refuse them (a cluster's workers). */
  refusals?: () => Promise<RecentFailure[]>
  /** The key with which a cluster's primary names the client address of the logins it forwards (http-address.ts). */
  forwardKey?: string
}

/**
 * The root of a broker's $SYS tree. Without Redis, `$SYS/broker` (Mosquitto's).
 * With Redis every broker's publishes reach every other broker, so each
 * broker (worker of a node) has its own subtree, under `$SYS/broker/` so the
 * admin rules stay as they are: `$SYS/broker/node/{nodeName}/{worker}`.
 */
function sysRootOf (cfg: Config, worker: number): string {
  return cfg.redis === '' ? SYS_ROOT : `${SYS_ROOT}/node/${cfg.nodeName}/${worker}`
}

interface Stores { identity: IdentityStore, cache: IdentityCache, replica: IdentityReplica | null, logins: WebLogins, persistence: BrokerPersistence }

/**
 * The identity store (shared with the other nodes through Redis when there is
 * one: identity-replica.ts, run by worker 0 alone, the others reading the same
 * file), its cache, the web app's logins (this node's, or shared through Redis) and the
 * MQTT persistence, opened in that order; a failure closes what was opened.
 */
async function openStores (cfg: Config, stats: Stats, log: Logger, worker: number): Promise<Stores> {
  const identity = await IdentityStore.open(cfg.dataDir)
  const cache = new IdentityCache(identity)
  let replica: IdentityReplica | null = null
  let logins: WebLogins | undefined
  try {
    // Merged before the cache's first load: the first login already sees the other nodes' users.
    if (cfg.redis !== '' && worker === 0) replica = await startIdentityReplica(cfg.dataDir, cfg.redis, log)
    await cache.start()
    // A shared web login ends with its user's password, wherever it was changed: its fingerprint is checked at each refresh.
    logins = await openWebLogins(cfg.redis, identity.db, log, (user) => {
      const u = cache.users.get(user)
      return u === undefined || u.disabled ? undefined : passwordFingerprint(u.passwordHash)
    })
    const persistence = await createPersistence({ redis: cfg.redis, offlineQueue: cfg.offlineQueue, stats, log })
    return { identity, cache, replica, logins, persistence }
  } catch (err) {
    await logins?.close()
    cache.stop()
    await replica?.close()
    await identity.close()
    throw err
  }
}

/** aedes on the persistence, with routing shared through Redis when there is one (mq.ts: by workers and nodes). */
async function createBroker (cfg: Config, hooks: Omit<ReturnType<typeof createHooks>, 'onDisconnect' | 'setIngest'>, persistence: BrokerPersistence, log: Logger, opts: StartOptions): Promise<{ b: Aedes, mq: SharedRouting | null }> {
  const concurrency = Math.max(100, Math.min(cfg.maxInflight, 1000))
  let mq: SharedRouting | null = null
  // A frame carries one publish: the largest a client may send, with room for what the message service wraps around it.
  const bus = opts.bus === undefined ? undefined : { ...opts.bus, index: opts.worker ?? 0, maxFrame: cfg.maxPacket + BUS_FRAME_HEADROOM, serve: cfg.bridge === 'embedded' }
  try {
    if (cfg.redis !== '') mq = await createSharedRouting(cfg.redis, { concurrency, log, ...(bus !== undefined ? { bus } : {}) })
    // Before aedes adds its own listener, which closes a client taken over elsewhere without a word.
    const made: { b?: Aedes } = {}
    if (mq !== null) sayTakeoverAcrossBrokers(mq.instance, () => made.b)
    const b = await Aedes.createBroker({
      ...hooks,
      persistence: persistence.instance,
      ...(mq !== null ? { mq: mq.instance } : {}),
      drainTimeout: cfg.drainTimeout * 1000,
      // aedes' own ceiling (its matcher throws past 100 levels); the hooks (broker/hooks/)
      // enforces cfg.maxTopicLevels with SUBACK 0x80 and a refusal notice.
      maxTopicLevels: 100,
      maxClientsIdLength: 64,
      // MQTT 5: aedes resolves an alias to its topic before authorizePublish,
      // so the hooks judge every publish by its real topic (test/broker/mqtt5.test.ts).
      topicAliasMaximum: cfg.topicAliasMaximum,
      // MQTT 5 CONNACK: what the broker takes. The packet guard (guard.ts)
      // refuses a larger packet before aedes reads it; the publish hook
      // enforces the Receive Maximum (aedes only advertises it); aedes clamps
      // the Session Expiry Interval and says so.
      maximumPacketSize: cfg.maxPacket,
      receiveMaximum: cfg.maxInflightInbound,
      sessionExpiryIntervalLimit: cfg.maxSessionExpiry,
      // Each disconnected session waiting for its expiry (and each delayed will)
      // keeps its aedes Client in memory: without a count cap, a flood of
      // clients cycling ids with long expiries pins memory for up to
      // maxSessionExpiry. Past it aedes ends the newest one at once.
      pendingSessionsLimit: cfg.maxPendingSessions,
      // Dead brokers' clients go offline, and their wills out, within 30 s (heartbeat.ts).
      heartbeatInterval: HEARTBEAT_MS,
      concurrency
    })
    made.b = b
    return { b, mq }
  } catch (err) {
    mq?.instance.close(() => {})
    throw err
  }
}

/**
 * What the embedded service can know of the other brokers' readers: other
 * nodes' brokers cannot be seen from here; sibling workers can, once each
 * told what its clients read (broker/sibling-readers.ts).
 */
function routingView (mq: SharedRouting | null, cfg: Config): Pick<EmbeddedDeps, 'shared' | 'crowded' | 'othersRead'> {
  const readers = mq?.readers ?? null
  return {
    shared: mq !== null,
    crowded: () => mq !== null && (mq.elsewhere() > 0 || (readers === null ? cfg.workers > 1 || cfg.serviceProcess === 'on' : !readers.complete())),
    ...(readers !== null ? { othersRead: (topic: string) => readers.reads(topic) } : {})
  }
}

/** What the broker reports about itself and its clients: logged, counted, never a crash. */
function watchBroker (b: Aedes, onDisconnect: ReturnType<typeof createHooks>['onDisconnect'], stats: Stats, log: Logger, closing: () => boolean): void {
  // aedes emits 'error' when the persistence fails where no client can be
  // told (queueing for offline sessions, publishing stale wills): log it.
  // Without a listener an 'error' event would crash the process.
  ;(b as EventEmitter).on('error', (err: Error) => {
    log.error('broker error', { error: err.message })
  })
  b.on('clientDisconnect', onDisconnect)
  b.on('sessionLimitReached', (_client: unknown, info: { reason?: string }) => {
    stats.capped(info.reason === 'willDelay' ? 'delayed_wills' : 'pending_sessions')
  })
  sayKeepAliveTimeout(b)
  dropGhostRegistrations(b, (clientId) => { log.debug('dropped a client that closed while it connected', { clientId }) })
  // MQTT 5 session expiry and will delay when the id reconnects to another worker or node (session-handover.ts).
  followSessionsElsewhere(b, (err) => { log.error('broker error', { error: err.message }) })
  logConnections(b, log, closing)
  b.on('clientError', (client, err) => {
    const reason = classifyClientError(err)
    if (reason !== null) stats.refuse(reason)
    // A refused CONNECT (aedes sets its CONNACK code): auth.ts logged why, with what may be logged of its client id.
    if (reason === null && connackErrorCode(err) !== undefined && getSession(client) === undefined) return
    markClose(client, reason === 'malformed_packet' ? 'malformed packet' : 'error', err.message)
    // A failing Redis surfaces here too (aedes closes that client): an operator must see it.
    if (isRedisError(err)) log.warn('persistence error; client disconnected', { clientId: client.id, error: err.message })
    else log.debug('client error', { clientId: client.id, error: err.message })
  })
  b.on('connectionError', (client, err) => {
    const reason = classifyClientError(err)
    if (reason !== null) stats.refuse(reason)
    log.debug('connection error', { error: err.message })
  })
}

/**
 * A removed or disabled user, a revoked device token, a changed password
 * (access tokens carry its fingerprint) or a logged out web login loses its
 * live connections too.
 */
function closeRevoked (cache: IdentityCache, b: Aedes, auth: Authenticator, logins: WebLogins, log: Logger): void {
  const sweep = (): void => {
    for (const client of Object.values(connectedClients(b))) {
      const s = getSession(client)
      if (s !== undefined && !client.closed && !auth.stillValid(s)) {
        log.info('connection closed: credential revoked', { user: s.user, clientId: client.id })
        markClose(client, 'credential revoked')
        client.close()
      }
    }
  }
  logins.revocations.onChange = sweep
  cache.onReload = sweep
}

interface Observability {
  registry: Registry
  routes: (req: http.IncomingMessage, res: http.ServerResponse) => boolean
  httpServer: http.Server | null
  sys: SysPublisher
  sysRoot: string
}

/** /metrics, the admin API and the HTTP port that serves them, and the $SYS tree. */
function observe (cfg: Config, o: {
  b: Aedes
  stats: Stats
  gate: PublishGate
  auth: Authenticator
  identity: IdentityStore
  logins: WebLogins
  persistence: BrokerPersistence
  routing: SharedRouting | null
  embedded: EmbeddedService | null
  metricsToken: string | undefined
  worker: number
  forwardKey: string | undefined
  refusals: (() => Promise<RecentFailure[]>) | undefined
  connected: () => number
  ready: () => boolean
  ports: () => Readonly<Record<string, number>>
}): Observability {
  const { stats, gate, persistence, routing, embedded, connected } = o
  const redisReady = persistence.redisReady
  const registry = createMetrics({
    stats,
    connected,
    inflight: () => gate.active,
    queued: () => gate.queued,
    ...(cfg.redis !== '' ? { redisConnected: () => (redisReady?.() ?? true) && (routing?.connected() ?? true) && (embedded?.mirrorConnected() ?? true) } : {})
  })
  const svc: MessageService | null = embedded?.service ?? null
  if (svc !== null) registerServiceMetrics(registry, svc)
  if (routing !== null) registerRoutingMetrics(registry, routing.paths)
  if (routing?.readers != null) registerInterestMetrics(registry, routing.interest)
  const trust = { proxies: cfg.httpTrustedProxies, ...(o.forwardKey !== undefined ? { forwardKey: o.forwardKey } : {}) }
  const session = webSessionRoutes({ auth: o.auth, store: o.identity, refresh: o.logins.refresh, revocations: o.logins.revocations, address: (req) => clientAddress(req, trust) })
  const bearer = async (token: string): Promise<{ user: string, admin: boolean } | null> => await o.auth.bearer(token)
  const admin = svc === null ? undefined : adminRoutes({ reader: svc.reader, bearer })
  const sysRoot = sysRootOf(cfg, o.worker)
  const accounts = adminIdentityRoutes({ cfg, store: o.identity, auth: o.auth, ports: o.ports, ready: o.ready, sysRoot, version: VERSION, logins: o.logins.refresh, refusals: o.refusals ?? (() => Promise.resolve(o.auth.recentFailures())) }, bearer)
  const routes = (req: http.IncomingMessage, res: http.ServerResponse): boolean => session(req, res) || accounts(req, res) || (admin?.(req, res) ?? false)
  const httpServer = cfg.httpPort !== -1
    ? createHttpServer({ registry, ready: o.ready, ...(o.metricsToken !== undefined ? { metricsToken: o.metricsToken } : {}), web: webAppRoutes(o.ports), routes })
    : null
  const sys = new SysPublisher(o.b, {
    stats,
    version: VERSION,
    connected,
    offline: () => persistence.countOffline(),
    retainedCount: () => persistence.retainedCount(),
    inflight: () => gate.active,
    extra: () => ({
      ...(routing === null ? {} : routingSys(routing.paths())),
      ...(routing?.readers != null ? { 'routing/local/unread': routing.interest().unread } : {}),
      ...(svc === null ? {} : serviceSys(svc))
    })
  }, cfg.sysInterval, sysRoot)
  return { registry, routes, httpServer, sys, sysRoot }
}

/** Bind every listener and the HTTP port; resolves with the bound ports by name. */
async function bindAll (cfg: Config, listeners: Listener[], httpServer: http.Server | null): Promise<Record<string, number>> {
  const ports: Record<string, number> = {}
  for (const l of listeners) ports[l.name] = await listen(l.server, portOf(l, cfg), cfg.listenHost, l.name)
  if (httpServer !== null) ports.http = await listen(httpServer, cfg.httpPort, cfg.httpListenHost, 'http')
  return ports
}

/** How a new connection is taken: refused while closing, guarded, handed to aedes with the delivery fixes. */
function connectionHandler (b: Aedes, persistence: BrokerPersistence, cfg: Config, stats: Stats, log: Logger, closing: () => boolean): (conn: Duplex, req?: http.IncomingMessage) => void {
  // CONNACK before any message, and no message lost to aedes' dedupe (delivery.ts).
  const fixDelivery = createDeliveryFixes(b, persistence.offlineBound)
  // aedes 2 beta's MQTT 5 bugs (aedes-fixes.ts): after fixDelivery, so its wrappers run first.
  const fixAedes = createAedesFixes(b)
  // A QoS 1 PUBACK only once the message is queued and routed (puback-after-publish.ts).
  const holdPubacks = createPubackAfterPublish(b)
  // No more QoS 1/2 messages in flight to an MQTT 5 client than its Receive Maximum (receive-window.ts).
  const receiveWindow = createReceiveWindow({ offlineQueue: cfg.offlineQueue, stats })
  // refusalDetail unspecified: a refused filter is SUBACK 0x80 (unspecified-refusals.ts).
  const plainSubacks = cfg.refusalDetail === 'unspecified' ? createUnspecifiedSubacks() : null
  return (conn, req) => {
    if (closing()) { conn.destroy(); return }
    guardConnection(conn, cfg.maxPacket, stats, log)
    holdPubacks(conn)
    plainSubacks?.(conn)
    const client = b.handle(conn, req)
    fixDelivery(client, conn)
    fixAedes(client, conn)
    receiveWindow(client, conn)
  }
}

// One function (about 90 lines) on purpose: it reads top to bottom in the
// order things are opened, each step a named function above, and `undo`,
// which a failing step closes in reverse, is visible in one place.
/** Close what was opened before the broker; for a failed start and the end of close(). */
async function releaseStores (s: Stores, auth: Authenticator, log: Logger): Promise<void> {
  await s.persistence.close().catch((err: unknown) => { log.error('error closing persistence', { error: String(err) }) })
  s.cache.stop()
  auth.close()
  await s.logins.close()
  await s.replica?.close()
  await s.identity.close()
}

export async function startWarbler (cfg: Config, opts: StartOptions = {}): Promise<Warbler> {
  const log = opts.log ?? createLogger(cfg.logLevel as 'info')
  // Read before anything is opened: a bad file stops the start with nothing to undo.
  const metricsToken = cfg.httpPort !== -1 && cfg.metricsTokenFile !== '' ? readMetricsToken(cfg.metricsTokenFile) : undefined
  const stats = new Stats()
  const stores = await openStores(cfg, stats, log, opts.worker ?? 0)
  const { identity, cache, logins, persistence } = stores

  // The hooks and the limits need the broker, which needs them: they read it once it exists.
  // eslint-disable-next-line prefer-const -- assigned once the broker is made from the hooks
  let broker: Aedes | undefined
  const connected = (): number => broker?.connectedClients ?? 0
  const gate = new PublishGate(cfg.maxInflight, () => { stats.backpressureWaits++ })
  const auth = new Authenticator(cfg, cache, stats, log, connected)
  auth.revocations = logins.revocations
  const acl = new Acl(cfg.acl.map(parseAclRule), cfg.dev, cfg.bridge === 'off')
  const hooks = createHooks({ cfg, auth, acl, gate, inbound: persistence.inbound, stats, log, broker: () => broker as Aedes })

  const release = (): Promise<void> => releaseStores(stores, auth, log)
  const undo: Array<() => Promise<void>> = [release]
  const failed = async (err: unknown): Promise<never> => {
    for (const close of undo.reverse()) await close()
    throw err
  }

  const { onDisconnect, setIngest: _setIngest, ...aedesHooks } = hooks
  const { b, mq } = await createBroker(cfg, aedesHooks, persistence, log, opts).catch(failed)
  broker = b
  let embedded: EmbeddedService | null = null
  const closeService = async (): Promise<void> => { await embedded?.close() }
  undo.push(async () => { await closeBroker(b); await closeService() })
  watchBroker(b, onDisconnect, stats, log, () => closing !== null)

  // A message service that starts later learns who is connected here (service-watch.ts).
  // A message service elsewhere (a worker of shared routing, or `warbler bridge`) asks for the connected clients at its start.
  const unwatch = mq !== null || cfg.bridge === 'off' ? answerServiceBirth(b) : null

  // The message service, embedded (the default): archive, sequence, deliver.
  if (cfg.bridge === 'embedded') {
    embedded = await startEmbeddedService({
      cfg,
      broker: b,
      log,
      ...routingView(mq, cfg),
      setIngest: hooks.setIngest,
      isService: (user) => cache.users.get(user)?.service === true
    }).catch(failed)
  }
  closeRevoked(cache, b, auth, logins, log)

  let closing: Promise<void> | null = null
  const handle = connectionHandler(b, persistence, cfg, stats, log, () => closing !== null)
  let listeners: Listener[] = []
  try {
    listeners = createListeners(cfg, handle, refusedBeforeMqtt(log))
  } catch (err) {
    await failed(err)
  }

  let ready = false
  let ports: Record<string, number> = {}
  const { registry, routes, httpServer, sys, sysRoot } = observe(cfg, {
    b, stats, gate, auth, identity, logins, persistence, routing: mq, embedded, metricsToken, worker: opts.worker ?? 0, forwardKey: opts.forwardKey, refusals: opts.refusals, connected, ready: () => ready && closing === null, ports: () => ports
  })
  undo.push(async () => {
    await Promise.all(listeners.map((l) => l.close()))
    if (httpServer !== null) await closeServer(httpServer)
  })
  ports = await bindAll(cfg, listeners, httpServer).catch(failed)
  sys.start()
  embedded?.retention.start()
  ready = true

  const close = (): Promise<void> => {
    closing ??= shutdown({ broker: b, log, stopSys: () => sys.stop(), routing: () => gate.active, closeService, unwatch, listeners, httpServer, release })
    return closing
  }
  return {
    ports: Object.freeze({ ...ports }),
    broker: b,
    stats,
    inbound: persistence.inbound,
    identity,
    log,
    service: embedded?.service ?? null,
    sys: () => sys.snapshot(),
    sysRoot,
    registry,
    recentFailures: () => auth.recentFailures(),
    routes,
    close
  }
}
