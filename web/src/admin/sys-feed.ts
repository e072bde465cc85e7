/**
 * The node's $SYS figures, read over the same MQTT-over-WebSocket port the
 * chat uses, logged in with the admin's access token. The broker lets only
 * admins subscribe to $SYS (broker/acl.ts). A few MQTT 3.1.1 packets are
 * all this needs (CONNECT, SUBSCRIBE, PUBLISH at QoS 0, PINGREQ), so they
 * are written here rather than bundling a whole MQTT client into the console.
 */
const enc = new TextEncoder()
const dec = new TextDecoder()

function str (s: string): Uint8Array {
  const b = enc.encode(s)
  return Uint8Array.from([b.length >> 8, b.length & 255, ...b])
}

/** A packet: its first byte, the remaining length (MQTT's variable-length integer), the body. */
function packet (first: number, ...parts: Uint8Array[]): Uint8Array {
  const body = parts.reduce((n, p) => n + p.length, 0)
  const len: number[] = []
  let n = body
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 128
    len.push(byte)
  } while (n > 0)
  const out = new Uint8Array(1 + len.length + body)
  out.set([first, ...len])
  let at = 1 + len.length
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

export type FeedState = 'connecting' | 'live' | 'refused' | 'closed'

export interface FeedOptions {
  url: string
  user: string
  /** The current access token (asked again at each reconnect: it lasts 15 minutes). */
  token: () => Promise<string>
  filter: string
  onValue: (topic: string, value: string) => void
  onState: (s: FeedState, detail?: string) => void
}

export class SysFeed {
  private ws: WebSocket | null = null
  private buf = new Uint8Array(0)
  private ping: ReturnType<typeof setInterval> | null = null
  private stopped = false
  private readonly clientId = `${Math.random().toString(36).slice(2, 8)}`

  constructor (private readonly o: FeedOptions) {}

  async start (): Promise<void> {
    if (this.stopped) return
    this.o.onState('connecting')
    const token = await this.o.token()
    const ws = new WebSocket(this.o.url, ['mqtt'])
    ws.binaryType = 'arraybuffer'
    this.ws = ws
    ws.onopen = () => {
      // Clean session, user name and password flags; keepalive 60 s. The client id is the user's (user-...).
      const head = Uint8Array.from([...str('MQTT'), 4, 0xc2, 0, 60])
      ws.send(packet(0x10, head, str(`${this.o.user}-console-${this.clientId}`), str(this.o.user), str(token)))
    }
    ws.onmessage = (ev) => { this.read(new Uint8Array(ev.data as ArrayBuffer)) }
    ws.onclose = () => {
      if (this.ping !== null) clearInterval(this.ping)
      this.ping = null
      if (this.stopped) return
      this.o.onState('closed')
      setTimeout(() => { this.start().catch((e: unknown) => { this.o.onState('closed', String(e)) }) }, 3000)
    }
  }

  stop (): void {
    this.stopped = true
    this.ws?.close()
  }

  /** Whole packets out of what arrived (a frame may hold several, or part of one). */
  private read (chunk: Uint8Array): void {
    const all = new Uint8Array(this.buf.length + chunk.length)
    all.set(this.buf)
    all.set(chunk, this.buf.length)
    let at = 0
    for (;;) {
      let len = 0
      let mul = 1
      let i = at + 1
      for (; i < all.length; i++) {
        len += ((all[i] as number) & 127) * mul
        mul *= 128
        if (((all[i] as number) & 128) === 0) break
      }
      if (i >= all.length || i + 1 + len > all.length) break
      this.handle(all[at] as number, all.subarray(i + 1, i + 1 + len))
      at = i + 1 + len
    }
    this.buf = all.slice(at)
  }

  private handle (first: number, body: Uint8Array): void {
    const type = first >> 4
    if (type === 2) { // CONNACK
      if (body[1] !== 0) { this.o.onState('refused', `CONNACK ${String(body[1])}`); this.stopped = true; this.ws?.close(); return }
      this.ws?.send(packet(0x82, Uint8Array.from([0, 1]), str(this.o.filter), Uint8Array.from([0])))
      this.ping = setInterval(() => { this.ws?.send(Uint8Array.from([0xc0, 0])) }, 30_000)
    } else if (type === 9) { // SUBACK
      if (body[2] === 0x80) { this.o.onState('refused', 'SUBACK 0x80'); this.stopped = true; this.ws?.close(); return }
      this.o.onState('live')
    } else if (type === 3) { // PUBLISH, QoS 0 (what was asked for)
      const tlen = ((body[0] as number) << 8) | (body[1] as number)
      const qos = (first >> 1) & 3
      const start = 2 + tlen + (qos > 0 ? 2 : 0)
      this.o.onValue(dec.decode(body.subarray(2, 2 + tlen)), dec.decode(body.subarray(start)))
    }
  }
}
