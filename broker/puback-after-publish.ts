/**
 * A QoS 1 PUBACK leaves only once the message is published: queued for every
 * persistent session it goes to (in Redis with `--redis`) and handed to the
 * routing. aedes 2.0.0-beta.1 writes the PUBACK first and publishes after
 * (lib/handlers/publish.js, `enqueuePublish`, `case 1`: `write(client, new
 * PubAck(packet), ...)`, then `broker.publish`). A process or Redis killed in
 * between lost messages their publishers held a PUBACK for: the cluster chaos
 * test (test/chaos/chaos-cluster.test.ts) lost 3 to 18 consecutive messages of
 * each publisher at each SIGKILL. MQTT (4.3.2) lets the receiver of a QoS 1
 * PUBLISH answer only once it has taken ownership of the message.
 *
 * aedes' `write` is an ES module's function, out of reach; but every packet it
 * sends goes through mqtt-packet's `writeToStream` (as packet-size.ts uses),
 * and `broker.publish` is a method of the broker. So the PUBACK aedes writes on
 * one of this broker's connections is held (aedes goes on as if written), and
 * written when `broker.publish` for that packet id of that client calls back.
 * PUBACKs of one connection leave in the order aedes wrote them (MQTT 4.6:
 * in the order the PUBLISHes came). A PUBACK that refuses (reason code 0x80 or
 * more: nothing is published) leaves in its turn without waiting.
 */
import { createRequire } from 'node:module'
import type { Writable } from 'node:stream'
import type { Aedes, Client } from 'aedes'

interface Packet { cmd: string, qos?: number, messageId?: number, reasonCode?: number }
type WriteOpts = { protocolVersion?: number } | undefined
interface MqttPacket {
  writeToStream: (packet: Packet, stream: Writable, opts?: WriteOpts) => boolean
}
interface Held { messageId: number | undefined, packet: Packet, opts: WriteOpts, published: boolean }

const mqttPacket = createRequire(import.meta.url)('mqtt-packet') as MqttPacket
/** PUBACKs held per connection of a broker this module was given, in the order aedes wrote them. */
const held = new WeakMap<object, Held[]>()
let write: MqttPacket['writeToStream'] | null = null

/** Returns the function that holds one connection's PUBACKs until their messages are published. */
export function createPubackAfterPublish (broker: Aedes): (conn: Writable) => void {
  wrapWrites()
  // aedes' handlers call publish(packet, client, done); its types know only (packet, done).
  const target = broker as unknown as { publish: (packet: Packet, client: Client | null, done?: (err?: Error) => void) => void }
  const publish = target.publish.bind(broker)
  target.publish = (packet, client, done) => {
    const conn = client?.conn as unknown as Writable | undefined
    const queue = conn === undefined ? undefined : held.get(conn)
    const entry = packet.qos === 1 && queue !== undefined ? queue.find((h) => !h.published && h.messageId === packet.messageId) : undefined
    if (entry === undefined || conn === undefined || queue === undefined) {
      publish(packet, client, done)
      return
    }
    publish(packet, client, (err) => {
      entry.published = true
      flush(conn, queue)
      done?.(err)
    })
  }
  return (conn) => {
    const queue: Held[] = []
    held.set(conn, queue)
    conn.once('close', () => { queue.length = 0 })
  }
}

function wrapWrites (): void {
  if (write !== null) return
  write = mqttPacket.writeToStream
  mqttPacket.writeToStream = (packet, stream, opts) => {
    const queue = packet.cmd === 'puback' ? held.get(stream) : undefined
    if (queue === undefined) return (write as MqttPacket['writeToStream'])(packet, stream, opts)
    queue.push({ messageId: packet.messageId, packet, opts, published: (packet.reasonCode ?? 0) >= 0x80 })
    flush(stream, queue)
    // aedes goes on (to publish) as after a write the socket took.
    return true
  }
}

/** Writes the PUBACKs at the head of the queue whose messages are published. */
function flush (stream: Writable, queue: Held[]): void {
  while (queue.length > 0 && (queue[0] as Held).published) {
    const h = queue.shift() as Held
    if (!stream.destroyed) (write as MqttPacket['writeToStream'])(h.packet, stream, h.opts)
  }
}
