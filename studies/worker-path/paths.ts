/**
 * The candidate paths, each as the two ends one process sees: an outbound
 * end that hands packets to the path (from the sending process) and an
 * inbound end that turns what arrives back into packets (in a receiving
 * process). What they cost is measured by worker-path.ts.
 */
import net from 'node:net'
import { Redis } from 'ioredis'
import MQEmitterRedis from 'mqemitter-redis'
import { type Packet, encodeFrame, frameSize, FrameReader, TOPIC } from './packet.js'

/** `none` is the control: the sender making and pacing packets that go nowhere. */
export const PATHS = ['none', 'redis', 'ipc-advanced', 'ipc-json', 'uds-batched', 'uds-single'] as const
export type PathName = typeof PATHS[number]

/** How a peer process of a trial is told where the others are. */
export interface PeerConfig {
  role: 'send' | 'recv'
  path: PathName
  size: number
  redisPort: number
  /** The Unix sockets the receivers listen on (uds-*); a receiver listens on sockets[index - 1]. */
  sockets: string[]
  index: number
}

export interface Outbound {
  /** Hand one packet to the path; false: call drain() before the next. */
  send: (p: Packet) => boolean
  drain: () => Promise<void>
  /** Bytes this end wrote into sockets so far, when it can tell (else null: counted elsewhere). */
  written: () => number | null
  close: () => Promise<void>
}

export interface Inbound { close: () => Promise<void> }

/** As broker/mq.ts: copies Redis may owe answers for before the publisher waits. */
const REDIS_WINDOW = 1000
/** Bytes a socket may hold unwritten before the sender waits for 'drain'. */
const SOCKET_HIGH_WATER = 1 << 20
/** A batch's slab: frames of one event-loop turn are encoded into it side by side. */
const SLAB = 64 * 1024

type Emitter = {
  emit: (p: Record<string, unknown>, cb: (err?: Error) => void) => void
  on: (topic: string, fn: (p: Packet, done: () => void) => void, cb: () => void) => void
  close: (cb: () => void) => void
}

function redisEmitter (port: number): Emitter {
  // Two connections with auto-pipelining, as broker/mq.ts makes them.
  const conn = (): Redis => new Redis({ host: '127.0.0.1', port, enableAutoPipelining: true, maxRetriesPerRequest: 1 })
  return (MQEmitterRedis as unknown as (o: Record<string, unknown>) => Emitter)({ subConn: conn(), pubConn: conn(), concurrency: 0, matchEmptyLevels: true })
}

/** Redis pub/sub through mqemitter-redis, with broker/mq.ts' origin mark and flow-control window. */
function redisOut (port: number): Outbound {
  const mq = redisEmitter(port)
  const origin = 'a-broker-origin-uuid-0000000000000'
  let pending = 0
  let wake: (() => void) | null = null
  return {
    send (p) {
      pending++
      mq.emit({ ...p, wbOrigin: origin }, () => {
        pending--
        if (wake !== null && pending < REDIS_WINDOW / 2) { wake(); wake = null }
      })
      return pending < REDIS_WINDOW
    },
    drain: () => pending < REDIS_WINDOW / 2 ? Promise.resolve() : new Promise<void>((resolve) => { wake = resolve }),
    written: () => null,
    close: () => new Promise<void>((resolve) => { mq.close(resolve) })
  }
}

async function redisIn (port: number, onPacket: (p: Packet) => void): Promise<Inbound> {
  const mq = redisEmitter(port)
  await new Promise<void>((resolve) => { mq.on(TOPIC, (p, done) => { onPacket(p); done() }, resolve) })
  return { close: () => new Promise<void>((resolve) => { mq.close(resolve) }) }
}

/**
 * node:cluster IPC from a worker: to the primary, which relays (hub.ts). The
 * json channel cannot carry a Buffer as bytes (JSON.stringify makes an array
 * of numbers of it), so the payload travels as base64, as a design on that
 * channel would send it.
 */
function ipcOut (json: boolean): Outbound {
  const send = process.send?.bind(process)
  if (send === undefined) throw new Error('no IPC channel: the ipc paths run in a cluster worker')
  let pending = 0
  let wake: (() => void) | null = null
  const done = (): void => {
    pending--
    if (wake !== null && pending < REDIS_WINDOW / 2) { wake(); wake = null }
  }
  return {
    send (p) {
      pending++
      send(json ? { ...p, payload: p.payload.toString('base64') } : p, undefined, undefined, done)
      return pending < REDIS_WINDOW
    },
    drain: () => pending < REDIS_WINDOW / 2 ? Promise.resolve() : new Promise<void>((resolve) => { wake = resolve }),
    written: () => null,
    close: () => Promise.resolve()
  }
}

