/**
 * How the message service is connected to brokers:
 * - embedded: in the broker's process, through aedes' own publish/subscribe
 *   (no extra hop, the default);
 * - MQTT: as a privileged MQTT client of a broker (`warbler bridge`).
 * Both feed `MessageService.handle` with (user, clientId, payload) from
 * `wb/u/{user}/out/{clientId}`, which the broker derives from the
 * authenticated connection, and the publish's MQTT 5 properties (a request's
 * Response Topic and Correlation Data, a send's user properties); both
 * publish its replies and deliveries, with their properties. The properties
 * travel with the packet everywhere it goes: aedes keeps them on the packet
 * it routes, the local bus between workers carries them in its frames'
 * extras (broker/bus-frames.ts), the Redis emitter in its encoding of the
 * packet, and `warbler bridge` connects with MQTT 5 to receive them.
 */
import type { Aedes } from 'aedes'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { parseStampedOut, type PublishProperties, SERVICE_OUT_FILTER } from '@warbler/sdk/protocol'
import type { MessageService, Transport } from './service.js'
import type { Audience } from './fanout.js'

/**
 * What the broker hands the embedded service for each publish it routed
 * (its hooks call it once aedes has routed the packet): the service's end of
 * the broker's ingest hook. The promise paces the publisher; undefined when
 * the publish was not for the service.
 */
export type Ingest = (packet: RoutedPacket) => Promise<void> | undefined

/** A publish as aedes routes it: MQTT 5 properties when the publisher (an MQTT 5 client) gave any. */
interface RoutedPacket { topic: string, payload: Buffer | string, properties?: PublishProperties }

/**
 * Publish through an aedes instance in this process. While no other broker
 * shares the routing (`shared()` false: another worker of this node or a
 * broker of another node, whose clients' subscriptions are not known here),
 * the service learns who subscribes to what from aedes: its emitter holds
 * every connection's subscriptions, its persistence those of persistent
 * sessions, connected or not (with Redis, every broker's). While another
 * broker shares it, every frame goes to both of a user's or device's topics.
 * `shared` is asked at each lookup: a broker of another node can join later,
 * and a lone worker with Redis should not pay for topics nobody reads.
 * `othersRead`: the subscriptions of the other workers of this node, as they
 * told this one (broker/sibling-readers.ts); `shared()` is false only while
 * all of them did.
 */
export function embeddedTransport (broker: Aedes, shared: () => boolean, othersRead: (topic: string) => boolean = () => false): Transport {
  const publish = (topic: string, payload: Buffer, qos: 0 | 1, props?: PublishProperties): Promise<void> => new Promise<void>((resolve) => {
    const packet = { cmd: 'publish' as const, topic, payload, qos, retain: false, dup: false }
    // Only when there are some: a packet without properties stays as small as before on the bus.
    broker.publish(props === undefined ? packet : { ...packet, properties: props as Record<string, unknown> }, () => resolve())
  })
  const inside = broker as unknown as {
    mq: { _matcher?: { match?: (topic: string) => unknown[] } }
    persistence: { subscriptionsByTopic: (topic: string) => Promise<unknown[]> }
  }
  const matcher = inside.mq._matcher
  // mqemitter's subscription table; if a version of it ever hides it, publish to both topics.
  if (typeof matcher?.match !== 'function') return { publish }
  const live = (topic: string): boolean => (matcher.match as (topic: string) => unknown[])(topic).length > 0 || othersRead(topic)
  // Shared: `any` true puts a user's frames on both topics; `live` false for both of a device's topics does the same.
  const audience: Audience = {
    live: (topic) => !shared() && live(topic),
    any: (topic) => shared() || live(topic) || inside.persistence.subscriptionsByTopic(topic).then((subs) => subs.length > 0)
  }
  return { publish, audience }
}

