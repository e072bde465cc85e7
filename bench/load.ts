/**
 * The load generator of the archive benchmark, run in a worker thread so it
 * never shares an event loop with the orchestrator (which samples CPU and
 * metrics). K sender/receiver pairs; each sender keeps `window` messages
 * unacknowledged (a closed loop: saturated, but bounded).
 *
 * - plain (Warbler --bridge off, or Mosquitto): the sender publishes QoS 1 on
 *   `bench/p{i}`, its receiver subscribes to it; the ack is the PUBACK.
 * - chat: the sender publishes `{t:'msg', cid, to}` QoS 1 on `wb/u/{me}/out`;
 *   the ack is the service's ack frame on `wb/d/{clientId}/feed` (sent after
 *   COMMIT); the receiver gets the stored message on its feed, and checks
 *   that its seq is the previous one plus one. Like the SDK, both read the
 *   feed topics, where the messages (acks) of one commit for one user (device)
 *   come in batch frames. Senders subscribe to their own feed too, as every
 *   SDK device does (each message then goes to two users).
 *
 * Commands from the orchestrator: connect, go, mark (start/end of the measured
 * window), stop (stop sending, drain, report).
 */
import { parentPort, workerData } from 'node:worker_threads'
import { performance, type EventLoopUtilization } from 'node:perf_hooks'
import { encodeString, LeanClient } from './lean.js'

export type Mode = 'plain' | 'chat' | 'mosquitto'

export interface LoadConfig {
  mode: Mode
  port: number
  pairs: number
  window: number
  payloadBytes: number
  /** Users s{i} and r{i} share this password; null: anonymous (Mosquitto). */
  password: string | null
  senderInbox: boolean
}

export interface Snapshot { t: number, sent: number, acked: number, received: number, selfCopies: number }

export interface LoadResult {
  window: { seconds: number, acked: number, received: number, selfCopies: number, sent: number }
  latencyMs: { p50: number, p95: number, p99: number, max: number, mean: number, samples: number }
  /** Event-loop utilization of the generator during the window (1 = saturated: it would be the bottleneck). */
  generatorElu: number
  totals: { sent: number, acked: number, received: number, selfCopies: number, errors: number, seqErrors: number, drained: boolean }
  firstError: string | null
}

const cfg = workerData as LoadConfig
const chat = cfg.mode === 'chat'
const RING = 65536

interface Sender {
  c: LeanClient
  user: string
  peer: string
  topic: Buffer
  n: number
  inflight: number
  times: Float64Array
}

interface Receiver { c: LeanClient, lastSeq: number }

const senders: Sender[] = []
const receivers: Receiver[] = []
let sending = false
let measuring = false
let latencies: number[] = []
let sent = 0
let acked = 0
let received = 0
let selfCopies = 0
let errors = 0
let seqErrors = 0
let firstError: string | null = null
const marks: Array<{ snap: Snapshot, elu: EventLoopUtilization }> = []
const filler = 'x'.repeat(Math.max(0, cfg.payloadBytes))

interface Frame { t: string, seq?: number, from?: string, cid?: string, ref?: string, code?: string, message?: string, frames?: Frame[] }

/** The frames of a payload from a feed topic: a batch frame's, or the one frame. */
function framesOf (payload: Buffer): Frame[] {
  const f = JSON.parse(payload.toString('utf8')) as Frame
  return f.t === 'batch' ? f.frames ?? [] : [f]
}

function payloadOf (s: Sender, n: number): Buffer {
  return Buffer.from(`{"t":"msg","cid":"n${n}","to":"${s.peer}","body":"${filler}"}`)
}

function pump (s: Sender): void {
  while (sending && s.inflight < cfg.window && !s.c.closed) {
    const n = s.n++
    const id = (n % 65535) + 1
    s.times[chat ? n % RING : id] = performance.now()
    s.inflight++
    sent++
    s.c.publish1(s.topic, payloadOf(s, n), id)
  }
}

function ackedOne (s: Sender, sentAt: number): void {
  s.inflight--
  acked++
  if (measuring) latencies.push(performance.now() - sentAt)
  pump(s)
}

