/**
 * Two fixes to how aedes (1.2, and still 2.0.0-beta.1) hands messages to a connected client. server/node.ts
 * applies them to every Client that `aedes.handle()` returns, before the
 * client's subscriptions exist (aedes reads `client.deliverQoS` and
 * `client.deliver0` when it subscribes).
 *
 * 1. CONNACK first, then the queue, then what arrives live. aedes restores
 *    a persistent session's subscriptions before it writes CONNACK, so a
 *    message routed in between went out first: against MQTT-3.2.0-1
 *    (CONNACK is the server's first packet), and mqtt.js (the SDK's base)
 *    then deadlocks, as it holds the PUBACK until it is connected and reads
 *    nothing more meanwhile. And after CONNACK aedes sends the session's
 *    queue while live messages already flow, so a live message overtook the
 *    queued ones before it (measured: 68 to 289 of 3,000 messages of one
 *    publisher out of order across six reconnects, test/broker/resume-order).
 *    So live deliveries wait until the connection is ready, CONNACK written
 *    and queue sent (aedes' `clientReady`), or until it ends. aedes queues a
 *    QoS 1/2 message for every persistent session before it routes it, so a
 *    message routed while the session reconnects is both in the queue and
 *    held here: the held copy of a message the queue carried is dropped
 *    (sent twice it was a duplicate, and its PUBACK'd queue entry gone, the
 *    second send failed with "no such packet" and aedes closed the
 *    connection, leaving the session subscribed to nothing until its next
 *    reconnect: the test's subscriber stalled). A message the queue bound
 *    refused is held and sent the same way; offline-bound.ts keeps its
 *    packet id out of the store. A live copy can also come after the queue
 *    is sent: aedes queues a message for each persistent subscriber in turn
 *    (a Redis round trip each) and routes it once all are queued, so a
 *    session that resumes meanwhile reads it from its queue before it is
 *    routed. Sent again it came twice without DUP (cluster chaos test, seed
 *    2482532230: p0 34 to 37 again, 190 ms after their first copy, just
 *    after the session resumed; test/broker/resume-order.test.ts). So
 *    the messages the queue carried are remembered for LATE_MS after it is
 *    sent, and their live copies dropped.
 *
 * 2. Exact de-duplication. aedes drops a message for a client unless its
 *    per-broker counter is above the highest counter already delivered to
 *    that client. That assumes messages are routed in order, but a QoS 1/2
 *    publish is first queued in the persistence (a Redis round trip) while a
 *    QoS 0 publish is routed at once, so a later QoS 0 message overtakes an
 *    earlier QoS 1 one, which was then silently not sent to the connected
 *    client (a persistent session kept it queued until its next reconnect;
 *    measured: 500 QoS 1 messages interleaved with QoS 0 ones, 195 to 261
 *    delivered live with Redis). The case aedes' check exists for is one
 *    message matching two overlapping subscriptions of the same client, whose
 *    deliveries come back to back: here a duplicate is the same (broker id,
 *    counter) among the client's last DEDUPE_WINDOW deliveries.
 */
import type { Duplex } from 'node:stream'
import type { Aedes, Client } from 'aedes'
import type { OfflineBound } from './offline-bound.js'
import { clientDelivery, type Deliver, type DeliverPacket, queueSource, setClientDelivery, setDuplicateMarks } from './aedes-internals.js'

/** Deliveries remembered per client for de-duplication. */
const DEDUPE_WINDOW = 8

/** Stands in for aedes' per-client high-water marks: nothing is ever "seen", so its check always passes. */
const NEVER_SEEN = new Proxy<Record<string, number>>(Object.create(null) as Record<string, number>, {
  get: () => undefined,
  set: () => true,
  deleteProperty: () => true
})

