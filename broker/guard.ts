/**
 * The connection-level guard: every MQTT connection (TCP, TLS, WebSocket)
 * passes through it before aedes sees a byte.
 *
 * It reads the fixed header of each packet as the bytes arrive (type byte and
 * remaining length, MQTT 3.1.1 section 2.2) and closes the connection as soon
 * as a packet declares a size (with its fixed header) above `maxPacket` or a malformed
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
 * `watchWrites` (installed by hooks/connect.ts at CONNECT) is the slow-consumer half:
 * it decides when a write reports backpressure to aedes, and cuts a
 * connection that does not drain.
 */
import type { Duplex } from 'node:stream'
import { clientOfConnection } from './aedes-internals.js'
import type { Logger } from '../shared/log.js'
import { markClose } from './login-log.js'
import { isMqtt5, Reason, sendDisconnect } from './reason-codes.js'
import type { Stats } from './stats.js'

/**
 * Where a connection's guard keeps its state: one plain object per
 * connection, read by read and write functions shared by all connections
 * (not closures made per connection: an idle connection costs only this).
 */
const GUARD = Symbol('warbler.guard')
const WATCH = Symbol('warbler.writeWatch')

type Read = Duplex['read']
type Write = (...a: unknown[]) => boolean

/** The per-connection state of the guard (the fixed-header scanner). */
class Guard {
  /** Bytes of the current packet body still to skip. */
  skip = 0
  /** 0: at a type byte, 1: in the remaining-length varint. */
  phase = 0
  length = 0
  mult = 1
  lenBytes = 0
  dead = false
  constructor (
    readonly read: Read,
    readonly write: Write,
    readonly maxPacket: number,
    readonly stats: Stats,
    readonly log: Logger
  ) {}
}

type Guarded = Duplex & { [GUARD]: Guard }

function refuse (conn: Duplex, g: Guard, reason: 'packet_too_large' | 'malformed_packet', detail: Record<string, unknown>): null {
  g.dead = true
  g.stats.refuse(reason)
  const client = clientOfConnection(conn)
  markClose(client, reason === 'packet_too_large' ? 'packet too large' : 'malformed packet')
  g.log.info('connection closed', { reason, ...detail })
  // An MQTT 5 client is told why first (its CONNACK said the Maximum Packet Size).
  if (reason === 'packet_too_large' && client?.connected === true && isMqtt5(client)) {
    sendDisconnect(client, Reason.packetTooLarge, `packet of ${String(detail.size)} bytes is over the limit of ${g.maxPacket}`)
  }
  conn.destroy()
  return null
}

function guardedRead (this: Guarded, size?: number): Buffer | null {
  const g = this[GUARD]
  const buf = g.read.call(this, size) as Buffer | null
  if (buf === null || g.dead) return g.dead ? null : buf
  g.stats.bytesReceived += buf.length
  let i = 0
  const n = buf.length
  while (i < n) {
    if (g.skip > 0) {
      const take = Math.min(g.skip, n - i)
      g.skip -= take
      i += take
      continue
    }
    if (g.phase === 0) {
      // Packet type: reserved 0 and the types only a server sends
      // (CONNACK, SUBACK, UNSUBACK, PINGRESP), which aedes would drop the
      // connection for without saying why. Flags: aedes' parser checks them.
      const type = (buf[i++] as number) >> 4
      if (type === 0 || type === 2 || type === 9 || type === 11 || type === 13) {
        return refuse(this, g, 'malformed_packet', { detail: `packet type ${type} from a client` })
      }
      g.phase = 1
      g.length = 0
      g.mult = 1
      g.lenBytes = 0
      continue
    }
    const b = buf[i++] as number
    g.length += (b & 0x7f) * g.mult
    g.mult *= 128
    g.lenBytes++
    if ((b & 0x80) !== 0) {
      if (g.lenBytes === 4) return refuse(this, g, 'malformed_packet', { detail: 'remaining length longer than 4 bytes' })
      continue
    }
    // The whole packet (type byte, length bytes, body): MQTT 5's Maximum
    // Packet Size, which the CONNACK says is maxPacket.
    const size = 1 + g.lenBytes + g.length
    if (size > g.maxPacket) return refuse(this, g, 'packet_too_large', { size, max: g.maxPacket })
    g.skip = g.length
    g.phase = 0
  }
  return buf
}

function countedWrite (this: Guarded, chunk: unknown, ...rest: unknown[]): boolean {
  const g = this[GUARD]
  if (chunk instanceof Uint8Array) g.stats.bytesSent += chunk.length
  else if (typeof chunk === 'string') g.stats.bytesSent += Buffer.byteLength(chunk)
  return g.write.call(this, chunk, ...rest)
}

export function guardConnection (conn: Duplex, maxPacket: number, stats: Stats, log: Logger): void {
  // The stream's own methods, kept to be called with the stream as `this` (Function.call).
  // eslint-disable-next-line @typescript-eslint/unbound-method
  ;(conn as Guarded)[GUARD] = new Guard(conn.read, conn.write as Write, maxPacket, stats, log)
  conn.read = guardedRead as Read
  conn.write = countedWrite as typeof conn.write
}

/** What the slow-consumer watch of all connections shares (one per broker). */
export interface WriteWatchOptions {
  /** Unsent bytes past which a connection is over its limit. */
  limit: number
  drainTimeoutMs: number
  /** Called once a connection stayed over the limit for drainTimeoutMs (it disconnects it). */
  onSlow: (conn: Duplex, buffered: number) => void
}

/** What hooks/connect.ts tells the write watch; see {@link watchWrites}. */
export class WriteWatch {
  paced = false
  timer: NodeJS.Timeout | null = null
  constructor (readonly conn: Duplex, readonly write: Write, readonly opts: WriteWatchOptions) {}

  /**
   * The writes of the current macrotask come from aedes replaying a
   * persistent session's queue: let them see backpressure, so the replay
   * goes at the client's pace.
   */
  pace (): void {
    if (this.paced) return
    this.paced = true
    queueMicrotask(() => { this.paced = false })
  }

  /** drainTimeoutMs after the connection went over the limit. */
  check (): void {
    this.timer = null
    const conn = this.conn
    if (!conn.destroyed && conn.writableLength > this.opts.limit) this.opts.onSlow(conn, conn.writableLength)
  }

  stop (): void {
    if (this.timer !== null) { clearTimeout(this.timer); this.timer = null }
  }
}

type Watched = Duplex & { [WATCH]: WriteWatch }

function watchedWrite (this: Watched, ...args: unknown[]): boolean {
  const w = this[WATCH]
  const ok = w.write.apply(this, args)
  const over = this.writableLength > w.opts.limit
  if (over && w.timer === null && !this.destroyed) {
    w.timer = setTimeout(checkWatch, w.opts.drainTimeoutMs, w)
    w.timer.unref()
  }
  return w.paced ? ok || !over : true
}

function checkWatch (w: WriteWatch): void { w.check() }

/** 'drain' and 'close' listener, shared: the connection is `this`. */
function stopWatch (this: Watched): void { this[WATCH].stop() }

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
export function watchWrites (conn: Duplex, opts: WriteWatchOptions): WriteWatch {
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called with the stream as `this` (Function.call)
  const w = new WriteWatch(conn, conn.write as Write, opts)
  ;(conn as Watched)[WATCH] = w
  conn.write = watchedWrite as typeof conn.write
  conn.on('drain', stopWatch)
  conn.on('close', stopWatch)
  return w
}
