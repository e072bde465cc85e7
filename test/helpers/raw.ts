/**
 * A raw MQTT 3.1.1 connection for tests that need hand-made or malformed
 * packets, a chosen source address, or a client that stops reading: a plain
 * `net` socket plus mqtt-packet's generator and parser. No mocks.
 */
import net from 'node:net'
import mqttPacket, { type IConnackPacket, type Packet } from 'mqtt-packet'
import { varint } from '../../bench/lean.js'

export interface RawClient {
  readonly socket: net.Socket
  /** Every packet received so far, in order. */
  readonly received: Packet[]
  /** Resolves once the socket is closed (by either side). */
  readonly closed: Promise<void>
  isClosed: () => boolean
  /** Write a packet object (generated with mqtt-packet) or raw bytes; returns socket.write's result. */
  send: (p: Packet | Buffer) => boolean
  /** The next received packet matching `pred` (including ones already received and not yet taken). */
  next: (pred?: (p: Packet) => boolean, timeoutMs?: number) => Promise<Packet>
  destroy: () => void
}

/** Open a TCP connection (optionally from `localAddress`); no MQTT sent yet. */
export async function rawSocket (port: number, opts: { localAddress?: string } = {}): Promise<RawClient> {
  const socket = net.connect({ port, host: '127.0.0.1', ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}) })
  socket.setNoDelay(true)
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve())
    socket.once('error', reject)
  })
  socket.on('error', () => {})
  const received: Packet[] = []
  let taken = 0
  const waiters = new Set<() => void>()
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  parser.on('packet', (p: Packet) => {
    received.push(p)
    for (const w of waiters) w()
  })
  parser.on('error', () => {})
  socket.on('data', (d: Buffer) => { parser.parse(d) })
  let isClosed = false
  const closed = new Promise<void>((resolve) => socket.once('close', () => {
    isClosed = true
    for (const w of waiters) w()
    resolve()
  }))
  const client: RawClient = {
    socket,
    received,
    closed,
    isClosed: () => isClosed,
    send: (p) => socket.write(Buffer.isBuffer(p) ? p : mqttPacket.generate(p)),
    next: (pred = () => true, timeoutMs = 5000) => new Promise((resolve, reject) => {
      const check = (): boolean => {
        for (let i = taken; i < received.length; i++) {
          const p = received[i] as Packet
          if (pred(p)) {
            received.splice(i, 1)
            received.splice(taken, 0, p)
            taken++
            resolve(p)
            return true
          }
        }
        if (isClosed) {
          reject(new Error('connection closed before the packet arrived'))
          return true
        }
        return false
      }
      if (check()) return
      const timer = setTimeout(() => { waiters.delete(w); reject(new Error(`no matching packet within ${timeoutMs} ms`)) }, timeoutMs)
      const w = (): void => {
        if (check()) { clearTimeout(timer); waiters.delete(w) }
      }
      waiters.add(w)
    }),
    destroy: () => { socket.destroy() }
  }
  return client
}

/** Open a connection and complete CONNECT/CONNACK; rejects unless the return code is 0. */
export async function rawConnect (port: number, opts: { clientId?: string, localAddress?: string, clean?: boolean, keepalive?: number, username?: string, password?: string } = {}): Promise<RawClient> {
  const c = await rawSocket(port, opts)
  c.send(connectPacket(opts))
  const ack = await c.next((p) => p.cmd === 'connack') as IConnackPacket
  if (ack.returnCode !== 0) {
    c.destroy()
    throw new Error(`CONNACK ${String(ack.returnCode)}`)
  }
  return c
}

export function connectPacket (opts: { clientId?: string, clean?: boolean, keepalive?: number, username?: string, password?: string } = {}): Packet {
  return {
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: opts.clean ?? true,
    clientId: opts.clientId ?? '',
    keepalive: opts.keepalive ?? 60,
    ...(opts.username !== undefined ? { username: opts.username } : {}),
    ...(opts.password !== undefined ? { password: Buffer.from(opts.password) } : {})
  }
}

/** A PUBLISH packet as bytes. */
export function publishBytes (topic: string, payload: Buffer | string, qos: 0 | 1 = 0, messageId = 1): Buffer {
  return mqttPacket.generate({
    cmd: 'publish',
    topic,
    payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
    qos,
    dup: false,
    retain: false,
    ...(qos > 0 ? { messageId } : {})
  })
}

/** Encode an MQTT remaining length (variable byte integer). */
export function remainingLength (n: number): Buffer {
  return Buffer.from(varint(n))
}
