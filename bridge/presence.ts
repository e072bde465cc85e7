/**
 * Presence from brokers' client notices, for a message service that does not
 * see the connections itself: the embedded service with routing shared
 * through Redis (embedded-service.ts), and `warbler bridge`. aedes publishes
 * `$SYS/{broker id}/new/clients` and `.../disconnect/clients` with the client
 * id, and `$SYS/{broker id}/heartbeat` every heartbeat interval; Warbler's
 * brokers answer a service's birth with their connected clients
 * (service-watch.ts).
 *
 * Clients are kept per broker, so a notice repeated or a client that moves to
 * another broker never counts twice. A broker that dies without closing its
 * clients (SIGKILL, a lost node) sends no disconnect notices: when it has not
 * been heard from for `expiryMs`, its clients are taken offline.
 */
import { clientIdBelongsTo, isValidUsername } from '@warbler/sdk/protocol'
import { CLIENTS_TOPIC } from '../shared/sys-topics.js'

export interface PresenceSink {
  /** A device of `user` connected (true) or disconnected (false). */
  presence: (user: string, online: boolean) => void
}

export class PresenceTracker {
  /** Connected client ids (with their user) by broker id, and when each broker was last heard from. */
  private readonly byBroker = new Map<string, { seen: number, clients: Map<string, string> }>()

  constructor (
    private readonly sink: PresenceSink,
    /** Users whose connections are not presence (the service account). */
    private readonly isService: (user: string) => boolean,
    private readonly expiryMs: number,
    private readonly now: () => number = Date.now
  ) {}

  private broker (id: string): { seen: number, clients: Map<string, string> } {
    let entry = this.byBroker.get(id)
    if (entry === undefined) this.byBroker.set(id, entry = { seen: this.now(), clients: new Map() })
    return entry
  }

  /** The user a client id counts for, or null (not a user's device, or the service's own). */
  private userOf (clientId: string): string | null {
    const user = clientId.split('-')[0] ?? ''
    return isValidUsername(user) && clientIdBelongsTo(clientId, user) && !this.isService(user) ? user : null
  }

  /** A client connected to (`online`) or left broker `brokerId`. */
  notice (brokerId: string, clientId: string, online: boolean): void {
    const user = this.userOf(clientId)
    if (user === null) return
    if (online) {
      const entry = this.broker(brokerId)
      entry.seen = this.now()
      if (entry.clients.has(clientId)) return
      entry.clients.set(clientId, user)
      this.sink.presence(user, true)
    } else if (this.byBroker.get(brokerId)?.clients.delete(clientId) === true) {
      this.sink.presence(user, false)
    }
  }

  /** A broker's connected clients, as it answered a service's birth. */
  clients (brokerId: string, ids: unknown): void {
    if (!Array.isArray(ids)) return
    for (const id of ids) if (typeof id === 'string') this.notice(brokerId, id, true)
  }

  /** Broker `brokerId` is alive. */
  heartbeat (brokerId: string): void {
    const entry = this.byBroker.get(brokerId)
    if (entry !== undefined) entry.seen = this.now()
  }

  /** Take the clients of brokers not heard from for expiryMs offline; `alive` says which brokers are known alive anyway. */
  sweep (alive: (brokerId: string) => boolean = () => false): void {
    const now = this.now()
    for (const [brokerId, entry] of this.byBroker) {
      if (alive(brokerId) || entry.seen + this.expiryMs >= now) continue
      this.byBroker.delete(brokerId)
      for (const user of entry.clients.values()) this.sink.presence(user, false)
    }
  }
}

const CLIENT_NOTICE = /^\$SYS\/([^/]+)\/(new|disconnect)\/clients$/
const HEARTBEAT = /^\$SYS\/([^/]+)\/heartbeat$/

/** The $SYS filters a tracker follows. */
export const PRESENCE_FILTERS = ['$SYS/+/new/clients', '$SYS/+/disconnect/clients', '$SYS/+/heartbeat', '$SYS/+/warbler/clients']

/** Feed one $SYS publish to a tracker; false if it is not one of PRESENCE_FILTERS'. */
export function followNotice (tracker: PresenceTracker, topic: string, payload: Buffer | string): boolean {
  let m = CLIENT_NOTICE.exec(topic)
  if (m !== null) { tracker.notice(m[1] as string, payload.toString(), m[2] === 'new'); return true }
  m = HEARTBEAT.exec(topic)
  if (m !== null) { tracker.heartbeat(m[1] as string); return true }
  m = CLIENTS_TOPIC.exec(topic)
  if (m !== null) {
    let ids: unknown
    try { ids = JSON.parse(payload.toString()) } catch { ids = [] }
    tracker.clients(m[1] as string, ids)
    return true
  }
  return false
}
