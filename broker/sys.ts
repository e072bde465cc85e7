/**
 * The `$SYS/broker/...` tree, modelled on Mosquitto's: published every
 * `sysInterval` seconds as retained QoS 0 messages (so an admin who subscribes
 * gets the current figures at once), and only the values that changed.
 * Only admins may subscribe (acl.ts). docs/operations.md lists every topic.
 */
import type { Aedes, Client } from 'aedes'
import { clientSubscriptions, connectedClients } from './aedes-internals.js'
import { refusalReasons, type Stats } from './stats.js'

export const SYS_ROOT = '$SYS/broker'

/** Mosquitto's load averages: exponentially damped per-minute rates. */
class Load {
  readonly avg = [0, 0, 0]
  private last = 0
  constructor (private readonly read: () => number) { this.last = read() }

  update (intervalSec: number): void {
    const now = this.read()
    const perMinute = ((now - this.last) / intervalSec) * 60
    this.last = now
    const windows = [60, 300, 900]
    for (let i = 0; i < 3; i++) {
      const k = Math.exp(-intervalSec / (windows[i] as number))
      this.avg[i] = (this.avg[i] as number) * k + perMinute * (1 - k)
    }
  }
}

export interface SysSources {
  stats: Stats
  version: string
  connected: () => number
  /** Persistent sessions and subscriptions known to the persistence. */
  offline: () => Promise<{ clientsCount: number, subsCount: number }>
  retainedCount: () => Promise<number>
  inflight: () => number
  /** Extra figures other components add (message service, ...), as topic suffix -> value. */
  extra: () => Record<string, number | string>
}

export class SysPublisher {
  private readonly last = new Map<string, string>()
  private timer: NodeJS.Timeout | null = null
  private readonly loads: Record<string, Load>
  private heapMax = 0

  constructor (private readonly broker: Aedes, private readonly src: SysSources, private readonly intervalSec: number, private readonly root: string = SYS_ROOT) {
    const s = src.stats
    this.loads = {
      'messages/received': new Load(() => s.messagesReceived),
      'messages/sent': new Load(() => s.messagesSent),
      'bytes/received': new Load(() => s.bytesReceived),
      'bytes/sent': new Load(() => s.bytesSent),
      connections: new Load(() => s.connectionsTotal),
      'publish/received': new Load(() => s.messagesReceived),
      'publish/sent': new Load(() => s.messagesSent),
      'publish/dropped': new Load(() => s.publishDropped)
    }
  }

  start (): void {
    if (this.intervalSec === 0) return
    this.timer = setInterval(() => { this.tick().catch(() => {}) }, this.intervalSec * 1000)
    this.timer.unref()
    this.tick().catch(() => {})
  }

  /** Compute every value now (also used by tests). */
  async snapshot (): Promise<Record<string, string>> {
    const s = this.src.stats
    const connected = this.src.connected()
    s.clientsMaximum = Math.max(s.clientsMaximum, connected)
    const heap = process.memoryUsage().heapUsed
    this.heapMax = Math.max(this.heapMax, heap)
    const offline = await this.src.offline().catch(() => ({ clientsCount: 0, subsCount: 0 }))
    const retained = await this.src.retainedCount().catch(() => 0)
    const live = this.liveClients()
    // The persistence knows persistent sessions (connected or not) and their
    // subscriptions; clean sessions exist only in memory.
    const disconnected = Math.max(0, offline.clientsCount - live.persistent)
    const v: Record<string, string | number> = {
      version: `warbler ${this.src.version}`,
      uptime: `${Math.floor((Date.now() - s.startedAt) / 1000)} seconds`,
      'clients/connected': connected,
      'clients/active': connected,
      'clients/disconnected': disconnected,
      'clients/total': connected + disconnected,
      'clients/maximum': s.clientsMaximum,
      'clients/expired': 0,
      'messages/received': s.messagesReceived,
      'messages/sent': s.messagesSent,
      'publish/messages/received': s.messagesReceived,
      'publish/messages/sent': s.messagesSent,
      'publish/messages/dropped': s.publishDropped,
      'bytes/received': s.bytesReceived,
      'bytes/sent': s.bytesSent,
      'subscriptions/count': offline.subsCount + live.cleanSubs,
      'retained messages/count': retained,
      'heap/current': heap,
      'heap/maximum': this.heapMax,
      'warbler/connections/total': s.connectionsTotal,
      'warbler/publish/inflight': this.src.inflight(),
      'warbler/publish/backpressure_waits': s.backpressureWaits
    }
    for (const [name, load] of Object.entries(this.loads)) {
      v[`load/${name}/1min`] = load.avg[0]?.toFixed(2) ?? '0'
      v[`load/${name}/5min`] = load.avg[1]?.toFixed(2) ?? '0'
      v[`load/${name}/15min`] = load.avg[2]?.toFixed(2) ?? '0'
    }
    for (const r of refusalReasons) v[`warbler/refused/${r}`] = s.refusals[r]
    for (const [m, n] of Object.entries(s.authSuccess)) v[`warbler/logins/${m}`] = n
    for (const [k, val] of Object.entries(this.src.extra())) v[`warbler/${k}`] = val
    return Object.fromEntries(Object.entries(v).map(([k, val]) => [k, String(val)]))
  }

  /** Connected persistent sessions, and the subscriptions of connected clean ones (O(clients), once a tick). */
  private liveClients (): { persistent: number, cleanSubs: number } {
    const clients = connectedClients(this.broker)
    let persistent = 0
    let cleanSubs = 0
    for (const id in clients) {
      const c = clients[id] as Client
      if (!c.clean) persistent++
      else for (const _ in clientSubscriptions(c)) cleanSubs++
    }
    return { persistent, cleanSubs }
  }

  private async tick (): Promise<void> {
    for (const load of Object.values(this.loads)) load.update(this.intervalSec)
    const values = await this.snapshot()
    for (const [k, val] of Object.entries(values)) {
      if (this.last.get(k) === val) continue
      this.last.set(k, val)
      this.broker.publish({ cmd: 'publish', topic: `${this.root}/${k}`, payload: Buffer.from(val), qos: 0, retain: true, dup: false }, () => {})
    }
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }
}
