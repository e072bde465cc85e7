/**
 * Every part of aedes that Warbler reads or replaces and that aedes' typings
 * do not declare, each behind one typed function. All of them are of aedes
 * 2.0.0-beta.1 (node_modules/aedes; files named below are inside it); an upgrade
 * that moves one fails test/broker/aedes-internals.test.ts, which names the
 * field, instead of failing somewhere in the broker at run time.
 *
 * Nothing here changes what aedes does; the functions only read, or (the
 * delivery functions and the duplicate marks, delivery.ts) replace a field
 * with one of the same shape.
 */
import type { Duplex } from 'node:stream'
import type { Aedes, AedesPublishPacket, AuthenticateError, Client, PublishPacket } from 'aedes'

/** The aedes version these accessors were written against (a test checks the installed one). */
export const AEDES_VERSION = '2.0.0-beta.1'

// ---------------------------------------------------------------- the broker

/**
 * The clients connected to this broker, by client id: aedes.js, `this.clients`
 * (filled by lib/handlers/connect.js once a CONNECT is accepted). Warbler
 * walks it to close revoked logins, publish wills at shutdown, count `$SYS`
 * sessions, answer a message service's birth, and spot takeovers.
 */
export function connectedClients (b: Aedes): Readonly<Record<string, Client>> {
  return (b as unknown as { clients: Record<string, Client> }).clients
}

/**
 * Take a client out of the broker's table and count without the events and
 * notices of `unregisterClient`: aedes.js, `deleteClient(id)`. Warbler undoes
 * the registration of a client that closed while it connected (connect-race.ts).
 */
export function forgetClient (b: Aedes, clientId: string): void {
  (b as unknown as { deleteClient: (id: string) => void }).deleteClient(clientId)
}

type EmitterHandler = (packet: { topic: string, payload: Buffer }, done: () => void) => void

/** The broker's routing emitter (mqemitter or Warbler's shared one, mq.ts). */
export interface BrokerEmitter { on: (topic: string, fn: EmitterHandler, cb: () => void) => void }

/**
 * aedes.js, `this.mq`: its routing emitter. login-log.ts listens on it for
 * `$SYS/+/new/clients` of other brokers, which aedes handles there without
 * an event (a takeover by a client of another broker).
 */
export function routingEmitter (b: Aedes): BrokerEmitter {
  return (b as unknown as { mq: BrokerEmitter }).mq
}

/** The part of the aedes persistence authorizePublish reads. */
export interface IncomingStore { incomingGetPacket: (client: Client, packet: PublishPacket) => Promise<unknown> }

/**
 * aedes.js, `this.persistence`: the hooks ask it whether a QoS 2 packet id
 * is already stored, as lib/handlers/publish.js does before it routes one
 * (a stored one is answered from the store and never routed: not gated).
 */
export function incomingStore (b: Aedes): IncomingStore {
  return (b as unknown as { persistence: IncomingStore }).persistence
}

/** What aedes' persistence hands over for a session's queue: packets with their routing marks. */
type QueueStream = (client: Client) => AsyncIterable<DeliverPacket>
export interface QueueSource { outgoingStream: QueueStream }

/**
 * aedes.js, `this.persistence.outgoingStream`: lib/handlers/connect.js
 * (`emptyQueue`) reads a reconnecting session's queue through it, after
 * CONNACK. delivery.ts taps it to learn which messages the queue carried.
 */
export function queueSource (b: Aedes): QueueSource {
  return (b as unknown as { persistence: QueueSource }).persistence
}

/** The part of the persistence that forgets a packet sent to a session (as a PUBACK does). */
export interface OutgoingStore { outgoingClearMessageId: (client: Client, packet: { messageId?: number }) => Promise<unknown> }

/**
 * aedes.js, `this.persistence.outgoingClearMessageId`: lib/handlers/puback.js
 * calls it when a client acknowledges a packet (by its packet id). packet-size.ts calls it for
 * a packet it does not send.
 */
