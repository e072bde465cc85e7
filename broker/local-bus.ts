/**
 * The local bus: how the broker workers of one node (`--workers N`) hand
 * each other their publishes, over Unix domain sockets in a private
 * directory instead of Redis pub/sub (about a tenth of the CPU a crossing,
 * docs/benchmarks.md). mq.ts sends every publish here and delivers what
 * comes in to its local subscribers.
 *
 * - Worker i listens on `{dir}/{i}.sock` and connects to every sibling's
 *   socket; it writes only on the connections it made and reads only on
 *   those it accepted, so each direction of a pair is one socket and the
 *   frames of one publisher arrive in order.
 * - A publish is encoded once (bus-frames.ts); the frames of one event-loop
 *   turn go out to each sibling in one write (flushed on setImmediate).
 * - Back-pressure: past QUEUE_BYTES waiting for one sibling, the publisher's
 *   callback (its PUBACK) waits until that socket drains. A receiver stops
 *   reading while more than INFLIGHT_HIGH of its deliveries are unfinished,
 *   so a slow worker slows its senders' publishers instead of filling memory.
 *   A sibling that drains nothing for STALL_MS (hung) releases its waiting
 *   publishers, and copies to it are dropped until it drains (logged once).
 * - A sibling that dies is reconnected (the primary restarts it on the same
 *   path); copies to it meanwhile are dropped, counted and logged once per
 *   outage. A worker that (re)starts connects to each sibling, and a sibling
 *   that sees it connect connects back at once. The (re)started worker's
 *   start waits for that connection back (at most FIRST_CONNECT_MS) before
 *   it takes clients: before, its clients got no copies from that sibling
 *   until it came, and a persistent session that resumed there meanwhile
 *   got those messages only at its next reconnect, after later ones (cluster
 *   chaos test, seed 2482532230: p0 54 after 165; a worker dropped 3 copies
 *   for a sibling it had not reached yet).
 * - Control frames (bus-frames.ts) carry what the workers tell each other
 *   (sibling-readers.ts), on the same sockets as the publishes and in order
 *   with them; `events` hears of them and of each sibling's connections.
 */
import { unlinkSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import type { Logger } from '../shared/log.js'
import { type BusPacket, encodeControl, encodeFrame, FrameReader } from './bus-frames.js'

/** Bytes waiting for one sibling (batch and socket buffer) before publishers wait. */
const QUEUE_BYTES = 1024 * 1024
/** Deliveries of one incoming stream unfinished at once before it is paused, and resumed below the low mark. */
const INFLIGHT_HIGH = 1000
const INFLIGHT_LOW = 250
/** No drain from a sibling for this long: stop holding publishers for it. */
const STALL_MS = 1000
/** Reconnect delays to a sibling that is away: first, doubled, capped. */
const RETRY_MIN_MS = 50
const RETRY_MAX_MS = 1000
/** At start, how long to wait for the first connection to each sibling, and then for those reached to connect back. */
const FIRST_CONNECT_MS = 1000

export interface LocalBusOptions {
  /** The node's private socket directory (mode 0700, made by the primary). */
  dir: string
  /** This worker's index, and how many workers the node has. */
  index: number
  count: number
  /** Largest frame sent or accepted, in bytes. */
  maxFrame: number
  log: Logger
  events?: BusEvents
}

/** What the bus tells its owner about the siblings besides their publishes. */
interface BusEvents {
  /** A control message from a sibling. */
  control: (from: number, message: Record<string, unknown>) => void
  /** This worker's connection to a sibling is up: what it sends now reaches it. */
  up: (index: number) => void
  /** This worker's connection to a sibling is lost (the sibling died or restarts). */
  down: (index: number) => void
  /** A sibling connected to this worker (it started, or reconnected). */
  joined: (index: number) => void
  /** A sibling's connection to this worker closed: what it told this worker before is stale. */
  left: (index: number) => void
}

export interface PathCounts { sent: number, received: number, dropped: number }

function socketPath (dir: string, index: number): string {
  return path.join(dir, `${index}.sock`)
}

interface Sibling {
  readonly index: number
  socket: net.Socket | null
  connecting: boolean
  retry: NodeJS.Timeout | null
  delay: number
  /** Connected once: a later loss is an outage worth a line in the log. */
  known: boolean
  down: boolean
  droppedSinceDown: number
  batch: Buffer[]
  batchBytes: number
  scheduled: boolean
  held: Array<() => void>
  /** Senders of the frames in `batch`, told once the write holding them is in the kernel. */
  batchSenders: Array<() => void>
  /** Senders of frames written but not yet handed to the kernel. */
  unwritten: Set<Array<() => void>>
  stallTimer: NodeJS.Timeout | null
  stalled: boolean
}

export class LocalBus {
  /** Copies sent to, received from and dropped for the siblings since start. */
  readonly counts: PathCounts = { sent: 0, received: 0, dropped: 0 }
  private readonly siblings: Sibling[] = []
  private readonly inbound = new Set<net.Socket>()
  /** Each sibling's latest connection to this worker: an older one closing late says nothing. */
  private readonly latestInbound = new Map<number, net.Socket>()
  /** The siblings whose connection to this worker said who they are; and who waits for one. */
  private readonly linked = new Set<number>()
  private readonly linkWaiters = new Set<() => void>()
  private closed = false
  private readonly server: net.Server

  private constructor (private readonly opts: LocalBusOptions, private readonly deliver: (packet: BusPacket, done: () => void) => void) {
    for (let i = 0; i < opts.count; i++) {
      if (i === opts.index) continue
      this.siblings.push({ index: i, socket: null, connecting: false, retry: null, delay: RETRY_MIN_MS, known: false, down: false, droppedSinceDown: 0, batch: [], batchBytes: 0, scheduled: false, held: [], batchSenders: [], unwritten: new Set(), stallTimer: null, stalled: false })
    }
    this.server = net.createServer((s) => { this.accept(s) })
  }

  /** Listen on this worker's socket, then try each sibling once (bounded): those not up yet are retried. */
  static async start (opts: LocalBusOptions, deliver: (packet: BusPacket, done: () => void) => void): Promise<LocalBus> {
    const bus = new LocalBus(opts, deliver)
    const own = socketPath(opts.dir, opts.index)
    // A previous run of this worker (killed) left its socket file behind.
    try { unlinkSync(own) } catch { /* none */ }
    await new Promise<void>((resolve, reject) => {
      bus.server.once('error', reject)
      bus.server.listen(own, () => { bus.server.off('error', reject); resolve() })
    })
    await Promise.all(bus.siblings.map(async (s) => { await bus.connect(s) }))
    // A sibling reached now connects back at once: until it has, its copies
    // for this worker's clients would be dropped. (One not reached is not up;
    // it waits the same way for this worker when it starts.)
    await bus.linkedFrom(bus.siblings.filter((s) => s.socket !== null).map((s) => s.index), FIRST_CONNECT_MS)
    return bus
  }

  /** Resolves once each of these siblings has connected to this worker, or after `ms`. */
  private async linkedFrom (indexes: number[], ms: number): Promise<void> {
    const done = (): boolean => indexes.every((i) => this.linked.has(i))
    if (done()) return
    let timer: NodeJS.Timeout | undefined
    let check: (() => void) | undefined
    await new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms)
      check = () => { if (done()) resolve() }
      this.linkWaiters.add(check)
    })
    clearTimeout(timer)
    if (check !== undefined) this.linkWaiters.delete(check)
  }

  /**
   * Send one packet to every sibling (those `to` accepts, when given). `cb`
   * runs once the write carrying it to each sibling is in the kernel (the
   * turn's batch, see flush), or that sibling is lost or taken as hung; and,
   * past QUEUE_BYTES waiting for one of them, once that one drains.
   */
  send (packet: BusPacket, cb: () => void, to?: (index: number) => boolean): void {
    if (this.closed || this.siblings.length === 0) { cb(); return }
    const frame = encodeFrame(packet)
    if (frame.length - 4 > this.opts.maxFrame) {
      this.counts.dropped += this.siblings.length
      this.opts.log.warn('a message too large for the local bus was not sent to the other workers', { topic: packet.topic, bytes: frame.length })
      cb()
      return
    }
    let waits = 1
    const step = (): void => { if (--waits === 0) cb() }
    for (const s of this.siblings) {
      if (to !== undefined && !to(s.index)) continue
      const socket = s.socket
      if (socket === null || s.stalled) { this.drop(s); continue }
      this.queue(s, frame)
      this.counts.sent++
      waits++
      s.batchSenders.push(step)
      if (s.batchBytes + socket.writableLength > QUEUE_BYTES) {
        waits++
        this.hold(s, step)
      }
    }
    step()
  }

  /**
   * A control message to one sibling, after what was sent to it before;
   * false (not sent) while this worker has no connection to it.
   */
  sendControl (to: number, message: object): boolean {
    const s = this.siblings.find((x) => x.index === to)
    if (this.closed || s?.socket == null) return false
    this.queue(s, encodeControl(message))
    return true
  }

  private queue (s: Sibling, frame: Buffer): void {
    s.batch.push(frame)
    s.batchBytes += frame.length
    if (!s.scheduled) {
      s.scheduled = true
      setImmediate(() => { this.flush(s) })
    }
  }

  /** Stop listening, drop the connections and remove this worker's socket file. */
  close (): void {
    if (this.closed) return
    this.closed = true
    this.server.close()
    for (const s of this.siblings) {
      if (s.retry !== null) clearTimeout(s.retry)
      if (s.stallTimer !== null) clearTimeout(s.stallTimer)
      s.socket?.destroy()
      s.socket = null
      this.release(s)
    }
    for (const s of this.inbound) s.destroy()
    try { unlinkSync(socketPath(this.opts.dir, this.opts.index)) } catch { /* gone already */ }
  }

  private drop (s: Sibling): void {
    this.counts.dropped++
    s.droppedSinceDown++
  }

  private flush (s: Sibling): void {
    s.scheduled = false
    const batch = s.batch
    const bytes = s.batchBytes
    const senders = s.batchSenders
    s.batch = []
    s.batchBytes = 0
    s.batchSenders = []
    if (batch.length === 0) { for (const f of senders) f(); return }
    if (s.socket === null) {
      for (let i = 0; i < batch.length; i++) this.drop(s)
      for (const f of senders) f()
      return
    }
    // A copy's sender is answered (its PUBACK may go out) once the copy is in
    // the kernel: what a worker wrote to a Unix socket reaches the sibling even
    // if the worker is killed right after. Answered at the queueing, a copy
    // still in this process died with it, and a connected persistent session
    // on the sibling got that message only at its next reconnect, after later
    // ones (cluster chaos test).
    s.unwritten.add(senders)
    s.socket.write(batch.length === 1 ? batch[0] as Buffer : Buffer.concat(batch, bytes), () => {
      if (s.unwritten.delete(senders)) for (const f of senders) f()
    })
    // Not all of it taken by the kernel: a sibling that does not read is found out as below.
    if (s.socket.writableLength > 0) this.armStall(s)
  }

  /** Hold a publisher until the sibling drains, or STALL_MS pass without a drain. */
  private hold (s: Sibling, release: () => void): void {
    s.held.push(release)
    this.armStall(s)
  }

  /** Unless it drains within STALL_MS, a sibling is taken as hung: its waiting senders go on, its copies are dropped. */
  private armStall (s: Sibling): void {
    if (s.stallTimer !== null) return
    s.stallTimer = setTimeout(() => {
      s.stallTimer = null
      if (s.held.length === 0 && s.unwritten.size === 0) return
      s.stalled = true
      this.opts.log.warn('a worker does not take messages on the local bus; they are dropped until it does', { to: s.index, waiting: s.held.length })
      this.release(s)
    }, STALL_MS)
  }

  private release (s: Sibling): void {
    if (s.stallTimer !== null) { clearTimeout(s.stallTimer); s.stallTimer = null }
    const held = s.held
    s.held = []
    for (const r of held) r()
    // A hung, lost or closed sibling: its unwritten copies are not waited for (as above).
    const unwritten = [...s.unwritten]
    s.unwritten.clear()
    for (const senders of unwritten) for (const f of senders) f()
  }

  private async connect (s: Sibling): Promise<void> {
    if (this.closed || s.socket !== null || s.connecting) return
    if (s.retry !== null) { clearTimeout(s.retry); s.retry = null }
    s.connecting = true
    const socket = net.createConnection(socketPath(this.opts.dir, s.index))
    let timer: NodeJS.Timeout | undefined
    await new Promise<void>((resolve) => {
      timer = setTimeout(resolve, FIRST_CONNECT_MS)
      socket.once('connect', () => {
        s.connecting = false
        if (this.closed) { socket.destroy(); resolve(); return }
        socket.setNoDelay(true)
        // Who we are, so that the sibling connects back at once if it has no connection to us.
        const hello = Buffer.alloc(2)
        hello.writeUInt16BE(this.opts.index)
        socket.write(hello)
        s.socket = socket
        s.delay = RETRY_MIN_MS
        if (s.down) this.opts.log.info('local bus to a worker is back', { to: s.index, dropped: s.droppedSinceDown })
        s.known = true
        s.down = false
        s.stalled = false
        this.opts.events?.up(s.index)
        resolve()
      })
      socket.on('drain', () => {
        if (s.stalled) this.opts.log.info('a worker takes messages on the local bus again', { to: s.index, dropped: s.droppedSinceDown })
        s.stalled = false
        this.release(s)
      })
      socket.on('error', () => { /* 'close' follows */ })
      socket.once('close', () => {
        resolve()
        s.connecting = false
        if (s.socket === socket) {
          s.socket = null
          this.release(s)
          if (!this.closed) this.opts.events?.down(s.index)
          if (s.known && !s.down) {
            s.down = true
            s.droppedSinceDown = 0
            this.opts.log.warn('local bus to a worker lost; messages to it are dropped until it is back', { to: s.index })
          }
        }
        if (this.closed) return
        s.retry = setTimeout(() => { s.retry = null; void this.connect(s) }, s.delay)
        s.delay = Math.min(RETRY_MAX_MS, s.delay * 2)
      })
    })
    clearTimeout(timer)
  }

  /** A sibling's connection: its index first, then frames, each delivered here. */
  private accept (socket: net.Socket): void {
    if (this.closed) { socket.destroy(); return }
    this.inbound.add(socket)
    const reader = new FrameReader(this.opts.maxFrame)
    let from: number | null = null
    let head: Buffer = Buffer.alloc(0)
    let inflight = 0
    let paused = false
    const done = (): void => {
      inflight--
      if (paused && inflight <= INFLIGHT_LOW) { paused = false; socket.resume() }
    }
    const onPacket = (packet: BusPacket): void => {
      this.counts.received++
      inflight++
      this.deliver(packet, done)
    }
    const onControl = (message: Record<string, unknown>): void => { if (from !== null) this.opts.events?.control(from, message) }
    socket.on('data', (chunk: Buffer) => {
      let data = chunk
      if (from === null) {
        data = Buffer.concat([head, data])
        if (data.length < 2) { head = data; return }
        from = data.readUInt16BE(0)
        data = data.subarray(2)
        const s = this.siblings.find((x) => x.index === from)
        if (s !== undefined && s.socket === null) void this.connect(s)
        if (s !== undefined) { this.latestInbound.set(from, socket); this.opts.events?.joined(from) }
        this.linked.add(from)
        for (const w of this.linkWaiters) w()
      }
      try {
        reader.push(data, onPacket, onControl)
      } catch (err) {
        this.opts.log.error('a worker sent a broken stream on the local bus; its connection is closed', { from, error: (err as Error).message })
        socket.destroy()
        return
      }
      if (!paused && inflight > INFLIGHT_HIGH) { paused = true; socket.pause() }
    })
    socket.on('error', () => { /* 'close' follows */ })
    socket.once('close', () => {
      this.inbound.delete(socket)
      if (from === null || this.latestInbound.get(from) !== socket) return
      this.latestInbound.delete(from)
      if (!this.closed) this.opts.events?.left(from)
    })
  }
}