function ipcIn (json: boolean, onPacket: (p: Packet) => void): Inbound {
  const listener = (m: unknown): void => {
    const p = m as Packet & { ctl?: string, payload: Buffer | string | Uint8Array }
    if (p.ctl !== undefined) return
    if (json) onPacket({ ...p, payload: Buffer.from(p.payload as string, 'base64') })
    else onPacket(p)
  }
  process.on('message', listener)
  return { close: () => { process.off('message', listener); return Promise.resolve() } }
}

function connectAll (paths: string[]): Promise<net.Socket[]> {
  return Promise.all(paths.map((p) => new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect(p)
    s.once('connect', () => { s.off('error', reject); resolve(s) })
    s.once('error', reject)
  })))
}

function socketEnds (sockets: net.Socket[]): Pick<Outbound, 'drain' | 'written' | 'close'> {
  return {
    drain: () => Promise.all(sockets.map((s) => s.writableNeedDrain ? new Promise<void>((resolve) => s.once('drain', resolve)) : Promise.resolve())).then(() => {}),
    written: () => sockets.reduce((n, s) => n + s.bytesWritten, 0),
    close: () => Promise.all(sockets.map((s) => new Promise<void>((resolve) => s.end(resolve)))).then(() => {})
  }
}

/**
 * Frames made in one event-loop turn go out in one write per receiver, on
 * setImmediate (after the poll phase: the packets of every socket read in
 * that phase share the write). One encoding serves every receiver.
 */
async function udsBatchedOut (paths: string[]): Promise<Outbound> {
  const sockets = await connectAll(paths)
  let slab = Buffer.allocUnsafe(SLAB)
  let used = 0
  let scheduled = false
  const flush = (): void => {
    scheduled = false
    const batch = slab.subarray(0, used)
    for (const s of sockets) s.write(batch)
    // The sockets hold `batch` until written: the next frames go after it.
    slab = slab.length - used >= SLAB / 4 ? slab.subarray(used) : Buffer.allocUnsafe(SLAB)
    used = 0
  }
  return {
    ...socketEnds(sockets),
    send (p) {
      const need = frameSize(p)
      if (slab.length - used < need) {
        if (used > 0) flush()
        if (slab.length < need) slab = Buffer.allocUnsafe(Math.max(SLAB, need))
      }
      used = encodeFrame(p, slab, used)
      if (!scheduled) { scheduled = true; setImmediate(flush) }
      return sockets.every((s) => s.writableLength < SOCKET_HIGH_WATER)
    }
  }
}

/** The same frames, one write per packet and receiver (what batching is measured against). */
async function udsSingleOut (paths: string[]): Promise<Outbound> {
  const sockets = await connectAll(paths)
  return {
    ...socketEnds(sockets),
    send (p) {
      const buf = Buffer.allocUnsafe(frameSize(p))
      const frame = buf.subarray(0, encodeFrame(p, buf, 0))
      let ok = true
      for (const s of sockets) ok = s.write(frame) && ok
      return ok
    }
  }
}

async function udsIn (file: string, onPacket: (p: Packet) => void): Promise<Inbound> {
  const server = net.createServer((s) => {
    const reader = new FrameReader(onPacket)
    s.on('data', (chunk: Buffer) => reader.push(chunk))
    s.on('error', () => {})
  })
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(file, resolve) })
  return { close: () => new Promise<void>((resolve) => { server.close(() => resolve()) }) }
}

export async function openOutbound (c: PeerConfig): Promise<Outbound> {
  switch (c.path) {
    case 'none': return { send: () => true, drain: () => Promise.resolve(), written: () => 0, close: () => Promise.resolve() }
    case 'redis': return redisOut(c.redisPort)
    case 'ipc-advanced': return ipcOut(false)
    case 'ipc-json': return ipcOut(true)
    case 'uds-batched': return await udsBatchedOut(c.sockets)
    case 'uds-single': return await udsSingleOut(c.sockets)
  }
}

export async function openInbound (c: PeerConfig, onPacket: (p: Packet) => void): Promise<Inbound> {
  switch (c.path) {
    case 'none': throw new Error('the none path has no receivers')
    case 'redis': return await redisIn(c.redisPort, onPacket)
    case 'ipc-advanced': return ipcIn(false, onPacket)
    case 'ipc-json': return ipcIn(true, onPacket)
    case 'uds-batched':
    case 'uds-single': return await udsIn(c.sockets[c.index - 1] as string, onPacket)
  }
}