export function outgoingStore (b: Aedes): OutgoingStore {
  return (b as unknown as { persistence: OutgoingStore }).persistence
}

// ---------------------------------------------------------------- a client

/**
 * One subscription as aedes keeps it for a client: lib/handlers/subscribe.js,
 * `class Subscription` (`si`: its MQTT 5 Subscription Identifier, if any).
 */
export interface SubscriptionEntry { qos: number, si?: number }

/**
 * lib/client.js, `this.subscriptions` (filter -> { qos, ... }): the
 * subscribe hook counts them (maxSubscriptions), the forward hook reads a
 * message's QoS from them, `$SYS` counts those of clean sessions.
 */
export function clientSubscriptions (client: Client): Readonly<Record<string, SubscriptionEntry>> {
  return (client as unknown as { subscriptions: Record<string, SubscriptionEntry> }).subscriptions
}

export interface DeliverPacket { qos?: number, brokerId?: string | null, brokerCounter?: number, messageId?: number | null, dup?: boolean }
export type Deliver = (packet: DeliverPacket, cb: (err?: Error) => void) => void
export interface ClientDelivery { deliverQoS: Deliver, deliver0: Deliver }

/**
 * lib/client.js, `this.deliver0` and `this.deliverQoS`: the functions aedes
 * subscribes with for a client (lib/handlers/subscribe.js reads them when
 * a subscription is made). delivery.ts wraps them (CONNACK first, exact
 * de-duplication).
 */
export function clientDelivery (client: Client): ClientDelivery {
  const c = client as unknown as ClientDelivery
  return { deliverQoS: c.deliverQoS, deliver0: c.deliver0 }
}

export function setClientDelivery (client: Client, delivery: ClientDelivery): void {
  const c = client as unknown as ClientDelivery
  c.deliverQoS = delivery.deliverQoS
  c.deliver0 = delivery.deliver0
}

/**
 * lib/client.js, `this.duplicates` (broker id -> highest counter
 * delivered), read by its dedupe() and emptied per broker by aedes.js at a
 * broker's birth. delivery.ts replaces it with marks that never match.
 */
export function setDuplicateMarks (client: Client, marks: Record<string, number>): void {
  (client as unknown as { duplicates: Record<string, number> }).duplicates = marks
}

/** mqtt-packet's parser settings; after CONNECT, the parsed CONNECT packet itself. */
interface ParserSettings { protocolVersion?: number, bridgeMode?: boolean }
interface Parser { settings?: ParserSettings }

/**
 * lib/client.js, `this._parser`: the connection's mqtt-packet parser, which
 * keeps the CONNECT packet, password included, as its `settings`
 * (mqtt-packet parser.js). auth.ts trims them to what the parser reads.
 */
export function connectionParser (client: Client): Parser | undefined {
  return (client as unknown as { _parser?: Parser })._parser
}

/**
 * The keepalive the client asked for, in seconds (0: none). aedes keeps it
 * only as its timer's interval, lib/handlers/connect.js,
 * `client._keepaliveInterval = keepalive * 1500 + 1` (-1 before, lib/client.js).
 * For the connect log.
 */
export function keepaliveSeconds (client: Client): number {
  const interval = (client as unknown as { _keepaliveInterval?: number })._keepaliveInterval
  return interval === undefined ? 0 : Math.round((interval - 1) / 1500)
}

/**
 * lib/client.js, `this.version`: the MQTT protocol level of the CONNECT
 * (set by lib/handlers/connect.js). Typed as a number, but null until the
 * CONNECT is read. For the connect log.
 */
export function protocolLevel (client: Client): number | null {
  return (client as unknown as { version?: number | null }).version ?? null
}

/**
 * lib/client.js, `this._disconnected`: set by lib/handlers/index.js when
 * the client sent DISCONNECT (then its will is not published). For the
 * disconnect log and the wills published at shutdown.
 */
