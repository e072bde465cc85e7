/**
 * What an MQTT 5 client is told when the broker refuses it something: the
 * reason code and a reason string, in the CONNACK, PUBACK, PUBREC or
 * DISCONNECT itself. aedes answers an MQTT 5 client only with the codes it
 * maps from MQTT 3.1.1 (CONNACK) or with 0x87 (PUBACK/PUBREC), without a
 * reason string on CONNACK, so Warbler writes these packets itself, on the
 * connection aedes writes to, and then keeps aedes from answering again.
 * MQTT 3.1/3.1.1 clients never get here: they keep their 3.1.1 answers.
 */
import type { Aedes, Client, PublishPacket } from 'aedes'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { protocolLevel, wantsProblemInformation } from './aedes-internals.js'
import type { FailureReason } from './login-log.js'
import type { RefusalReason } from './stats.js'

/** The MQTT 5 reason codes Warbler sends (MQTT 5 section 2.4). */
export const Reason = {
  unspecifiedError: 0x80,
  notAuthorized: 0x87,
  badUserNameOrPassword: 0x86,
  clientIdNotValid: 0x85,
  serverUnavailable: 0x88,
  serverBusy: 0x89,
  serverShuttingDown: 0x8B,
  keepAliveTimeout: 0x8D,
  sessionTakenOver: 0x8E,
  receiveMaximumExceeded: 0x93,
  packetTooLarge: 0x95,
  quotaExceeded: 0x97,
  connectionRateExceeded: 0x9F
} as const

export function isMqtt5 (client: Client | null | undefined): client is Client {
  return client != null && protocolLevel(client) === 5
}

/**
 * The CONNACK reason code of a refused login. The 3.1.1 codes are too coarse:
 * a lockout and a rate are not bad credentials, and a disabled user (who gave
 * the right password) is not authorized rather than unknown.
 */
export function connackReason (reason: RefusalReason, why: FailureReason): number {
  switch (reason) {
    case 'client_id_rejected': return Reason.clientIdNotValid
    case 'anonymous': return Reason.notAuthorized
    case 'login_rate_limited': return Reason.quotaExceeded
    case 'connection_rate': return Reason.connectionRateExceeded
    case 'connection_limit': return Reason.serverBusy
    case 'login_busy': return Reason.serverBusy
    default: return why === 'user disabled' ? Reason.notAuthorized : Reason.badUserNameOrPassword
  }
}

/**
 * The MQTT 5 reason code that goes with each error notice the broker sends
 * (docs/errors.md shows them; a test keeps it in step). A refused SUBSCRIBE
 * filter is 0x87 from aedes itself. A payload over maxPayload has none: MQTT
 * 5 allows no 0x95 on PUBACK/PUBREC (section 3.4.2.1; mqtt.js's parser
 * rejects the packet), and 0x97 reads as the publish rate; it is acknowledged
 * with 0, as for MQTT 3.1.1, and the notice says why. A publish over the rate
 * is answered 0x97 (Quota exceeded) and noticed too: the SDK takes the first
 * of the two answers and ignores the other (sdk/src/send-queue.ts).
 */
export const noticeReasonCodes = {
  not_authorized: Reason.notAuthorized,
  too_many_subscriptions: Reason.notAuthorized,
  rate_limited: Reason.quotaExceeded
} as const

/** The PUBACK/PUBREC reason code of a refused publish, by its refusal; null: acknowledged with 0. */
export function publishReason (reason: RefusalReason): number | null {
  if (reason === 'payload_too_large') return null
  return reason in noticeReasonCodes ? noticeReasonCodes[reason as keyof typeof noticeReasonCodes] : Reason.notAuthorized
}

/**
 * One write of the whole packet, in MQTT 5 framing. Not mqtt-packet's
 * writeToStream (aedes' lib/write.js): it corks the stream until the next
 * tick, and a DISCONNECT written just before the connection is destroyed
 * (keep alive timeout, packet too large) would never leave.
 */
function send (client: Client, packet: Record<string, unknown>): void {
  let bytes: Buffer
  try {
    bytes = mqttPacket.generate(packet as unknown as Packet, { protocolVersion: 5 })
  } catch {
    // Not encodable (a packet without the id it needs): nothing to answer,
    // and never an exception in the hook that asked.
    return
  }
  if (!client.conn.destroyed) client.conn.write(bytes)
}

/**
 * Refuse a CONNECT with `code` and `message` as its reason string, then
 * close. The close comes a turn later, as aedes' own refusal does, so the
 * CONNACK is on its way first; `then` runs after it (the authenticate hook's
 * answer, which aedes ignores for a closed client).
 */
export function refuseConnect (client: Client, code: number, message: string, then: () => void): void {
  send(client, { cmd: 'connack', sessionPresent: false, reasonCode: code, properties: { reasonString: message } })
  setImmediate(() => {
    client.close()
    then()
  })
}

/** Answer a refused QoS 1/2 publish with PUBACK or PUBREC `code` (a reason string if there is one and the client wants them). */
export function refusePublish (client: Client, packet: PublishPacket, code: number, message: string | null): void {
  if (packet.qos === 0) return
  send(client, {
    cmd: packet.qos === 1 ? 'puback' : 'pubrec',
    messageId: packet.messageId,
    reasonCode: code,
    ...(message !== null && wantsProblemInformation(client) ? { properties: { reasonString: message } } : {})
  })
}

/**
 * Send DISCONNECT `code` with `message` as its reason string, when the
 * connection still takes it; the caller closes (or aedes does).
 */
export function sendDisconnect (client: Client, code: number, message: string): void {
  if (client.closed || client.conn.destroyed || client.conn.writableEnded) return
  send(client, { cmd: 'disconnect', reasonCode: code, properties: { reasonString: message } })
}

/**
 * A connection aedes drops for a missed keep alive: it emits
 * 'keepaliveTimeout' and then closes without a word; an MQTT 5 client is told
 * DISCONNECT 0x8D first.
 */
export function sayKeepAliveTimeout (b: Aedes): void {
  b.on('keepaliveTimeout', (client: Client) => {
    if (isMqtt5(client)) sendDisconnect(client, Reason.keepAliveTimeout, 'no packet within one and a half keep alive periods')
  })
}
