/**
 * How the message service is connected to brokers:
 * - embedded: in the broker's process, through aedes' own publish/subscribe
 *   (no extra hop, the default);
 * - MQTT: as a privileged MQTT client of a broker (`warbler bridge`).
 * Both feed `MessageService.handle` with (user, clientId, payload) from
 * `wb/u/{user}/out/{clientId}`, which the broker derives from the
 * authenticated connection, and both publish its replies and deliveries.
 */
import type { Aedes } from 'aedes'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import type { MessageService, Transport } from './service.js'

/** The filter the service listens on; the broker appends the client id to `wb/u/{user}/out`. */
export const OUT_FILTER = 'wb/u/+/out/+'

/** (user, clientId) of a stamped out topic, or null. */
export function parseOutTopic (topic: string): { user: string, clientId: string } | null {
  const p = topic.split('/')
  if (p.length !== 5 || p[0] !== 'wb' || p[1] !== 'u' || p[3] !== 'out') return null
  return { user: p[2] as string, clientId: p[4] as string }
}

/** Publish through an aedes instance in this process. */
export function embeddedTransport (broker: Aedes): Transport {
  return {
    publish: (topic, payload, qos) => new Promise<void>((resolve) => {
      broker.publish({ cmd: 'publish', topic, payload, qos, retain: false, dup: false }, () => resolve())
    })
  }
}

/**
 * Route the broker's chat sends to the service. The handler's callback is
 * held until the service has handled the publish (a send: stored and
 * acknowledged), so the broker's publish gate paces clients by the archive.
 */
export function attachEmbedded (broker: Aedes, service: MessageService): () => Promise<void> {
  const handler = (packet: { topic: string, payload: Buffer | string }, cb: () => void): void => {
    const who = parseOutTopic(packet.topic)
    if (who === null) { cb(); return }
    const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload
    service.handle(who.user, who.clientId, payload).then(cb, cb)
  }
  broker.subscribe(OUT_FILTER, handler as never, () => {})
  return () => new Promise<void>((resolve) => { broker.unsubscribe(OUT_FILTER, handler as never, () => resolve()) })
}

/** Connect to a broker as the service's MQTT client (persistent session, QoS 1). */
export async function mqttTransport (url: string, opts: IClientOptions): Promise<{ transport: Transport, client: MqttClient }> {
  const client = await mqtt.connectAsync(url, {
    protocolVersion: 4,
    clean: false,
    reconnectPeriod: 1000,
    connectTimeout: 10_000,
    ...opts
  })
  const transport: Transport = {
    publish: (topic, payload, qos) => new Promise<void>((resolve) => {
      client.publish(topic, payload, { qos }, () => resolve())
    })
  }
  return { transport, client }
}
