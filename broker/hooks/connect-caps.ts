/**
 * The MQTT 5 CONNECT values the broker caps, set before aedes reads them
 * (preConnect runs before its init): the keep alive (Server Keep Alive in
 * the CONNACK, and the broker times the connection by it) and, counted here,
 * the Session Expiry Interval (aedes clamps it to `sessionExpiryIntervalLimit`
 * and says so in the CONNACK). MQTT 3.1.1 has no way to tell a client either,
 * so its CONNECT is left as it is.
 */
import type { Client } from 'aedes'
import { setServerKeepAlive } from '../aedes-internals.js'
import type { Stats } from '../stats.js'
import type { Config } from '../../shared/config.js'

interface ConnectValues { keepalive?: number, properties?: { sessionExpiryInterval?: number } }

export function applyConnectCaps (cfg: Pick<Config, 'serverKeepAlive' | 'maxKeepAlive' | 'maxSessionExpiry'>, stats: Stats, client: Client, packet: ConnectValues): void {
  const asked = packet.keepalive ?? 0
  if (cfg.serverKeepAlive > 0) {
    setServerKeepAlive(client, cfg.serverKeepAlive)
    if (asked !== cfg.serverKeepAlive) stats.capped('server_keep_alive')
  } else if (cfg.maxKeepAlive > 0 && (asked === 0 || asked > cfg.maxKeepAlive)) {
    setServerKeepAlive(client, cfg.maxKeepAlive)
    stats.capped('keep_alive')
  }
  const expiry = packet.properties?.sessionExpiryInterval ?? 0
  if (cfg.maxSessionExpiry > 0 && expiry > cfg.maxSessionExpiry) stats.capped('session_expiry')
}
