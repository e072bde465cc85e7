/**
 * An MQTT 5 connection speaking packets made by hand (mqtt-packet over a
 * real socket), for reading exactly what the broker answers: reason codes,
 * reason strings and CONNACK properties that mqtt.js handles itself.
 */
import net from 'node:net'
import mqttPacket, { type Packet } from 'mqtt-packet'

type V5Packet = Packet & { reasonCode?: number, properties?: Record<string, unknown>, messageId?: number, granted?: number[] }

export interface V5Conn {
  /** Every packet received and not yet taken by `next`, in order. */
  readonly received: V5Packet[]
  send: (p: Record<string, unknown>) => void
  next: (cmd: string, ms?: number) => Promise<V5Packet>
  closed: Promise<void>
  socket: net.Socket
  connack: V5Packet
  destroy: () => void
}

/** Connect, send CONNECT (protocol level 5, keep alive 60 unless `connect` says otherwise, with `connect` merged in: clientId, clean, properties, will...) and wait for the CONNACK. */
export async function v5Connect (port: number, connect: Record<string, unknown>): Promise<V5Conn> {
  const socket = net.connect({ port, host: '127.0.0.1' })
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  socket.on('error', () => {})
  const received: V5Packet[] = []
  const waiters = new Set<() => void>()
  const parser = mqttPacket.parser({ protocolVersion: 5 })
  parser.on('packet', (p: Packet) => { received.push(p as V5Packet); for (const w of [...waiters]) w() })
  parser.on('error', () => {})
  socket.on('data', (d: Buffer) => { parser.parse(d) })
  let isClosed = false
  const closed = new Promise<void>((resolve) => socket.once('close', () => { isClosed = true; for (const w of [...waiters]) w(); resolve() }))
  const next = (cmd: string, ms = 5000): Promise<V5Packet> => new Promise((resolve, reject) => {
    const check = (): boolean => {
      const i = received.findIndex((p) => p.cmd === cmd)
      if (i >= 0) { resolve(received.splice(i, 1)[0] as V5Packet); return true }
      if (isClosed) { reject(new Error(`connection closed before a ${cmd}`)); return true }
      return false
    }
    if (check()) return
    const timer = setTimeout(() => { waiters.delete(w); reject(new Error(`no ${cmd} within ${ms} ms`)) }, ms)
    const w = (): void => { if (check()) { clearTimeout(timer); waiters.delete(w) } }
    waiters.add(w)
  })
  const send = (p: Record<string, unknown>): void => { socket.write(mqttPacket.generate(p as unknown as Packet, { protocolVersion: 5 })) }
  send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 60, ...connect })
  const connack = await next('connack')
  return { received, send, next, closed, socket, connack, destroy: () => { socket.destroy() } }
}
