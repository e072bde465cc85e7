/**
 * The broker's running figures as plain numbers: incremented on the hot path
 * at the cost of an addition, read by $SYS (sys.ts) and /metrics (metrics.ts).
 */

/** Why something was refused; each is a metric label and a $SYS topic. */
export const refusalReasons = [
  'anonymous',
  'login_failed',
  'login_rate_limited',
  'login_busy',
  'client_id_rejected',
  'protocol_version',
  'connection_limit',
  'connection_rate',
  'packet_too_large',
  'malformed_packet',
  'payload_too_large',
  'rate_limited',
  'not_authorized',
  'subscribe_denied',
  'too_many_subscriptions',
  'slow_consumer',
  'offline_queue_full',
  'awaiting_pubrel',
  'receive_maximum'
] as const
export type RefusalReason = typeof refusalReasons[number]

/**
 * MQTT 5 CONNECT values the broker replaced with its own (connect-caps.ts),
 * and sessions or delayed wills past `maxPendingSessions` (server/node.ts):
 * each is a metric label.
 */
export const connectCaps = ['server_keep_alive', 'keep_alive', 'session_expiry', 'pending_sessions', 'delayed_wills'] as const
export type ConnectCap = typeof connectCaps[number]

export class Stats {
  readonly startedAt = Date.now()
  connectionsTotal = 0
  /** Highest number of clients connected at once. */
  clientsMaximum = 0
  messagesReceived = 0
  messagesSent = 0
  bytesReceived = 0
  bytesSent = 0
  /** QoS 0 deliveries skipped for slow consumers, plus refused publishes. */
  publishDropped = 0
  /** Publishes held back because routing was at maxInflight. */
  backpressureWaits = 0
  authSuccess = { password: 0, jwt: 0, device_token: 0, anonymous: 0 }
  readonly refusals: Record<RefusalReason, number> = Object.fromEntries(refusalReasons.map((r) => [r, 0])) as Record<RefusalReason, number>

  readonly caps: Record<ConnectCap, number> = Object.fromEntries(connectCaps.map((c) => [c, 0])) as Record<ConnectCap, number>

  refuse (reason: RefusalReason): void {
    this.refusals[reason]++
  }

  capped (cap: ConnectCap): void {
    this.caps[cap]++
  }
}
