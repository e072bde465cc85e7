/**
 * An MQTT 5 connection speaking packets made by hand with mqtt-packet, for
 * tests that must see exactly what the broker sends (mqtt.js hides some of
 * it, and enforces some limits itself). No mocks: a real socket.
 */
import net from 'node:net'
import mqttPacket, { type Packet } from 'mqtt-packet'

export interface V5Raw {
  /** Every packet received and not yet taken by `next`, in order. */
  readonly received: Packet[]
  send: (p: Record<string, unknown>) => void
  /** The next packet of this command (one already received included), or a rejection after timeoutMs. */
  next: (cmd: string, timeoutMs?: number) => Promise<Packet>
  closed: Promise<void>
  destroy: () => void
}

/** Connect, send `connect` (clientId, clean, properties, will...: mqtt-packet's fields) and wait for CONNACK. */
export async function rawV5 (port: number, connect: Record<string, unknown>): Promise<V5Raw & { connack: Packet }> {
  const socket = net.connect({ port, host: '127.0.0.1' })
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  socket.on('error', () => {})
  const received: Packet[] = []
  const waiters = new Set<() => void>()
  const parser = mqttPacket.parser({ protocolVersion: 5 })
  parser.on('packet', (p: Packet) => { received.push(p); for (const w of [...waiters]) w() })
  parser.on('error', () => {})
  socket.on('data', (d: Buffer) => { parser.parse(d) })
  let isClosed = false
  const closed = new Promise<void>((resolve) => socket.once('close', () => { isClosed = true; for (const w of [...waiters]) w(); resolve() }))
  const next = (cmd: string, timeoutMs = 5000): Promise<Packet> => new Promise((resolve, reject) => {
    const check = (): boolean => {
      const i = received.findIndex((p) => p.cmd === cmd)
      if (i >= 0) { resolve(received.splice(i, 1)[0] as Packet); return true }
      if (isClosed) { reject(new Error(`connection closed before a ${cmd}`)); return true }
      return false
    }
    if (check()) return
    const timer = setTimeout(() => { waiters.delete(w); reject(new Error(`no ${cmd} within ${timeoutMs} ms`)) }, timeoutMs)
    const w = (): void => { if (check()) { clearTimeout(timer); waiters.delete(w) } }
    waiters.add(w)
  })
  const send = (p: Record<string, unknown>): void => { socket.write(mqttPacket.generate(p as unknown as Packet, { protocolVersion: 5 })) }
  send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 0, ...connect })
  const connack = await next('connack')
  return { received, send, next, closed, connack, destroy: () => { socket.destroy() } }
}