/**
 * Route the broker's chat sends to the service.
 *
 * A send from a client of this broker goes through the `published` hook
 * (`setIngest`): it runs once aedes has routed the packet, and holds the
 * publisher's gate slot until the service has stored and acknowledged it,
 * so clients are paced by the archive. It must not hold aedes' routing slot
 * (an mq handler's callback) instead: the service's own publishes (the
 * deliveries and the ack) need routing slots too, and with every slot held
 * by a send waiting for them nothing would move again.
 *
 * A send routed in from another broker sharing the emitter (a cluster) has
 * no local publisher to pace: it is handed over from an mq subscription
 * whose callback returns at once.
 */
export function attachEmbedded (broker: Aedes, service: MessageService, setIngest: (fn: Ingest | null) => void): () => Promise<void> {
  const handle = (packet: RoutedPacket): Promise<void> | undefined => {
    const who = parseStampedOut(packet.topic)
    if (who === null) return undefined
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
    return service.handle(who.user, who.clientId, payload, packet.properties)
  }
  setIngest(handle)
  const remote = (packet: RoutedPacket & { brokerId?: string }, cb: () => void): void => {
    if (packet.brokerId !== undefined && packet.brokerId !== broker.id) void handle(packet)
    cb()
  }
  broker.subscribe(SERVICE_OUT_FILTER, remote, () => {})
  return () => new Promise<void>((resolve) => {
    setIngest(null)
    broker.unsubscribe(SERVICE_OUT_FILTER, remote, () => resolve())
  })
}

/**
 * Connect to a broker as the service's MQTT client: a persistent session
 * (`clean: false`), so what users send while the service is away is queued
 * for it by the broker and handed over when it is back; QoS 1 both ways;
 * reconnects by itself after the first connection. MQTT 5, so that the
 * properties of what users publish reach the service; its session never
 * expires (Session Expiry Interval 0xFFFFFFFF), as an MQTT 3.1.1 persistent
 * session does not.
 *
 * `onMessage` is attached before the connection opens: a persistent
 * session's queued messages follow CONNACK at once, and mqtt.js acknowledges
 * a QoS 1 message as soon as its 'message' listeners return, so a listener
 * attached after connecting would let them be acknowledged and lost.
 *
 * Rejects when the first connection fails (unreachable broker, refused
 * login), with the reason, and leaves nothing open.
 */
export async function mqttTransport (url: string, opts: IClientOptions, onMessage: (topic: string, payload: Buffer, props: PublishProperties | undefined) => void): Promise<{ transport: Transport, client: MqttClient }> {
  const client = mqtt.connect(url, {
    protocolVersion: 5,
    properties: { sessionExpiryInterval: 0xFFFFFFFF },
    clean: false,
    reconnectPeriod: 1000,
    connectTimeout: 10_000,
    ...opts
  })
  client.on('message', (topic, payload, packet) => { onMessage(topic, payload, packet.properties) })
  await new Promise<void>((resolve, reject) => {
    const done = (err?: Error): void => {
      client.off('connect', onConnect)
      client.off('error', onError)
      client.off('close', onClose)
      if (err === undefined) { resolve(); return }
      client.end(true)
      reject(err)
    }
    const onConnect = (): void => { done() }
    const onError = (err: Error): void => { done(err) }
    // A socket closed before CONNACK with no error (a broker that drops the connection).
    const onClose = (): void => { done(new Error('the broker closed the connection before accepting it')) }
    client.on('connect', onConnect)
    client.on('error', onError)
    client.on('close', onClose)
  })
  // After the first connection, errors are transient: mqtt.js reconnects.
  client.on('error', () => {})
  const transport: Transport = {
    publish: (topic, payload, qos, props) => new Promise<void>((resolve) => {
      client.publish(topic, payload, props === undefined ? { qos } : { qos, properties: props as Record<string, unknown> }, () => resolve())
    })
  }
  return { transport, client }
}

/**
 * A transport whose connection comes later: the service is opened before
 * its MQTT connection (a data dir it cannot open stops the start before it
 * connects), and its publishes go through once `bind` has the connection.
 * Nothing is published before: nothing is handled before.
 */
export function laterTransport (): { transport: Transport, bind: (t: Transport) => void } {
  let bound: Transport | undefined
  const transport: Transport = { publish: async (topic, payload, qos, props) => { await bound?.publish(topic, payload, qos, props) } }
  return { transport, bind: (t) => { bound = t } }
}
