/**
 * A lean MQTT 3.1.1 or MQTT 5 client for the load generator: just what a
 * benchmark needs (CONNECT, SUBSCRIBE, PUBLISH QoS 0/1, PUBACK), with packets
 * encoded and parsed by hand so that the generator costs as little CPU per
 * message as possible and the broker, not the client library, is what is
 * measured. The writes of one socket read (PUBACKs, new publishes) go out in
 * one write.
 *
 * MQTT 5 (`protocol: 5`) changes only the framing, so that the two protocols
 * are compared doing the same work: CONNECT, SUBSCRIBE and PUBLISH carry an
 * empty property list (Clean Start and Session Expiry Interval 0: a session
 * that ends with the connection, as 3.1.1's clean session); CONNACK and
 * SUBACK are read as reason codes with properties, an incoming PUBLISH's
 * properties are skipped, a PUBACK's reason code (0x80 and up: refused) is
 * read. Our PUBACKs are the short form MQTT 5 allows for success.
 */
import net from 'node:net'

export interface LeanHandlers {
  /** A PUBLISH from the broker (a QoS 1 one is acknowledged before this is called). */
  onPublish?: (topic: string, payload: Buffer) => void
  /** The PUBACK of one of our QoS 1 publishes (`reasonCode`: MQTT 5's, 0 with 3.1.1). */
  onPuback?: (id: number, reasonCode: number) => void
  onClose?: () => void
}

/** An MQTT remaining length (variable byte integer), as bytes. */
export function varint (n: number): number[] {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return out
}

/** A variable byte integer at `off`: its value and the offset after it. */
function readVarint (b: Buffer, off: number): [number, number] {
  let n = 0
  let mul = 1
  for (let i = off; i < off + 4; i++) {
    const x = b[i] as number
    n += (x & 127) * mul
    if ((x & 128) === 0) return [n, i + 1]
    mul *= 128
  }
  throw new Error('malformed variable byte integer')
}

function str (s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s
  const len = Buffer.alloc(2)
  len.writeUInt16BE(b.length)
  return Buffer.concat([len, b])
}

export interface ConnectOptions {
  /** Source address (127.0.0.x spreads many connections over more ephemeral ports). */
  localAddress?: string
  /** Bound on the TCP connect plus CONNACK, and on each SUBACK (default 30 s). */
  timeoutMs?: number
  /** 4: MQTT 3.1.1 (the default); 5: MQTT 5. */
  protocol?: 4 | 5
}

export class LeanClient {
  private pending: Buffer | null = null
  private out: Buffer[] = []
  private inData = false
  private waiters = new Map<string, (p: { rc?: number }) => void>()
  private nextId = 0
  closed = false
  handlers: LeanHandlers = {}

  private constructor (readonly socket: net.Socket, readonly clientId: string, readonly protocol: 4 | 5) {
    socket.setNoDelay(true)
    socket.on('data', (d: Buffer) => { this.onData(d) })
    socket.on('error', () => {})
    socket.on('close', () => {
      this.closed = true
      for (const w of this.waiters.values()) w({ rc: -1 })
      this.waiters.clear()
      this.handlers.onClose?.()
    })
  }

