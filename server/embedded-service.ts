/**
 * The message service embedded in a broker (`--bridge embedded`, the
 * default): archive, sequence, deliver, in the broker's own process, with
 * presence from this broker's clients, or, with shared routing (Redis), from
 * the clients of every broker (followPresence), and retention.
 */
import type { Aedes } from 'aedes'
import type { Config } from '../shared/config.js'
import type { Ingest } from '../broker/hooks/index.js'
import type { Logger } from '../shared/log.js'
import { HEARTBEAT_MS, PRESENCE_EXPIRY_MS } from '../shared/heartbeat.js'
import { announceService } from '../broker/service-watch.js'
import { getSession } from '../broker/session.js'
import { RedisMirror } from '../bridge/redis-mirror.js'
import { followNotice, PRESENCE_FILTERS, PresenceTracker } from '../bridge/presence.js'
import { Retention } from '../bridge/archive/retention.js'
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
  /** The hooks' ingest setter (broker/hooks/publish.ts), through which sends reach the service. */
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

/**
 * Presence from every broker's client notices and heartbeats, which travel
 * through the shared Redis routing (bridge/presence.ts): the clients of every
 * worker and node count, the service account's own connections do not, and
 * the clients of a broker that died without closing them (SIGKILL) go offline
 * after three missed heartbeats.
 */
function followPresence (b: Aedes, svc: MessageService, isService: (user: string) => boolean): () => Promise<void> {
  const ownId = b.id
  const tracker = new PresenceTracker(svc, isService, PRESENCE_EXPIRY_MS)
  const handler = (packet: { topic: string, payload: Buffer | string }, cb: () => void): void => {
    followNotice(tracker, packet.topic, packet.payload)
    cb()
  }
  const sweep = setInterval(() => { tracker.sweep((id) => id === ownId) }, HEARTBEAT_MS)
  sweep.unref()
  for (const f of PRESENCE_FILTERS) b.subscribe(f, handler, () => {})
  return async () => {
    clearInterval(sweep)
    await Promise.all(PRESENCE_FILTERS.map((f) => new Promise<void>((resolve) => { b.unsubscribe(f, handler, () => resolve()) })))
  }
}
