/**
 * Start and stop a Warbler node: identity store, aedes with its hooks,
 * persistence, listeners, $SYS and the HTTP port. `startWarbler` resolves
 * once every listener is bound; `close()` is idempotent and graceful
 * (clients get their wills, persistence and SQLite are flushed and closed).
 */
import { readFileSync } from 'node:fs'
import type { Duplex } from 'node:stream'
import type http from 'node:http'
import { Aedes } from 'aedes'
import { Acl } from './acl.js'
import { Authenticator } from './auth.js'
import { type Config, parseAclRule } from './config.js'
import { PublishGate } from './flow.js'
import { guardConnection } from './guard.js'
import { createHooks } from './hooks.js'
import { createHttpServer } from './http.js'
import { IdentityCache } from './identity/cache.js'
import { IdentityStore } from './identity/store.js'
import { createListeners, closeServer, listen, portOf } from './listeners.js'
import { createLogger, type Logger } from './log.js'
import { createMetrics } from './metrics.js'
import { createPersistence } from './persistence.js'
import { Stats } from './stats.js'
import { SysPublisher } from './sys.js'

export const VERSION: string = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version

export interface Warbler {
  /** Bound ports by listener name: mqtt, ws, http, and mqtts/wss with TLS. */
  readonly ports: Readonly<Record<string, number>>
  readonly broker: Aedes
  readonly stats: Stats
  readonly identity: IdentityStore
  readonly log: Logger
  /** The current $SYS values (for tests and the admin API). */
  sys: () => Promise<Record<string, string>>
  close: () => Promise<void>
}

export async function startWarbler (cfg: Config, opts: { log?: Logger } = {}): Promise<Warbler> {
  const log = opts.log ?? createLogger(cfg.logLevel as 'info')
  const stats = new Stats()
  const identity = await IdentityStore.open(cfg.dataDir)
  const cache = new IdentityCache(identity)
  await cache.start()
  const persistence = await createPersistence({ redis: cfg.redis, offlineQueue: cfg.offlineQueue, stats })

  let broker: Aedes | undefined
  const getBroker = (): Aedes => broker as Aedes
  const connected = (): number => broker?.connectedClients ?? 0
  const gate = new PublishGate(cfg.maxInflight, () => { stats.backpressureWaits++ })
  const auth = new Authenticator(cfg, cache, stats, log, connected)
  const acl = new Acl(cfg.acl.map(parseAclRule), cfg.dev)
  const hooks = createHooks({ cfg, auth, acl, gate, stats, log, broker: getBroker })

  const { onDisconnect, ...aedesHooks } = hooks
  const b = await Aedes.createBroker({
    ...aedesHooks,
    persistence: persistence.instance,
    drainTimeout: cfg.drainTimeout * 1000,
    maxTopicLevels: cfg.maxTopicLevels,
    maxClientsIdLength: 64,
    concurrency: Math.max(100, Math.min(cfg.maxInflight, 1000))
  })
  broker = b
  b.on('clientDisconnect', onDisconnect)
  b.on('clientError', (client, err) => { log.debug('client error', { clientId: client.id, error: err.message }) })
  b.on('connectionError', (client, err) => {
    if (/parse|invalid|malformed|protocol/i.test(err.message)) stats.refuse('malformed_packet')
    log.debug('connection error', { error: err.message })
  })

  const handle = (conn: Duplex, req?: http.IncomingMessage): void => {
    guardConnection(conn, cfg.maxPacket, stats, log)
    broker?.handle(conn, req)
  }
  const listeners = createListeners(cfg, handle)

  let ready = false
  let closing: Promise<void> | null = null
  const registry = createMetrics({ stats, connected, inflight: () => gate.active, queued: () => gate.queued })
  const httpServer = cfg.httpPort !== -1 ? createHttpServer({ registry, ready: () => ready && closing === null }) : null
  const sys = new SysPublisher(b, {
    stats,
    version: VERSION,
    connected,
    offline: () => persistence.countOffline(),
    retainedCount: () => persistence.retainedCount(),
    inflight: () => gate.active,
    extra: () => ({})
  }, cfg.sysInterval)

  const ports: Record<string, number> = {}
  try {
    for (const l of listeners) ports[l.name] = await listen(l.server, portOf(l, cfg), cfg.listenHost)
    if (httpServer !== null) ports.http = await listen(httpServer, cfg.httpPort, cfg.listenHost)
  } catch (err) {
    await Promise.all(listeners.map((l) => l.close()))
    if (httpServer !== null) await closeServer(httpServer)
    await new Promise<void>((resolve) => broker?.close(() => resolve()))
    await persistence.close()
    cache.stop()
    auth.close()
    await identity.close()
    throw err
  }
  sys.start()
  ready = true

  const close = (): Promise<void> => {
    closing ??= (async () => {
      sys.stop()
      const stopped = Promise.all(listeners.map((l) => l.close()))
      // Closes every client; each gets its will.
      await new Promise<void>((resolve) => broker?.close(() => resolve()))
      await stopped
      if (httpServer !== null) await closeServer(httpServer)
      await persistence.close()
      cache.stop()
      auth.close()
      await identity.close()
    })()
    return closing
  }

  return { ports: Object.freeze({ ...ports }), broker: b, stats, identity, log, sys: () => sys.snapshot(), close }
}
