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
  // CONNACK 1 (a protocol level other than 3 or 4, such as MQTT 5), and
  // CONNACK 2 for an MQTT 3.1 client id over maxClientsIdLength (64).
  if (err.message === 'unacceptable protocol version') return 'protocol_version'
  if (err.message === 'identifier rejected') return 'client_id_rejected'
  return null
}
