/**
 * Fixes to MQTT 5 bugs of aedes 2.0.0-beta.1 (node_modules/aedes; files named
 * below are inside it), made from outside at startup, without patching aedes.
 * Each is found by one of Eclipse Paho's MQTT 5 client tests
 * (test/interop/run-paho.sh --v5) and shown by a test in
 * test/broker/aedes-fixes.test.ts that fails without it. server/node.ts
 * installs them on the broker, and on every client right after
 * `createDeliveryFixes` (delivery.ts), so the client's deliveries pass here
 * before delivery.ts' de-duplication.
 *
 * 1. A resumed session's queue is sent (Paho: offline_message_queueing,
 *    publication_expiry). lib/handlers/connect.js, `emptyQueueFilter`, drops
 *    every queued message when `client.clean` is true, and `client.clean`
 *    means "the new session ends with this connection" (Session Expiry
 *    Interval 0, the MQTT 5 default). So a client that reconnects with Clean
 *    Start 0 and no Session Expiry Interval resumes its session (CONNACK says
 *    session present, its subscriptions are restored) but loses the messages
 *    queued for it. MQTT 5 (3.1.2.4) says Clean Start 0 resumes the session,
 *    queue included; only Clean Start 1 (`_cleanStart`, which the same line
 *    also checks) discards it. So while aedes reads such a session's queue
 *    (`persistence.outgoingStream`, called by connect.js `emptyQueue`) and
 *    sends it, `client.clean` is false; it is true again once the queue is
 *    sent (`clientReady`) or the connection ends, and the session still ends
 *    with the connection
 *    (aedes.js `scheduleSessionExpiry` reads the Session Expiry Interval).
 *
 * 2. A will is published without the Will Delay Interval (Paho: will_message,
 *    will_delay). aedes.js `publishWill` and its sweep of dead brokers' wills
 *    publish the will packet with all of the CONNECT's will properties, the
 *    Will Delay Interval (0x18) included; MQTT 5 allows that property only in
 *    a CONNECT's will (2.2.2.2), and a client that checks, as Paho's does,
 *    takes the PUBLISH as malformed and drops the connection, so the will was
 *    never seen. The other will properties (user properties, content type,
 *    message expiry...) are carried on, as MQTT 5 says (3.1.3.2).
 *
 * 3. and 4.: subscription-ids.ts and packet-size.ts.
 */
import type { Duplex } from 'node:stream'
import type { Aedes, Client } from 'aedes'
import {
  cleanStartRequested, clientDelivery, queueSource, setClientDelivery, setSessionClean, type WillPacket, willPaths
} from './aedes-internals.js'
import { createPacketSizeLimit } from './packet-size.js'
import { withAllSubscriptionIds } from './subscription-ids.js'

/** Installs the broker-wide fixes; returns the one to apply to every client right after `broker.handle()` and delivery.ts. */
export function createAedesFixes (broker: Aedes): (client: Client, conn: Duplex) => void {
  sendResumedQueue(broker)
  dropWillDelayOnPublish(broker)
  const limitPacketSize = createPacketSizeLimit(broker)
  return (client, conn) => {
    const { deliverQoS, deliver0 } = clientDelivery(client)
    setClientDelivery(client, { deliverQoS: withAllSubscriptionIds(client, deliverQoS), deliver0: withAllSubscriptionIds(client, deliver0) })
    limitPacketSize(conn)
  }
}

/** 1: the queue of a session resumed with Clean Start 0 is sent even when the new session ends with the connection. */
function sendResumedQueue (broker: Aedes): void {
  const resuming = new WeakMap<Client, () => void>()
  // The queue is sent once emptyQueue's pipeline is done, and aedes emits
  // clientReady right after it: not when the stream ends, as the last
  // message is still being stored and checked then.
  broker.on('clientReady', (client) => { resuming.get(client)?.() })
  const source = queueSource(broker)
  const stream = source.outgoingStream.bind(source)
  source.outgoingStream = (client) => {
    if (client.version === 5 && client.clean && !cleanStartRequested(client)) {
      setSessionClean(client, false)
      const restore = (): void => {
        resuming.delete(client)
        client.conn.removeListener('close', restore)
        setSessionClean(client, true)
      }
      resuming.set(client, restore)
      client.conn.once('close', restore)
    }
    return stream(client)
  }
}

/** 2: no PUBLISH of a will carries the Will Delay Interval. */
function dropWillDelayOnPublish (broker: Aedes): void {
  const { publisher, store } = willPaths(broker)
  const publishWill = publisher.publishWill.bind(publisher)
  publisher.publishWill = (client, will) => { publishWill(client, withoutWillDelay(will)) }
  const streamWill = store.streamWill.bind(store)
  store.streamWill = (brokers) => (async function * stored () {
    for await (const will of streamWill(brokers)) yield withoutWillDelay(will)
  })()
}

function withoutWillDelay (will: WillPacket): WillPacket {
  if (will.properties?.willDelayInterval === undefined) return will
  const { willDelayInterval: _, ...properties } = will.properties
  return { ...will, properties }
}