export function sentDisconnect (client: Client): boolean {
  return (client as unknown as { _disconnected?: boolean })._disconnected === true
}

/**
 * lib/client.js, `this.will`: the will aedes publishes when the
 * connection is lost (set by lib/handlers/connect.js once the client is
 * accepted; null without one). Shutdown publishes them first.
 */
export function pendingWill (client: Client): unknown {
  return (client as unknown as { will?: unknown }).will ?? null
}

/**
 * lib/client.js, `conn.client = this`: the client aedes made for a
 * connection, when only the connection is at hand (the packet guard and
 * the write watch, guard.ts, sit on the stream).
 */
export function clientOfConnection (conn: Duplex): Client | undefined {
  return (conn as { client?: Client }).client
}

/**
 * lib/client.js, `this.disconnectReasonCode`: the reason code of a DISCONNECT
 * the server sent an MQTT 5 client (aedes sets it in `disconnect()`), read on
 * 'clientDisconnect'. takeover-notice.ts sets it when it says 0x8E for aedes.
 */
export function setDisconnectReason (client: Client, code: number): void {
  (client as unknown as { disconnectReasonCode: number | null }).disconnectReasonCode = code
}

/** A packet as mqtt-packet's parser hands it to aedes. */
export interface ReadPacket { cmd: string, messageId?: number, reasonCode?: number }

/**
 * lib/client.js, `this._parser.on('packet', enqueue)`: every packet read from
 * the connection, in order, as aedes gets it (`close()` removes the
 * listeners). receive-window.ts listens for the acknowledgements that free a
 * client's Receive Maximum.
 */
export function onPacketRead (client: Client, fn: (packet: ReadPacket) => void): void {
  (client as unknown as { _parser: { on: (event: 'packet', fn: (packet: ReadPacket) => void) => void } })._parser.on('packet', fn)
}

/**
 * lib/handlers/connect.js, `client._cleanStart`: whether the CONNECT asked
 * for a new session (MQTT 5 Clean Start, MQTT 3 clean session). aedes-fixes.ts
 * tells a resumed session from a new one by it.
 */
export function cleanStartRequested (client: Client): boolean {
  return (client as unknown as { _cleanStart?: boolean })._cleanStart === true
}

/**
 * lib/client.js, `this.clean`: whether the session ends with the connection
 * (set by lib/handlers/connect.js from the Session Expiry Interval). The
 * typings make it read-only; aedes-fixes.ts lifts it while a resumed
 * session's queue is sent.
 */
export function setSessionClean (client: Client, clean: boolean): void {
  (client as unknown as { clean: boolean }).clean = clean
}

/** What aedes.js does with a will: publish it (`publishWill`), or sweep stored ones (`persistence.streamWill`). */
export interface WillPublisher { publishWill: (client: Client, will: WillPacket) => void }
export interface WillPacket { topic: string, properties?: Record<string, unknown> }
export interface WillStore { streamWill: (brokers: unknown) => AsyncIterable<WillPacket> }

/**
 * aedes.js, `publishWill(client, will)` (a lost connection's will, at once
 * or after its Will Delay Interval), and `this.persistence.streamWill`, read
 * by the sweep that publishes the wills of brokers that died
 * (`_clearWillInterval`). aedes-fixes.ts wraps both.
 */
export function willPaths (b: Aedes): { publisher: WillPublisher, store: WillStore } {
  const broker = b as unknown as WillPublisher & { persistence: WillStore }
  return { publisher: broker, store: broker.persistence }
}

/**
 * What aedes.js keeps in one process for the sessions of connections that
 * ended: the timers of a Session Expiry Interval (`clearSessionExpiry(id)`)
 * and of a Will Delay Interval (`clearDelayedWill(id)`), both also cleared
 * when the id registers again on this broker (`_finishRegisterClient`), and
 * `_takingOver`, the ids whose closing connection must neither expire the
 * session nor schedule its will (`scheduleSessionExpiry`, `scheduleWill`).
 * session-handover.ts does the same when the id registers on another broker.
 */