/** Returns the function that fixes one client's delivery; call it right after `broker.handle()`. */
export function createDeliveryFixes (broker: Aedes, bound: OfflineBound): (client: Client, conn: Duplex) => void {
  const releases = new WeakMap<object, () => void>()
  broker.on('clientReady', (client) => { releases.get(client)?.() })
  /** Each reconnecting session's queue reads, by client, until its held deliveries are released. */
  const resuming = new WeakMap<object, Resume>()
  readQueuesAgain(broker, resuming)

  return (client, conn) => {
    const { deliverQoS, deliver0 } = clientDelivery(client)
    setDuplicateMarks(client, NEVER_SEEN)

    // The last DEDUPE_WINDOW (broker id, counter) pairs, as two rings: no key
    // string is built per delivery.
    let ids: Array<string | undefined> | null = null
    let counters: Array<number | undefined> | null = null
    let next = 0
    const duplicate = (p: DeliverPacket): boolean => {
      const id = p.brokerId
      if (id == null || id === '') return false
      const n = p.brokerCounter
      if (ids === null || counters === null) {
        ids = new Array<string | undefined>(DEDUPE_WINDOW)
        counters = new Array<number | undefined>(DEDUPE_WINDOW)
      } else {
        for (let i = 0; i < DEDUPE_WINDOW; i++) if (counters[i] === n && ids[i] === id) return true
      }
      ids[next] = id
      counters[next] = n
      next = (next + 1) % DEDUPE_WINDOW
      return false
    }

    let held: Array<{ deliver: Deliver, packet: DeliverPacket }> | null = []
    const carried = new Set<string>()
    /** After release: what the queue carried and whose live copy has not come yet (see 1.). */
    let late: Set<string> | null = null
    resuming.set(client, {
      carried,
      beforeRead: () => {
        // What the reads so far carried is not sent again at release: let go
        // of it now. (A copy routed during one read is carried by the next
        // one when the store has it; what it does not have, QoS 0, retained
        // messages, a clean session's, stays held until release.)
        if (held !== null) held = held.filter((h) => { const k = routingKey(h.packet); return k === null || !carried.has(k) })
      }
    })
    const run = (deliver: Deliver, packet: DeliverPacket, cb: (err?: Error) => void): void => {
      if (duplicate(packet)) {
        setImmediate(cb)
        return
      }
      if ((packet.qos ?? 0) > 0 && held !== null && bound.refused(packet, client.id, false)) {
        // Refused by the queue bound while the session reconnects: after its
        // queue it would come after messages queued later. Refused it stays.
        setImmediate(cb)
        return
      }
      if (held === null) {
        if (late !== null && (packet.qos ?? 0) > 0 && lateCopy(late, packet)) {
          setImmediate(cb)
          return
        }
        if ((packet.qos ?? 0) > 0) bound.refused(packet, client.id, true)
        deliver(packet, cb)
        return
      }
      // Held, but the routing is told at once that this subscriber is done:
      // waiting for the session's queue to be sent would hold every
      // publisher's PUBACK meanwhile (the emitter's concurrency fills up:
      // measured, routing for the whole broker paused at 250 held messages).
      // A QoS 1/2 message is already in the session's queue, so nothing is
      // lost if the connection ends first; what is held lasts only while the
      // queue (at most offlineQueue messages) is written.
      held.push({ deliver, packet })
      setImmediate(cb)
    }
    setClientDelivery(client, {
      deliver0: (packet, cb) => { run(deliver0, packet, cb) },
      // aedes' deliverQoS hands QoS 0 packets to deliver0: do it here, so that a
      // packet is checked for duplicates once.
      deliverQoS: (packet, cb) => { run(packet.qos === 0 ? deliver0 : deliverQoS, packet, cb) }
    })

    const release = (): void => {
      if (held === null) return
      const waiting = held
      held = null
      releases.delete(client)
      resuming.delete(client)
      for (const h of waiting) {
        const k = routingKey(h.packet)
        // The queue carried it; otherwise deliver (a failed write is aedes'
        // to handle, as for any delivery: the message stays in the session).
        if (k === null || !carried.has(k)) h.deliver(h.packet, () => {})
      }
      if (carried.size > 0) {
        late = carried
        setTimeout(() => { late = null }, LATE_MS).unref()
      }
    }
    releases.set(client, release)
    conn.once('close', release)
  }
}

/** Wraps the store's queue reads for resuming sessions (see Resume). */
function readQueuesAgain (broker: Aedes, resuming: WeakMap<object, Resume>): void {
  const source = queueSource(broker)
  const stream = source.outgoingStream.bind(source)
  source.outgoingStream = (client) => {
    const r = resuming.get(client)
    if (r === undefined) return stream(client)
    return (async function * tap () {
      // The queue is read again until a read finds nothing new: what was
      // queued while it was sent comes from the store, in order, rather than
      // held in memory (see Resume).
      for (let read = 0; read < MAX_QUEUE_READS; read++) {
        r.beforeRead()
        let fresh = 0
        for await (const p of stream(client)) {
          const k = routingKey(p)
          if (k !== null) {
            if (r.carried.has(k)) continue
            r.carried.add(k)
          }
          fresh++
          // Sent on an earlier connection and never acknowledged: this is a
          // re-delivery, which MQTT-3.3.1-1 says must carry DUP (aedes keeps
          // the packet id but not the flag).
          if (p.messageId !== undefined && p.messageId !== null) p.dup = true
          yield p
          // A long read (Redis: a round trip or two per message) would hold
          // all that is routed while it lasts: read again from here instead.
          if (fresh >= READ_CHUNK) break
        }
        if (fresh === 0) return
      }
    })()
  }
}

/**
 * A session's queue being sent on a new connection. Live copies are held
 * meanwhile; with the store being slow to read (Redis: a round trip or two
 * per message) and a steady flow, they grew without bound, in memory. Now the
 * queue is read again after each read (of at most READ_CHUNK messages), and
 * each read lets go of the held copies earlier reads carried: what is held
 * is what two reads take to send, and what the store does not have.
 */
interface Resume {
  /** The routing keys the reads sent. */
  carried: Set<string>
  beforeRead: () => void
}

/** Messages one read of a resuming session's queue sends at most before it reads again. */
const READ_CHUNK = 200
/** Reads of a resuming session's queue at most, before what is routed meanwhile is simply held (a flow the reads never catch up with). */
const MAX_QUEUE_READS = 500

/**
 * How long after a resumed session's queue is sent live copies of what it
 * carried are still expected: longer than a persistence command waits for an
 * absent Redis (persistence.ts, REDIS_MAX_RETRIES: about 20 s), which is how
 * long queueing a message for the other subscribers, and so its routing, can take.
 */
const LATE_MS = 30_000

/** Whether this live copy is of a message the queue carried (it is then forgotten: one copy each). */
function lateCopy (late: Set<string>, p: DeliverPacket): boolean {
  const k = routingKey(p)
  return k !== null && late.delete(k)
}

/** A message's identity across the routing: the broker that routed it and its counter there. */
function routingKey (p: DeliverPacket): string | null {
  return p.brokerId == null || p.brokerId === '' || p.brokerCounter === undefined ? null : `${p.brokerId}\u0000${p.brokerCounter}`
}