async function connectAll (): Promise<void> {
  const auth = (user: string): { username: string, password: string } | null => cfg.password === null ? null : { username: user, password: cfg.password }
  for (let i = 0; i < cfg.pairs; i++) {
    const rUser = `r${i}`
    const sUser = `s${i}`
    const rc = await LeanClient.connect(cfg.port, `${rUser}-bench`, auth(rUser))
    const r: Receiver = { c: rc, lastSeq: 0 }
    rc.handlers.onPublish = (topic, payload) => {
      if (!chat) { received++; return }
      if (topic !== rFeed) return
      for (const f of framesOf(payload)) {
        if (f.t !== 'msg' || f.from !== sUser) continue
        if (r.lastSeq !== 0 && f.seq !== r.lastSeq + 1) seqErrors++
        r.lastSeq = f.seq as number
        received++
      }
    }
    const rFeed = `wb/u/${rUser}/feed`
    await rc.subscribe(chat ? [rFeed, `wb/d/${rUser}-bench/feed`] : [`bench/p${i}`])
    receivers.push(r)

    const sc = await LeanClient.connect(cfg.port, `${sUser}-bench`, auth(sUser))
    const s: Sender = {
      c: sc,
      user: sUser,
      peer: rUser,
      topic: encodeString(chat ? `wb/u/${sUser}/out` : `bench/p${i}`),
      n: 1,
      inflight: 0,
      times: new Float64Array(RING)
    }
    if (chat) {
      sc.handlers.onPublish = (topic, payload) => {
        const frames = framesOf(payload)
        if (topic === sFeed) { selfCopies += frames.length; return }
        for (const f of frames) {
          if (f.t === 'ack' && f.cid !== undefined) {
            ackedOne(s, s.times[Number(f.cid.slice(1)) % RING] as number)
          } else if (f.t === 'error') {
            errors++
            firstError ??= `${String(f.code)}: ${String(f.message)}`
            if (f.ref !== undefined) { s.inflight--; pump(s) }
          }
        }
      }
      const sFeed = `wb/u/${sUser}/feed`
      const filters = [`wb/d/${sUser}-bench/feed`]
      if (cfg.senderInbox) filters.push(sFeed)
      await sc.subscribe(filters)
    } else {
      sc.handlers.onPuback = (id) => { ackedOne(s, s.times[id] as number) }
    }
    senders.push(s)
  }
}

function snapshot (): Snapshot {
  return { t: performance.now(), sent, acked, received, selfCopies }
}

function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return 0
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}

async function stop (): Promise<LoadResult> {
  sending = false
  measuring = false
  const deadline = performance.now() + 15_000
  const done = (): boolean => senders.every((s) => s.inflight === 0 || s.c.closed) && received >= acked && (!chat || !cfg.senderInbox || selfCopies >= acked)
  while (!done() && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  const drained = done()
  for (const c of [...senders.map((s) => s.c), ...receivers.map((r) => r.c)]) c.end()
  const [a, b] = marks
  if (a === undefined || b === undefined) throw new Error('stop before two marks')
  const sorted = latencies.sort((x, y) => x - y)
  const mean = sorted.length === 0 ? 0 : sorted.reduce((x, y) => x + y, 0) / sorted.length
  const elu = performance.eventLoopUtilization(b.elu, a.elu)
  return {
    window: {
      seconds: (b.snap.t - a.snap.t) / 1000,
      acked: b.snap.acked - a.snap.acked,
      received: b.snap.received - a.snap.received,
      selfCopies: b.snap.selfCopies - a.snap.selfCopies,
      sent: b.snap.sent - a.snap.sent
    },
    latencyMs: { p50: percentile(sorted, 50), p95: percentile(sorted, 95), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? 0, mean, samples: sorted.length },
    generatorElu: elu.utilization,
    totals: { sent, acked, received, selfCopies, errors, seqErrors, drained },
    firstError
  }
}

parentPort?.on('message', (msg: { id: number, cmd: string }) => {
  const reply = (result: unknown): void => { parentPort?.postMessage({ id: msg.id, result }) }
  const fail = (err: unknown): void => { parentPort?.postMessage({ id: msg.id, error: String((err as Error).stack ?? err) }) }
  switch (msg.cmd) {
    case 'connect':
      connectAll().then(() => reply(null), fail)
      break
    case 'go':
      sending = true
      for (const s of senders) pump(s)
      reply(null)
      break
    case 'mark':
      if (marks.length === 0) { measuring = true; latencies = [] } else measuring = false
      marks.push({ snap: snapshot(), elu: performance.eventLoopUtilization() })
      reply(marks.length)
      break
    case 'stop':
      stop().then(reply, fail)
      break
    default:
      fail(new Error(`unknown command ${msg.cmd}`))
  }
})