export interface SessionTimers {
  clearSessionExpiry: (clientId: string) => void
  clearDelayedWill: (clientId: string) => void
  readonly takingOver: Set<string>
}

export function sessionTimers (b: Aedes): SessionTimers {
  const broker = b as unknown as { clearSessionExpiry: (id: string) => void, clearDelayedWill: (id: string) => void, _takingOver: Set<string> }
  return {
    clearSessionExpiry: (id) => { broker.clearSessionExpiry(id) },
    clearDelayedWill: (id) => { broker.clearDelayedWill(id) },
    takingOver: broker._takingOver
  }
}

/** aedes.js, `this.persistence.delWill({ id, brokerId })`: forgets the will a broker stored for a client id. */
export function willRemover (b: Aedes): (clientId: string, brokerId: string) => Promise<unknown> {
  const p = (b as unknown as { persistence: { delWill: (c: { id: string, brokerId: string }) => Promise<unknown> } }).persistence
  return (id, brokerId) => p.delWill({ id, brokerId })
}

// ---------------------------------------------------------------- packets and errors

/**
 * lib/handlers/subscribe.js sets `packet.brokerId = null` on a retained
 * message it sends for a new subscription (so that dedupe lets it through);
 * the typings say brokerId is always a string. The forward hook does not
 * count such a replay against a slow consumer.
 */
export function isRetainedReplay (packet: AedesPublishPacket): boolean {
  return (packet as { brokerId: string | null }).brokerId === null
}

/**
 * lib/handlers/connect.js sets `err.errorCode` to the MQTT 3.1.1 CONNACK
 * return code when it refuses a CONNECT (its own checks, or the authenticate
 * hook's), for an MQTT 5 client too (which is sent the matching reason code).
 */
export function connackErrorCode (err: Error): number | undefined {
  return (err as { errorCode?: number }).errorCode
}

/**
 * The error the authenticate hook refuses a login with: aedes answers with
 * its `returnCode` as the CONNACK code (2 to 5, lib/handlers/connect.js).
 * The typings declare that code as a const enum, which cannot be used from
 * here (verbatimModuleSyntax), so the number is cast.
 */
export function authenticateError (message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode })
}

// ---------------------------------------------------------------- MQTT 5 answers

/**
 * lib/handlers/connect.js, `client._requestProblemInformation`: false when an
 * MQTT 5 client asked for no Reason String on acknowledgements
 * ([MQTT-3.1.2-29]; CONNACK and DISCONNECT may still carry one).
 */
export function wantsProblemInformation (client: Client): boolean {
  return (client as unknown as { _requestProblemInformation?: boolean })._requestProblemInformation !== false
}

/**
 * lib/handlers/publish.js, `packet._notAuthorized`: its enqueuePublish
 * neither acknowledges nor routes a packet so marked (aedes' own MQTT 5
 * refusal sets it after writing PUBACK/PUBREC 0x87). The publish hook sets it
 * when it has written the acknowledgement with its own reason code.
 */
export function markAnswered (packet: PublishPacket): void {
  (packet as { _notAuthorized?: boolean })._notAuthorized = true
}

/**
 * lib/handlers/connect.js, `client._serverKeepAlive`: when set before its
 * init() runs (preConnect), setKeepAlive uses it instead of the client's
 * keep alive and doConnack sends it as Server Keep Alive. aedes sets it itself
 * only from `keepaliveLimit`, which Warbler leaves off (it would refuse MQTT
 * 3.1.1 clients with a CONNACK code 3.1.1 does not have).
 */
export function setServerKeepAlive (client: Client, seconds: number): void {
  (client as unknown as { _serverKeepAlive?: number })._serverKeepAlive = seconds
}
