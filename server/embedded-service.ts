/**
 * The message service embedded in a broker (`--bridge embedded`, the
 * default): archive, sequence, deliver, in the broker's own process, with
 * presence from this broker's clients, or, with shared routing (Redis), from
 * the clients of every broker (followPresence), and retention.
 */
import type { Aedes } from 'aedes'
import type { Config } from '../shared/config.js'
import type { Ingest } from '../broker/hooks/create-hooks.js'
import type { Logger } from '../shared/log.js'
import { announceService } from '../broker/service-watch.js'
import { getSession } from '../broker/session.js'
import { PRESENCE_FILTERS } from '../bridge/presence.js'
import type { Retention } from '../bridge/archive/retention.js'
import type { MessageService } from '../bridge/service.js'
import { type RunningService, startService } from '../bridge/start-service.js'
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
  /**
   * Whether another broker routes with this one now (a sibling worker, or a
   * broker of another node on Redis): the service then cannot see who
   * subscribes to what. A lone worker with Redis is shared but not crowded.
   */
  crowded: () => boolean
  /** Whether a client of a sibling worker reads a topic (while not crowded, the siblings' sets are complete). */
  othersRead?: (topic: string) => boolean
  /** The hooks' ingest setter (broker/hooks/publish.ts), through which sends reach the service. */
  setIngest: (fn: Ingest | null) => void
  /** Whether a user is the service account (its connections are not presence). */
  isService: (user: string) => boolean
}

/** Open the service (bridge/start-service.ts) and attach it to the broker. */
export async function startEmbeddedService (d: EmbeddedDeps): Promise<EmbeddedService> {
  const { cfg, broker: b, log } = d
  const ownId = (b as unknown as { id: string }).id
  const running = await startService({
    settings: cfg,
    transport: embeddedTransport(b, d.crowded, d.othersRead),
    log,
    // With Redis, clients of every broker (worker, node) count: follow
    // aedes' connect and disconnect notices, as `warbler bridge` does. This
    // broker is alive while the service runs in it.
    ...(d.shared ? { notices: { isService: d.isService, alive: (id: string) => id === ownId } } : {})
  })
  const svc = running.service
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
    const detachChat = detach
    const detachPresence = followPresence(b, running)
    announceService(b)
    detach = async () => { await detachPresence(); await detachChat() }
  }
  return {
    service: svc,
    retention: running.retention,
    mirrorConnected: running.mirrorConnected,
    close: async () => {
      running.stop()
      await detach()
      await running.close()
    }
  }
}

/**
 * Presence from every broker's client notices and heartbeats, which travel
 * through the shared Redis routing (bridge/presence.ts): the clients of every
 * worker and node count, the service account's own connections do not, and
 * the clients of a broker that died without closing them (SIGKILL) go offline
 * after three missed heartbeats (the sweep of bridge/start-service.ts).
 */
function followPresence (b: Aedes, running: RunningService): () => Promise<void> {
  const handler = (packet: { topic: string, payload: Buffer | string }, cb: () => void): void => {
    running.notice(packet.topic, packet.payload)
    cb()
  }
  for (const f of PRESENCE_FILTERS) b.subscribe(f, handler, () => {})
  return async () => {
    await Promise.all(PRESENCE_FILTERS.map((f) => new Promise<void>((resolve) => { b.unsubscribe(f, handler, () => resolve()) })))
  }
}
