/**
 * The binary frames of the local bus (local-bus.ts): one routed publish per
 * frame, encoded once and written to every sibling worker. Binary rather than
 * msgpack or JSON because a crossing must cost a few microseconds
 * (docs/benchmarks.md, "Paths between the processes of one node").
 *
 * Layout, big-endian:
 *   u32 length of the rest | u8 flags | u16 topic bytes | u16 brokerId bytes
 *   | f64 brokerCounter | u32 extras bytes | topic | brokerId | extras | payload
 * flags: bits 0-1 qos, 2 retain, 3 dup, 4 payload is a string, 5 brokerId
 * present (aedes sets it to null on some retained copies).
 * `extras` is JSON of every other field a packet carries (MQTT 5 properties,
 * clientId, messageExpiry, a command other than publish...), rare enough that
 * its cost does not matter; Buffers in it come back as Buffers.
 *
 * A control frame (flags bit 7; sibling-readers.ts) carries JSON between the
 * workers themselves rather than a publish: u32 length | u8 0x80 | JSON. It
 * travels on the same sockets as the publishes, so it keeps its place among
 * them (a subscription's news reaches the message service's worker before
 * anything that worker could route after the subscriber's SUBACK).
 */

export type BusPacket = Record<string, unknown> & { topic: string }

const HEADER = 4 + 1 + 2 + 2 + 8 + 4
const CONTROL = 0x80
const KNOWN = new Set(['cmd', 'topic', 'payload', 'qos', 'retain', 'dup', 'brokerId', 'brokerCounter'])

function extrasOf (packet: BusPacket): string {
  let extras: Record<string, unknown> | null = null
  for (const key in packet) {
    const value = packet[key]
    if (value === undefined || (KNOWN.has(key) && (key !== 'cmd' || value === 'publish'))) continue
    extras ??= {}
    extras[key] = value
  }
  return extras === null ? '' : JSON.stringify(extras)
}

/** The frame of one packet, its length prefix included. */
export function encodeFrame (packet: BusPacket): Buffer {
  const payload = packet.payload
  const isString = typeof payload === 'string'
  const body = isString ? Buffer.from(payload) : payload instanceof Uint8Array ? payload : Buffer.alloc(0)
  const brokerId = typeof packet.brokerId === 'string' ? packet.brokerId : null
  const extras = extrasOf(packet)
  const topicBytes = Buffer.byteLength(packet.topic)
  const idBytes = brokerId === null ? 0 : Buffer.byteLength(brokerId)
  const extraBytes = extras === '' ? 0 : Buffer.byteLength(extras)
  const total = HEADER + topicBytes + idBytes + extraBytes + body.length
  const buf = Buffer.allocUnsafe(total)
  buf.writeUInt32BE(total - 4, 0)
  const qos = typeof packet.qos === 'number' ? packet.qos & 3 : 0
  buf[4] = qos | (packet.retain === true ? 4 : 0) | (packet.dup === true ? 8 : 0) | (isString ? 16 : 0) | (brokerId !== null ? 32 : 0)
  buf.writeUInt16BE(topicBytes, 5)
  buf.writeUInt16BE(idBytes, 7)
  buf.writeDoubleBE(typeof packet.brokerCounter === 'number' ? packet.brokerCounter : 0, 9)
  buf.writeUInt32BE(extraBytes, 17)
  let at = HEADER
  at += buf.write(packet.topic, at)
  if (brokerId !== null) at += buf.write(brokerId, at)
  if (extraBytes > 0) at += buf.write(extras, at)
  buf.set(body, at)
  return buf
}

/** The frame of one control message (a JSON object), its length prefix included. */
export function encodeControl (message: object): Buffer {
  const json = JSON.stringify(message)
  const bytes = Buffer.byteLength(json)
  const buf = Buffer.allocUnsafe(5 + bytes)
  buf.writeUInt32BE(1 + bytes, 0)
  buf[4] = CONTROL
  buf.write(json, 5)
  return buf
}

function revive (_key: string, value: unknown): unknown {
  const v = value as { type?: unknown, data?: unknown } | null
  if (v !== null && typeof v === 'object' && v.type === 'Buffer' && Array.isArray(v.data)) return Buffer.from(v.data as number[])
  return value
}

/** The packet of one frame without its length prefix (`frame` is that frame's bytes). */
function decodeFrame (frame: Buffer): BusPacket {
  const flags = frame[0] as number
  const topicBytes = frame.readUInt16BE(1)
  const idBytes = frame.readUInt16BE(3)
  const brokerCounter = frame.readDoubleBE(5)
  const extraBytes = frame.readUInt32BE(13)
  if (HEADER - 4 + topicBytes + idBytes + extraBytes > frame.length) throw new Error('its header is longer than the frame')
  let at = HEADER - 4
  const topic = frame.toString('utf8', at, at += topicBytes)
  const brokerId = (flags & 32) !== 0 ? frame.toString('utf8', at, at += idBytes) : null
  const extras = extraBytes > 0 ? JSON.parse(frame.toString('utf8', at, at += extraBytes), revive) as Record<string, unknown> : null
  // A copy, so that the packet does not pin the whole chunk it came in.
  const body = Buffer.from(frame.subarray(at))
  return {
    cmd: 'publish',
    ...extras,
    brokerId,
    brokerCounter,
    topic,
    payload: (flags & 16) !== 0 ? body.toString() : body,
    qos: flags & 3,
    retain: (flags & 4) !== 0,
    dup: (flags & 8) !== 0
  }
}

/** Raised for a frame over the bound or one that does not parse: the stream is not to be trusted further. */
export class BadFrameError extends Error {}

/**
 * Splits a byte stream into packets. Frames over `maxFrame` bytes are refused
 * before they are buffered, so a broken or hostile peer cannot make this
 * process allocate without bound.
 */
export class FrameReader {
  private pending: Buffer | null = null

  constructor (private readonly maxFrame: number) {}

  /** Every whole packet (and control message) in what came so far; throws BadFrameError. */
  push (chunk: Buffer, onPacket: (packet: BusPacket) => void, onControl: (message: Record<string, unknown>) => void = () => {}): void {
    const buf = this.pending === null ? chunk : Buffer.concat([this.pending, chunk])
    this.pending = null
    let at = 0
    while (buf.length - at >= 4) {
      const len = buf.readUInt32BE(at)
      if (len > this.maxFrame || len < 1) throw new BadFrameError(`a local bus frame of ${len} bytes (at most ${this.maxFrame})`)
      if (buf.length - at - 4 < len) break
      if (buf[at + 4] === CONTROL) {
        let message: unknown
        try { message = JSON.parse(buf.toString('utf8', at + 5, at + 4 + len)) } catch { message = null }
        if (message === null || typeof message !== 'object' || Array.isArray(message)) throw new BadFrameError('a local bus control frame that is not a JSON object')
        at += 4 + len
        onControl(message as Record<string, unknown>)
        continue
      }
      if (len < HEADER - 4) throw new BadFrameError(`a local bus frame of ${len} bytes is shorter than its header`)
      let packet: BusPacket
      try {
        packet = decodeFrame(buf.subarray(at + 4, at + 4 + len))
      } catch (err) {
        throw new BadFrameError(`a local bus frame that does not parse: ${(err as Error).message}`)
      }
      at += 4 + len
      onPacket(packet)
    }
    if (at < buf.length) this.pending = Buffer.from(buf.subarray(at))
  }
}
