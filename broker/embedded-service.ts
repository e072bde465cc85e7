/**
 * The message service embedded in a broker (`--bridge embedded`, the
 * default): archive, sequence, deliver, in the broker's own process, with
 * presence from this broker's clients, or, with shared routing (Redis), from
 * the clients of every broker (followPresence), and retention.
 */
import type { Aedes } from 'aedes'
import type { Config } from './config.js'
import type { Ingest } from './hooks.js'
import type { Logger } from './log.js'
import { announceService, CLIENTS_TOPIC } from './service-watch.js'
import { getSession } from './session.js'
import { clientIdBelongsTo, isValidUsername } from '../sdk/src/protocol.js'
import { RedisMirror } from '../bridge/mirror.js'
import { Retention } from '../bridge/retention.js'
import { MessageService } from '../bridge/service.js'
import { attachEmbedded, embeddedTransport } from '../bridge/transport.js'

export interface EmbeddedService {
  readonly service: MessageService
  /** Started by the caller once the broker listens. */
  readonly retention: Retention
  /** Whether the Redis mirror's connection is ready; true without Redis. */
  mirrorConnected: () => boolean
  /** Stops retention and the traffic to the service, then closes the service and the mirror. */
  close: () => Promise<void>
}

export interface EmbeddedDeps {
  cfg: Config
  broker: Aedes
  log: Logger
  /** Whether routing is shared through Redis (mq.ts): presence then counts every broker's clients. */
  shared: boolean
  /** The hooks' ingest setter (hooks.ts), through which sends reach the service. */
  setIngest: (fn: Ingest | null) => void
  /** Whether a user is the service account (its connections are not presence). */
  isService: (user: string) => boolean
}

/** Open the service and attach it to the broker; a failed open closes the mirror it opened. */
export async function startEmbeddedService (d: EmbeddedDeps): Promise<EmbeddedService> {
  const { cfg, broker: b, log } = d
  let mirror: RedisMirror | undefined
  let service: MessageService
  try {
    mirror = cfg.redis !== '' ? await RedisMirror.connect(cfg.redis, log) : undefined
    service = await MessageService.open({ dataDir: cfg.dataDir, transport: embeddedTransport(b, d.shared), log, maxPayload: cfg.maxPayload, durability: cfg.durability === 'power' ? 'power' : 'process', ...(mirror !== undefined ? { mirror } : {}) })
  } catch (err) {
    await mirror?.close()
    throw err
  }
  const svc = service
  let detach = attachEmbedded(b, svc, d.setIngest)
  if (!d.shared) {
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
    const detachPresence = followPresence(b, svc, d.isService)
    announceService(b)
    detach = async () => { await detachPresence(); await detachChat() }
  }
  const retention = new Retention(svc.writer, { days: cfg.retentionDays, messages: cfg.retentionMessages })
  return {
    service: svc,
    retention,
    mirrorConnected: () => mirror?.connected ?? true,
    close: async () => {
      retention.stop()
      await detach()
      await svc.close()
      await mirror?.close()
    }
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
