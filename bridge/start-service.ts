/**
 * Start the message service however it is connected: in a broker's process
 * (server/embedded-service.ts) or as `warbler bridge` (cli/bridge.ts). Both
 * need the same pieces wired the same way: the Redis mirror (when redis is
 * set), the service on the data dir's archive (its WAL checkpoints come with
 * it), retention, and, for a service that does not see the connections
 * itself, presence from the brokers' client notices (presence.ts). What
 * differs, the transport and where the notices come from, is the caller's.
 */
import type { Config } from '../shared/config.js'
import { HEARTBEAT_MS, PRESENCE_EXPIRY_MS } from '../shared/heartbeat.js'
import type { Logger } from '../shared/log.js'
import { Retention } from './archive/retention.js'
import { followNotice, PresenceTracker } from './presence.js'
import { RedisMirror } from './redis-mirror.js'
import { MessageService, type Transport } from './service.js'

/** The settings the service takes, resolved from the settings table (shared/config.ts) by either command. */
type ServiceSettings = Pick<Config, 'dataDir' | 'redis' | 'maxPayload' | 'durability' | 'retentionDays' | 'retentionMessages'>

export interface StartServiceOptions {
  settings: ServiceSettings
  transport: Transport
  log: Logger
  /**
   * Presence from the brokers' client notices and heartbeats, for a service
   * that does not see the connections itself; without it the caller reports
   * connections to `service.presence`.
   */
  notices?: {
    /** Whether a user is the service account (its connections are not presence). */
    isService: (user: string) => boolean
    /** Brokers known to be alive whatever their heartbeats (the caller's own broker). */
    alive?: (brokerId: string) => boolean
  }
}

export interface RunningService {
  readonly service: MessageService
  /** Started by the caller once it serves (the broker listens, the bridge passed its checks). */
  readonly retention: Retention
  /** Feed one $SYS publish of the brokers (presence.ts's PRESENCE_FILTERS); false when it is not one, or without `notices`. */
  notice: (topic: string, payload: Buffer | string) => boolean
  /** Whether the Redis mirror's connection is ready; true without Redis. */
  mirrorConnected: () => boolean
  /** Stops retention and the presence sweep; the service keeps handling what it is given. */
  stop: () => void
  /** stop(), then closes the service and the mirror (the mirror also when closing the service fails). */
  close: () => Promise<void>
}

/** Open the mirror and the service; a failed open closes the mirror it opened. */
export async function startService (o: StartServiceOptions): Promise<RunningService> {
  const { settings: s, log } = o
  let mirror: RedisMirror | undefined
  let service: MessageService
  try {
    mirror = s.redis !== '' ? await RedisMirror.connect(s.redis, log) : undefined
    service = await MessageService.open({
      dataDir: s.dataDir,
      transport: o.transport,
      log,
      maxPayload: s.maxPayload,
      durability: s.durability === 'power' ? 'power' : 'process',
      ...(mirror !== undefined ? { mirror } : {})
    })
  } catch (err) {
    await mirror?.close()
    throw err
  }
  const svc = service
  const retention = new Retention(svc.writer, { days: s.retentionDays, messages: s.retentionMessages })
  let sweep: NodeJS.Timeout | undefined
  let notice: RunningService['notice'] = () => false
  if (o.notices !== undefined) {
    const tracker = new PresenceTracker(svc, o.notices.isService, PRESENCE_EXPIRY_MS)
    const alive = o.notices.alive
    // The clients of a broker that died without closing them (SIGKILL) go
    // offline after three missed heartbeats.
    sweep = setInterval(() => { tracker.sweep(alive) }, HEARTBEAT_MS)
    sweep.unref()
    notice = (topic, payload) => followNotice(tracker, topic, payload)
  }
  const stop = (): void => {
    retention.stop()
    clearInterval(sweep)
  }
  return {
    service: svc,
    retention,
    notice,
    mirrorConnected: () => mirror?.connected ?? true,
    stop,
    close: async () => {
      stop()
      try {
        await svc.close()
      } finally {
        await mirror?.close()
      }
    }
  }
}
