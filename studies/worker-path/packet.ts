/**
 * The message every path carries: shaped like the publish packet a broker
 * hands to its routing (aedes' mq.emit), with the send time and a sequence
 * number in the payload's first 12 bytes so the receiver can measure one-way
 * latency on the machine's monotonic clock (process.hrtime is
 * CLOCK_MONOTONIC: the same clock in every process of one machine).
 */
export interface Packet {
  cmd: 'publish'
  topic: string
  payload: Buffer
  qos: number
  retain: boolean
  dup: boolean
  messageId: number
}

/** 30 bytes, like a Warbler feed topic. */
export const TOPIC = 'wb/u/user-000042/feed/dev-0007'

export function makePacket (size: number, seq: number): Packet {
  const payload = Buffer.alloc(size, 0x61)
  payload.writeBigUInt64LE(process.hrtime.bigint(), 0)
  payload.writeUInt32LE(seq, 8)
  return { cmd: 'publish', topic: TOPIC, payload, qos: 1, retain: false, dup: false, messageId: seq & 0xffff }
}

/** Nanoseconds from the packet's making to `now` (same machine, same clock). */
export function ageNs (payload: Uint8Array, now: bigint): number {
  const view = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
  return Number(now - view.readBigUInt64LE(0))
}

/*
 * The binary frame of the Unix socket paths: a 4-byte big-endian length of
 * what follows, a flags byte (qos in bits 0-1, retain bit 2, dup bit 3), the
 * 2-byte message id, the 2-byte topic length, the topic (UTF-8), the payload.
 */
const HEAD = 4 + 1 + 2 + 2

/** Encode a packet at `at` in `buf` (which the caller sized with frameSize); returns the end. */
export function encodeFrame (p: Packet, buf: Buffer, at: number): number {
  const topicLen = buf.write(p.topic, at + HEAD, 'utf8')
  const end = at + HEAD + topicLen + p.payload.length
  buf.writeUInt32BE(end - at - 4, at)
  buf[at + 4] = (p.qos & 3) | (p.retain ? 4 : 0) | (p.dup ? 8 : 0)
  buf.writeUInt16BE(p.messageId, at + 5)
  buf.writeUInt16BE(topicLen, at + 7)
  p.payload.copy(buf, at + HEAD + topicLen)
  return end
}

/** An upper bound of a packet's frame size (the topic counted at 3 bytes a character). */
export function frameSize (p: Packet): number {
  return HEAD + p.topic.length * 3 + p.payload.length
}

/**
 * Reads frames from a byte stream: chunks may end anywhere, so the tail of a
 * chunk waits for the next one. Payloads are views of the chunk, not copies
 * (as mqtt-packet's parser gives them).
 */
export class FrameReader {
  private rest: Buffer | null = null
  constructor (private readonly onPacket: (p: Packet) => void) {}

  push (chunk: Buffer): void {
    const buf = this.rest === null ? chunk : Buffer.concat([this.rest, chunk])
    this.rest = null
    let at = 0
    while (buf.length - at >= 4) {
      const len = buf.readUInt32BE(at)
      if (buf.length - at - 4 < len) break
      const flags = buf[at + 4] as number
      const topicLen = buf.readUInt16BE(at + 7)
      const topicAt = at + HEAD
      this.onPacket({
        cmd: 'publish',
        topic: buf.toString('utf8', topicAt, topicAt + topicLen),
        payload: buf.subarray(topicAt + topicLen, at + 4 + len),
        qos: flags & 3,
        retain: (flags & 4) !== 0,
        dup: (flags & 8) !== 0,
        messageId: buf.readUInt16BE(at + 5)
      })
      at += 4 + len
    }
    if (at < buf.length) this.rest = buf.subarray(at)
  }
}