  /** Connect and wait for CONNACK 0 (rejects with the return code otherwise). */
  static async connect (port: number, clientId: string, auth: { username: string, password: string } | null, host = '127.0.0.1', opts: ConnectOptions = {}): Promise<LeanClient> {
    const timeoutMs = opts.timeoutMs ?? 30_000
    const socket = net.connect(opts.localAddress === undefined ? { port, host } : { port, host, localAddress: opts.localAddress })
    // Every step on the network is bounded in time: a silent broker fails the connect.
    const timer = setTimeout(() => { socket.destroy(new Error(`no CONNACK for ${clientId} within ${timeoutMs} ms`)) }, timeoutMs)
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve())
        socket.once('error', reject)
      })
    } catch (err) {
      clearTimeout(timer)
      throw err
    }
    const protocol = opts.protocol ?? 4
    const c = new LeanClient(socket, clientId, protocol)
    c.timeoutMs = timeoutMs
    // Clean session (3.1.1), Clean Start (5), and the user name and password flags.
    const flags = 0x02 | (auth !== null ? 0x80 | 0x40 : 0)
    // Keep alive 0; MQTT 5: an empty property list.
    const parts = [str('MQTT'), Buffer.from([protocol, flags, 0, 0]), ...(protocol === 5 ? [Buffer.from([0])] : []), str(clientId)]
    if (auth !== null) parts.push(str(auth.username), str(auth.password))
    const body = Buffer.concat(parts)
    const acked = c.wait('connack')
    socket.write(Buffer.concat([Buffer.from([0x10, ...varint(body.length)]), body]))
    const { rc } = await acked
    clearTimeout(timer)
    if (rc !== 0) {
      socket.destroy()
      throw new Error(rc === -1 ? `connection closed before CONNACK for ${clientId}` : `CONNACK ${String(rc)} for ${clientId}`)
    }
    return c
  }

  /** How long subscribe() waits for its SUBACK. */
  timeoutMs = 30_000

  private wait (key: string): Promise<{ rc?: number }> {
    return new Promise((resolve) => { this.waiters.set(key, resolve) })
  }

  /** Subscribe to filters at QoS 1 and wait for the SUBACK (rejects if any was refused). */
  async subscribe (filters: string[]): Promise<void> {
    const id = 65000 + (this.nextId++ % 500)
    // MQTT 5: an empty property list after the packet id; the options byte's QoS is the 3.1.1 byte.
    const head = this.protocol === 5 ? [id >> 8, id & 255, 0] : [id >> 8, id & 255]
    const body = Buffer.concat([Buffer.from(head), ...filters.map((f) => Buffer.concat([str(f), Buffer.from([1])]))])
    const key = `suback:${id}`
    const acked = this.wait(key)
    this.socket.write(Buffer.concat([Buffer.from([0x82, ...varint(body.length)]), body]))
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<{ rc?: number }>((resolve) => {
      timer = setTimeout(() => { this.waiters.delete(key); resolve({ rc: -2 }) }, this.timeoutMs)
    })
    const { rc } = await Promise.race([acked, timeout])
    clearTimeout(timer)
    if (rc === -2) throw new Error(`no SUBACK for ${this.clientId} within ${this.timeoutMs} ms`)
    if (rc === -1) throw new Error(`connection closed before SUBACK for ${this.clientId}`)
    if (rc !== 0) throw new Error(`SUBACK refused ${filters.join(', ')} for ${this.clientId}`)
  }

  /** Publish at QoS 1 with packet id `id` (1..65535); `topic` pre-encoded with str(). */
  publish1 (topic: Buffer, payload: Buffer, id: number): void {
    // MQTT 5: an empty property list after the packet id.
    const pid = this.protocol === 5 ? Buffer.from([id >> 8, id & 255, 0]) : Buffer.from([id >> 8, id & 255])
    const remaining = topic.length + pid.length + payload.length
    const head = Buffer.from([0x32, ...varint(remaining)])
    this.write(Buffer.concat([head, topic, pid, payload], head.length + remaining))
  }

  private write (b: Buffer): void {
    if (this.inData) this.out.push(b)
    else this.socket.write(b)
  }

  end (): void {
    if (this.closed) return
    this.socket.end(Buffer.from([0xe0, 0]))
  }

  destroy (): void { this.socket.destroy() }

  private onData (d: Buffer): void {
    const buf = this.pending === null ? d : Buffer.concat([this.pending, d])
    this.pending = null
    this.inData = true
    let off = 0
    try {
      for (;;) {
        if (buf.length - off < 2) break
        const h = buf[off] as number
        let len = 0
        let mul = 1
        let i = off + 1
        let complete = false
        for (; i < buf.length && i < off + 5; i++) {
          const b = buf[i] as number
          len += (b & 127) * mul
          mul *= 128
          if ((b & 128) === 0) { complete = true; i++; break }
        }
        if (!complete || buf.length - i < len) break
        const start = i
        const end = i + len
        off = end
        this.packet(h, buf, start, end)
      }
    } finally {
      if (off < buf.length) this.pending = buf.subarray(off)
      this.inData = false
      if (this.out.length === 1) this.socket.write(this.out[0] as Buffer)
      else if (this.out.length > 1) this.socket.write(Buffer.concat(this.out))
      this.out = []
    }
  }

  private packet (h: number, b: Buffer, s: number, e: number): void {
    const type = h >> 4
    if (type === 3) {
      const qos = (h >> 1) & 3
      const tlen = b.readUInt16BE(s)
      const topic = b.toString('utf8', s + 2, s + 2 + tlen)
      let p = s + 2 + tlen
      if (qos > 0) {
        const id = b.readUInt16BE(p)
        p += 2
        this.write(Buffer.from([qos === 1 ? 0x40 : 0x50, 2, id >> 8, id & 255]))
      }
      if (this.protocol === 5) {
        const [len, after] = readVarint(b, p)
        p = after + len
      }
      this.handlers.onPublish?.(topic, b.subarray(p, e))
    } else if (type === 4) {
      // MQTT 5 may add a reason code (and properties) after the packet id; without one it is 0.
      this.handlers.onPuback?.(b.readUInt16BE(s), e - s > 2 ? b[s + 2] as number : 0)
    } else if (type === 2) {
      // Session present, then the return code (3.1.1) or reason code (5; properties follow).
      const w = this.waiters.get('connack')
      this.waiters.delete('connack')
      w?.({ rc: b[s + 1] })
    } else if (type === 9) {
      const id = b.readUInt16BE(s)
      const key = `suback:${id}`
      const w = this.waiters.get(key)
      this.waiters.delete(key)
      let rc = 0
      // MQTT 5: the reason codes follow the properties; 0x80 and up is a refusal (3.1.1: 0x80).
      let first = s + 2
      if (this.protocol === 5) {
        const [len, after] = readVarint(b, first)
        first = after + len
      }
      for (let i = first; i < e; i++) if ((b[i] as number) >= 0x80) rc = 0x80
      w?.({ rc })
    }
  }
}

export { str as encodeString }
