/**
 * The client's Receive Maximum, outbound (Paho: flow_control1). MQTT 5
 * (3.3.4, MQTT-3.3.4-7/9): the server sends a client no more QoS 1/2
 * PUBLISHes awaiting their PUBACK (QoS 1) or PUBCOMP (QoS 2) than the
 * Receive Maximum of its CONNECT (65,535 when absent). aedes 2.0.0-beta.1
 * keeps the value (`client.receiveMaximum`, lib/handlers/connect.js: "nor cap
 * outbound in-flight to receiveMaximum") and sends everything.
 *
 * Every PUBLISH aedes sends goes through mqtt-packet's `writeToStream` (live
 * deliveries, a resumed session's queue, retained messages), so the window
 * sits there, as packet-size.ts does, for the connections of MQTT 5 clients:
 * - a QoS 1/2 PUBLISH is counted when it is really written (one the Maximum
 *   Packet Size discards is not) by its packet id, and released by the PUBACK
 *   or PUBCOMP of that id, or a PUBREC with an error code (which ends a QoS 2
 *   exchange, MQTT 5 4.3.3);
 * - while the window is full, or others wait, a QoS 1/2 PUBLISH waits in
 *   order and is written as acknowledgements free the window. QoS 0 is not
 *   limited and is written at once. aedes is told the waiting packet was
 *   written: its packet id is already recorded in a persistent session's
 *   store (aedes records it before writing), so nothing holds the routing;
 * - the waiting packets are bounded by `offlineQueue` like a session's queue
 *   (a client that never acknowledges would otherwise grow them without
 *   bound); past it a packet is not written and `offline_queue_full` is
 *   counted. A persistent session keeps it in its store (sent on resume);
 * - when the connection ends, what waits is let go with it: a persistent
 *   session's store still holds each (unacknowledged) message, and sends them
 *   in order when the session resumes, under the new connection's window. A
 *   session that ends with the connection has nothing to resume.
 */
import { createRequire } from 'node:module'
import type { Writable } from 'node:stream'
import type { Client } from 'aedes'
import { onPacketRead, type ReadPacket } from './aedes-internals.js'
import { discardedForSize } from './packet-size.js'
import type { Stats } from './stats.js'

interface Packet { cmd: string, qos?: number, messageId?: number }
interface WriteOptions { protocolVersion?: number }
type WriteToStream = (packet: Packet, stream: Writable, opts?: WriteOptions) => boolean

const mqttPacket = createRequire(import.meta.url)('mqtt-packet') as { writeToStream: WriteToStream }

/** MQTT 5 (3.4.2.1 and 3.5.2.1): a PUBACK or PUBREC reason code from this one up is a failure. */
const FIRST_ERROR_CODE = 0x80

/** The window of one MQTT 5 connection. */
class Window {
  /** Packet ids written and not yet acknowledged. */
  private readonly inflight = new Set<number>()
  private waiting: Array<{ packet: Packet, opts: WriteOptions | undefined }> = []
  private head = 0

  constructor (private readonly stream: Writable, private readonly max: number, private readonly bound: number, private readonly stats: Stats) {}

  /** A QoS 1/2 PUBLISH aedes writes: written now or in its turn (true: aedes goes on as if written). */
  publish (packet: Packet, opts: WriteOptions | undefined): boolean {
    if (this.waiting.length === this.head && this.inflight.size < this.max) return this.send(packet, opts)
    if (this.waiting.length - this.head >= this.bound) {
      this.stats.refuse('offline_queue_full')
      return true
    }
    this.waiting.push({ packet, opts })
    return true
  }

  /** A packet the client sent: an acknowledgement frees its id and lets the next waiting packets go. */
  read (p: ReadPacket): void {
    const done = p.cmd === 'puback' || p.cmd === 'pubcomp' || (p.cmd === 'pubrec' && (p.reasonCode ?? 0) >= FIRST_ERROR_CODE)
    if (!done || p.messageId === undefined || !this.inflight.delete(p.messageId)) return
    while (this.head < this.waiting.length && this.inflight.size < this.max) {
      if (this.stream.destroyed || !this.stream.writable) break
      const next = this.waiting[this.head++] as { packet: Packet, opts: WriteOptions | undefined }
      this.send(next.packet, next.opts)
    }
    if (this.head === this.waiting.length) {
      this.waiting = []
      this.head = 0
    }
  }

  private send (packet: Packet, opts: WriteOptions | undefined): boolean {
    const written = writeToStream(packet, this.stream, opts)
    if (packet.messageId !== undefined && !discardedForSize(packet)) this.inflight.add(packet.messageId)
    return written
  }
}

/** The write the window wraps (mqtt-packet's, or packet-size.ts' wrapper of it). */
let writeToStream: WriteToStream = mqttPacket.writeToStream
/** Per connection: its client and settings until its first QoS 1/2 PUBLISH, then its window. */
const windows = new WeakMap<object, Window | { client: Client, bound: number, stats: Stats }>()
let wrapped = false

/** Returns the function that puts one connection under its client's Receive Maximum (MQTT 5 clients only). */
export function createReceiveWindow (opts: { offlineQueue: number, stats: Stats }): (client: Client, conn: Writable) => void {
  wrapWrites()
  return (client, conn) => {
    windows.set(conn, { client, bound: opts.offlineQueue, stats: opts.stats })
    onPacketRead(client, (p) => {
      const w = windows.get(conn)
      if (w instanceof Window) w.read(p)
    })
  }
}

function wrapWrites (): void {
  if (wrapped) return
  wrapped = true
  writeToStream = mqttPacket.writeToStream
  mqttPacket.writeToStream = (packet, stream, opts) => {
    if (packet.cmd !== 'publish' || (packet.qos ?? 0) === 0) return writeToStream(packet, stream, opts)
    const w = windowOf(stream)
    return w === undefined ? writeToStream(packet, stream, opts) : w.publish(packet, opts)
  }
}

/** The connection's window; made at its first QoS 1/2 PUBLISH, once the CONNECT is known. */
function windowOf (stream: Writable): Window | undefined {
  const w = windows.get(stream)
  if (w === undefined || w instanceof Window) return w
  if (w.client.version !== 5) {
    windows.delete(stream)
    return undefined
  }
  const made = new Window(stream, w.client.receiveMaximum, w.bound, w.stats)
  windows.set(stream, made)
  return made
}
