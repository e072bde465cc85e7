/**
 * A lean MQTT 3.1.1 client for the load generator: just what a benchmark
 * needs (CONNECT, SUBSCRIBE, PUBLISH QoS 0/1, PUBACK), with packets encoded
 * and parsed by hand so that the generator costs as little CPU per message as
 * possible and the broker, not the client library, is what is measured. The
 * writes of one socket read (PUBACKs, new publishes) go out in one write.
 */
import net from 'node:net'

export interface LeanHandlers {
  /** A PUBLISH from the broker (a QoS 1 one is acknowledged before this is called). */
  onPublish?: (topic: string, payload: Buffer) => void
  /** The PUBACK of one of our QoS 1 publishes. */
  onPuback?: (id: number) => void
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
}

export class LeanClient {
  private pending: Buffer | null = null
  private out: Buffer[] = []
  private inData = false
  private waiters = new Map<string, (p: { rc?: number }) => void>()
  private nextId = 0
  closed = false
  handlers: LeanHandlers = {}

  private constructor (readonly socket: net.Socket, readonly clientId: string) {
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
    const c = new LeanClient(socket, clientId)
    c.timeoutMs = timeoutMs
    let flags = 0x02 // clean session
    const parts = [str('MQTT'), Buffer.from([4]), Buffer.alloc(1), Buffer.from([0, 0]), str(clientId)]
    if (auth !== null) {
      flags |= 0x80 | 0x40
      parts.push(str(auth.username), str(auth.password))
    }
    parts[2] = Buffer.from([flags])
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
    const body = Buffer.concat([Buffer.from([id >> 8, id & 255]), ...filters.map((f) => Buffer.concat([str(f), Buffer.from([1])]))])
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
    const remaining = topic.length + 2 + payload.length
    const head = Buffer.from([0x32, ...varint(remaining)])
    const pid = Buffer.from([id >> 8, id & 255])
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
      this.handlers.onPublish?.(topic, b.subarray(p, e))
    } else if (type === 4) {
      this.handlers.onPuback?.(b.readUInt16BE(s))
    } else if (type === 2) {
      const w = this.waiters.get('connack')
      this.waiters.delete('connack')
      w?.({ rc: b[s + 1] })
    } else if (type === 9) {
      const id = b.readUInt16BE(s)
      const key = `suback:${id}`
      const w = this.waiters.get(key)
      this.waiters.delete(key)
      let rc = 0
      for (let i = s + 2; i < e; i++) if ((b[i] as number) === 0x80) rc = 0x80
      w?.({ rc })
    }
  }
}

export { str as encodeString }
