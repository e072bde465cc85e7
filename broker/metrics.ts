/**
 * Prometheus metrics (prom-client): the process's default metrics plus the
 * broker's figures, read from Stats when scraped (nothing on the hot path).
 * Names are documented in docs/operations.md; deploy/ rules and dashboards
 * use them.
 */
/* eslint-disable no-new -- a prom-client metric registers itself with the registry its constructor is given */
import client from 'prom-client'
import type { PathCounts } from './local-bus.js'
import { connectCaps, refusalReasons, type Stats } from './stats.js'

export interface MetricSources {
  stats: Stats
  connected: () => number
  inflight: () => number
  queued: () => number
  /**
   * With `--redis`: whether every Redis connection of this process is ready
   * (session persistence, shared routing, the message service's mirror).
   * Without it the gauge is not registered.
   */
  redisConnected?: () => boolean
}

/** A counter whose value is read from a running total when scraped. */
function mirroredCounter (registry: client.Registry, name: string, help: string, read: () => number): void {
  let reported = 0
  new client.Counter({
    name,
    help,
    registers: [registry],
    collect () {
      const now = read()
      if (now > reported) this.inc(now - reported)
      reported = now
    }
  })
}

/**
 * A counter with one label that mirrors running totals kept elsewhere (Stats),
 * one series per key, each shown from the start (at 0) so that a dashboard
 * has it before the first event.
 */
function mirroredLabelledCounter<K extends string> (registry: client.Registry, name: string, help: string, label: string, keys: readonly K[], read: (key: K) => number): void {
  const reported = new Map<K, number>()
  new client.Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect () {
      for (const k of keys) {
        const now = read(k)
        this.inc({ [label]: k }, Math.max(0, now - (reported.get(k) ?? 0)))
        reported.set(k, now)
      }
    }
  })
}

export function createMetrics (src: MetricSources): client.Registry {
  const registry = new client.Registry()
  client.collectDefaultMetrics({ register: registry, prefix: 'warbler_' })
  const s = src.stats
  new client.Gauge({ name: 'warbler_clients_connected', help: 'MQTT clients connected now.', registers: [registry], collect () { this.set(src.connected()) } })
  new client.Gauge({
    name: 'warbler_clients_maximum',
    help: 'Most MQTT clients connected at once since start (sampled at scrapes and $SYS ticks).',
    registers: [registry],
    collect () {
      // Kept in Stats so that it never goes down, with $SYS off too.
      s.clientsMaximum = Math.max(s.clientsMaximum, src.connected())
      this.set(s.clientsMaximum)
    }
  })
  new client.Gauge({ name: 'warbler_publish_inflight', help: 'Publishes being routed now (bounded by maxInflight).', registers: [registry], collect () { this.set(src.inflight()) } })
  new client.Gauge({ name: 'warbler_publish_waiting', help: 'Publishes held back by backpressure now.', registers: [registry], collect () { this.set(src.queued()) } })
  const redisConnected = src.redisConnected
  if (redisConnected !== undefined) {
    new client.Gauge({
      name: 'warbler_redis_connected',
      help: '1 when every Redis connection of the node (sessions, routing, message service mirror) is ready, else 0. Only with --redis.',
      registers: [registry],
      // A cluster's primary sums its workers' figures by default: one worker
      // without Redis must show as 0 for the node.
      aggregator: 'min',
      collect () { this.set(redisConnected() ? 1 : 0) }
    })
  }
  mirroredCounter(registry, 'warbler_connections_total', 'Successful MQTT logins.', () => s.connectionsTotal)
  mirroredCounter(registry, 'warbler_messages_received_total', 'PUBLISH packets received from clients.', () => s.messagesReceived)
  mirroredCounter(registry, 'warbler_messages_sent_total', 'PUBLISH packets delivered to clients.', () => s.messagesSent)
  mirroredCounter(registry, 'warbler_bytes_received_total', 'Bytes received on MQTT connections.', () => s.bytesReceived)
  mirroredCounter(registry, 'warbler_bytes_sent_total', 'Bytes sent on MQTT connections.', () => s.bytesSent)
  mirroredCounter(registry, 'warbler_publish_dropped_total', 'Publishes refused, and QoS 0 deliveries skipped for slow consumers.', () => s.publishDropped)
  mirroredCounter(registry, 'warbler_backpressure_waits_total', 'Publishes that waited for a routing slot.', () => s.backpressureWaits)
  mirroredLabelledCounter(registry, 'warbler_refusals_total', 'Refused connections, logins, publishes and subscriptions, by reason.', 'reason', refusalReasons, (r) => s.refusals[r])
  // warbler_mqtt5_caps_total: MQTT 5 CONNECT values replaced by the broker's limits (hooks/connect-caps.ts), and maxPendingSessions.
  mirroredLabelledCounter(registry, 'warbler_mqtt5_caps_total', 'MQTT 5 values the broker replaced with its own limit (keep alive, session expiry), and sessions or delayed wills past maxPendingSessions, by limit.', 'cap', connectCaps, (c) => s.caps[c])
  mirroredLabelledCounter(registry, 'warbler_logins_total', 'Successful logins by method.', 'method', Object.keys(s.authSuccess) as Array<keyof Stats['authSuccess']>, (m) => s.authSuccess[m])
  return registry
}

