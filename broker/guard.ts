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
 *
 * A packet type only a server sends (or the reserved type 0) also closes the
 * connection here, counted as malformed_packet.
 *
 * `watchWrites` (installed by hooks.ts at CONNECT) is the slow-consumer half:
 * it decides when a write reports backpressure to aedes, and cuts a
 * connection that does not drain.
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
        // Packet type: reserved 0 and the types only a server sends
        // (CONNACK, SUBACK, UNSUBACK, PINGRESP), which aedes would drop the
        // connection for without saying why. Flags: aedes' parser checks them.
        const type = (buf[i++] as number) >> 4
        if (type === 0 || type === 2 || type === 9 || type === 11 || type === 13) {
          return refuse('malformed_packet', { detail: `packet type ${type} from a client` })
        }
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

/** What hooks.ts tells the write watch; see {@link watchWrites}. */
export interface WriteWatch {
  /**
   * The writes of the current macrotask come from aedes replaying a
   * persistent session's queue: let them see backpressure, so the replay
   * goes at the client's pace.
   */
  pace: () => void
}

/**
 * The slow-consumer watch on one connection's writes.
 *
 * aedes waits for 'drain' whenever a write returns false (the socket's mark
 * is 16 KiB), and a live delivery that waits holds its message's whole
 * routing: the publisher's batch (aedes reads nothing more from it), its
 * PUBACK-gate slot and an mqemitter slot, until the subscriber drains or
 * aedes' drainTimeout passes. So one subscriber that stops reading would
 * stall every publisher of its topics. Here a write never reports
 * backpressure to aedes for live traffic; instead:
 * - authorizeForward stops forwarding to a connection with more than
 *   `limit` bytes unsent (QoS 0 dropped, QoS 1/2 disconnected);
 * - a connection that stays over `limit` for `drainTimeoutMs` is slow:
 *   `onSlow` is called (it disconnects it), whatever it was sent.
 * Only aedes' replay of a session's queue (marked with `pace`) sees
 * backpressure, past `limit`, so a reconnecting session gets its backlog at
 * its own pace instead of all at once. Memory per connection stays about
 * `limit` plus the deliveries already on their way when it was crossed.
 */
export function watchWrites (conn: Duplex, opts: { limit: number, drainTimeoutMs: number, onSlow: (buffered: number) => void }): WriteWatch {
  let paced = false
  let timer: NodeJS.Timeout | null = null
  const unpace = (): void => { paced = false }
  const check = (): void => {
    timer = null
    if (!conn.destroyed && conn.writableLength > opts.limit) opts.onSlow(conn.writableLength)
  }
  const write = conn.write
  conn.write = function watchedWrite (this: Duplex, ...args: unknown[]) {
    const ok = (write as (...a: unknown[]) => boolean).apply(this, args)
    const over = this.writableLength > opts.limit
    if (over && timer === null && !this.destroyed) {
      timer = setTimeout(check, opts.drainTimeoutMs)
      timer.unref()
    }
    return paced ? ok || !over : true
  } as typeof conn.write
  conn.on('drain', () => {
    if (timer !== null) { clearTimeout(timer); timer = null }
  })
  conn.once('close', () => {
    if (timer !== null) { clearTimeout(timer); timer = null }
  })
  return {
    pace: () => {
      if (paced) return
      paced = true
      queueMicrotask(unpace)
    }
  }
}
