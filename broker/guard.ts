/**
 * The connection-level guard: every MQTT connection (TCP, TLS, WebSocket)
 * passes through it before aedes sees a byte.
 *
 * It reads the fixed header of each packet as the bytes arrive (type byte and
 * remaining length, MQTT 3.1.1 section 2.2) and closes the connection as soon
 * as a packet declares a remaining length above `maxPacket` or a malformed
 * length, before the body is buffered, so an attacker cannot make the broker
 * hold a huge packet. It also counts bytes in and out for $SYS and /metrics.
 *
 * It wraps `read` and `write` of the connection instance (aedes reads with
 * `conn.read(null)` on 'readable'), which costs no extra stream per
 * connection.
 */
import type { Duplex } from 'node:stream'
import type { Logger } from './log.js'
import type { Stats } from './stats.js'

export function guardConnection (conn: Duplex, maxPacket: number, stats: Stats, log: Logger): void {
  // Scanner state: bytes of the current packet body still to skip, and the
  // remaining-length varint being decoded (phase 0: at a type byte, 1: in length).
  let skip = 0
  let phase = 0
  let length = 0
  let mult = 1
  let lenBytes = 0
  let dead = false

  const refuse = (reason: 'packet_too_large' | 'malformed_packet', detail: Record<string, unknown>): null => {
    dead = true
    stats.refuse(reason)
    log.info('connection closed', { reason, ...detail })
    conn.destroy()
    return null
  }

  const read = conn.read
  conn.read = function guardedRead (this: Duplex, size?: number) {
    const buf = read.call(this, size) as Buffer | null
    if (buf === null || dead) return dead ? null : buf
    stats.bytesReceived += buf.length
    let i = 0
    const n = buf.length
    while (i < n) {
      if (skip > 0) {
        const take = Math.min(skip, n - i)
        skip -= take
        i += take
        continue
      }
      if (phase === 0) {
        i++ // packet type and flags; aedes' parser validates them
        phase = 1
        length = 0
        mult = 1
        lenBytes = 0
        continue
      }
      const b = buf[i++] as number
      length += (b & 0x7f) * mult
      mult *= 128
      lenBytes++
      if ((b & 0x80) !== 0) {
        if (lenBytes === 4) return refuse('malformed_packet', { detail: 'remaining length longer than 4 bytes' })
        continue
      }
      if (length > maxPacket) return refuse('packet_too_large', { size: length, max: maxPacket })
      skip = length
      phase = 0
    }
    return buf
  } as typeof conn.read

  const write = conn.write
  conn.write = function countedWrite (this: Duplex, chunk: unknown, ...rest: unknown[]) {
    if (chunk instanceof Uint8Array) stats.bytesSent += chunk.length
    else if (typeof chunk === 'string') stats.bytesSent += Buffer.byteLength(chunk)
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest)
  } as typeof conn.write
}
