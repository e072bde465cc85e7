/**
 * No PUBLISH larger than the client's Maximum Packet Size (Paho:
 * maximum_packet_size). MQTT 5 (3.1.2.11.4, MQTT-3.1.2-24/25): the server
 * must not send a client a packet larger than the Maximum Packet Size its
 * CONNECT gave; a PUBLISH that would be is discarded for that client, and the
 * server behaves as if it had been sent. aedes 2.0.0-beta.1 keeps the value
 * (`client.maximumPacketSize`, lib/handlers/connect.js) but sends every packet
 * (its comment there: "advisory"), so such a client got a packet it must
 * treat as a protocol error.
 *
 * Every packet aedes sends goes through mqtt-packet's `writeToStream`
 * (lib/write.js; aedes imports mqtt-packet's exports object, the one
 * `require` returns here): live deliveries, a resumed session's queue,
 * retained messages. So that one function is wrapped, once per process, and
 * looks only at the connections this module was given whose client declared
 * a maximum: a PUBLISH larger than it is not written. A QoS 1/2 one of a
 * session that outlives the connection is also taken out of the session's
 * store, so that it is not sent again at every reconnect (as if acknowledged).
 */
import { createRequire } from 'node:module'
import type { Writable } from 'node:stream'
import type { Aedes, Client } from 'aedes'
import { clientOfConnection, outgoingStore } from './aedes-internals.js'

interface Packet { cmd: string, qos?: number, messageId?: number }
interface MqttPacket {
  writeToStream: (packet: Packet, stream: Writable, opts?: { protocolVersion?: number }) => boolean
  generate: (packet: Packet, opts?: { protocolVersion?: number }) => Buffer
}

const mqttPacket = createRequire(import.meta.url)('mqtt-packet') as MqttPacket
/** The connections whose writes are checked, with their broker. */
const limited = new WeakMap<object, Aedes>()
let wrapped = false
/** PUBLISH packets not written for their size (receive-window.ts counts only what is written). */
const discarded = new WeakSet<object>()

/** Whether this PUBLISH was discarded for the client's Maximum Packet Size rather than written. */
export function discardedForSize (packet: object): boolean {
  return discarded.has(packet)
}

/** Returns the function that puts one connection under its client's Maximum Packet Size. */
export function createPacketSizeLimit (broker: Aedes): (conn: object) => void {
  wrapWrites()
  return (conn) => { limited.set(conn, broker) }
}

function wrapWrites (): void {
  if (wrapped) return
  wrapped = true
  const write = mqttPacket.writeToStream
  mqttPacket.writeToStream = (packet, stream, opts) => {
    if (packet.cmd === 'publish') {
      const broker = limited.get(stream)
      const client = broker === undefined ? undefined : clientOfConnection(stream as never)
      const max = client?.maximumPacketSize
      if (broker !== undefined && client !== undefined && max !== undefined && tooLarge(packet, max, opts)) {
        discard(broker, client, packet)
        return true
      }
    }
    return write(packet, stream, opts)
  }
}

function tooLarge (packet: Packet, max: number, opts?: { protocolVersion?: number }): boolean {
  try {
    return mqttPacket.generate(packet, opts).length > max
  } catch {
    return false // not encodable: writeToStream reports it as aedes expects
  }
}

function discard (broker: Aedes, client: Client, packet: Packet): void {
  discarded.add(packet)
  if ((packet.qos ?? 0) > 0 && !client.clean) {
    outgoingStore(broker).outgoingClearMessageId(client, packet).catch(() => {})
  }
}