type RoutingPaths = () => { local: PathCounts | null, redis: PathCounts }

/**
 * Copies of publishes between brokers, by path: `local` (the local bus
 * between the workers of one node) and `redis` (pub/sub, to other nodes, or
 * between workers of a node without a bus).
 */
export function registerRoutingMetrics (registry: client.Registry, paths: RoutingPaths): void {
  const kinds = [
    ['sent', 'Copies of publishes sent to other brokers, by path (local bus or redis).'],
    ['received', 'Copies of publishes received from other brokers and delivered here, by path.'],
    ['dropped', 'Copies of publishes for other brokers dropped (peer away or not taking them), by path.']
  ] as const
  for (const [kind, help] of kinds) {
    const reported = { local: 0, redis: 0 }
    new client.Counter({
      name: `warbler_routing_copies_${kind}_total`,
      help,
      labelNames: ['path'],
      registers: [registry],
      collect () {
        const now = paths()
        for (const path of ['local', 'redis'] as const) {
          const value = now[path]?.[kind]
          if (value === undefined) continue
          this.inc({ path }, Math.max(0, value - reported[path]))
          reported[path] = value
        }
      }
    })
  }
}

/**
 * What the workers of one node know of each other's readers of the message
 * service's topics (sibling-readers.ts): deliveries that came on the local
 * bus for a topic no client here reads (0 once every worker told the
 * service's worker what its clients read), and SUBACKs sent without that
 * worker's confirmation.
 */
export function registerInterestMetrics (registry: client.Registry, interest: () => { unread: number, timeouts: number }): void {
  const figures = [
    ['unread', 'warbler_routing_unread_deliveries_total', 'Message service deliveries that came on the local bus for a topic no client of this worker reads.'],
    ['timeouts', 'warbler_routing_subscribe_unconfirmed_total', 'SUBACKs sent before the message service\'s worker confirmed it knew of the subscription (it did not answer in time).']
  ] as const
  for (const [key, name, help] of figures) {
    let reported = 0
    new client.Counter({
      name,
      help,
      registers: [registry],
      collect () {
        const now = interest()[key]
        this.inc(Math.max(0, now - reported))
        reported = now
      }
    })
  }
}

/** The same figures for $SYS, as `routing/{path}/{sent|received|dropped}`. */
export function routingSys (now: ReturnType<RoutingPaths>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const path of ['local', 'redis'] as const) {
    const c = now[path]
    if (c === null) continue
    for (const kind of ['sent', 'received', 'dropped'] as const) out[`routing/${path}/${kind}`] = c[kind]
  }
  return out
}
