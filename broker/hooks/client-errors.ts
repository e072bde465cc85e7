/** Which errors aedes reports for a connection count as a refusal, and as which. */
import type { RefusalReason } from '../stats.js'

/**
 * Errors aedes reports for a connection (clientError, connectionError) that
 * mean the client broke the protocol: mqtt-packet's parse errors, aedes'
 * protocol checks, and the hooks' own (publish.ts, subscribe.ts); also `no
 * such packet`, the persistence's answer (aedes then closes the connection)
 * to a PUBREC of a persistent session naming a packet id the broker never
 * sent. Not: timeouts, resets, refused logins.
 */
const MALFORMED = /^(cannot parse|connect flag|invalid|malformed|not supported|packet must not|packet too short|unknown property|will (qos|retain)|[#+] is (not|only) allowed|empty topic|impossible to|packet received not valid|no such packet)/i

/** The refusal an error aedes reports for a connection counts as, if any. */
export function classifyClientError (err: Error): RefusalReason | null {
  if (MALFORMED.test(err.message)) return 'malformed_packet'
  // Refused by aedes itself at CONNECT, before the authenticate hook sees it:
  // CONNACK 1 (a protocol level aedes does not speak: since aedes 2 accepts 3,
  // 4 and 5, the only ones mqtt-packet parses, no CONNECT reaches it), and
  // CONNACK 2 for an MQTT 3.1 client id over maxClientsIdLength (64), or for
  // an empty MQTT 3.1/3.1.1 client id without clean session.
  if (err.message === 'unacceptable protocol version') return 'protocol_version'
  if (err.message === 'identifier rejected') return 'client_id_rejected'
  return null
}
