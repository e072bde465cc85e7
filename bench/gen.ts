/**
 * The load generator of `warbler bench`, one per worker thread: a slice of
 * the clients (bench/lean.ts raw sockets, spread over several loopback source
 * addresses) and of the senders, driven by commands from the orchestrator
 * (bench/run.ts) through bench/load-worker.ts's ThreadHandle.
 *
 * A sender publishes QoS 1 messages whose body is `sid.n.ts.padding`: its
 * id, its counter (1, 2, 3...) and the send time (ms, high resolution, on a
 * clock shared by the threads). Against Warbler it sends chat frames on
 * `wb/u/{user}/out` (to a user, or to a group conversation) and is
 * acknowledged by the service's ack on its device feed, after COMMIT;
 * against Mosquitto it publishes the body on a plain topic and the ack is the
 * PUBACK. A receiver takes the body from the stored message on its feed (or
 * the plain payload): end-to-end latency is receipt time minus send time, and
 * it checks that every sender's counter goes up by one (no gap, duplicate or
 * reordering).
 *
 * Sending is closed loop (each sender keeps `window` unacknowledged) or paced
 * (a timer makes `rate` messages/s due over the senders; a sender sends
 * one when it has fewer than `window` unacknowledged, at once or when an ack
 * frees room; what is due beyond one window per sender (or 50 ms of the
 * rate) is dropped and counted as held back: nothing queues up without bound in the generator).
 */
import { parentPort, workerData } from 'node:worker_threads'
import { performance } from 'node:perf_hooks'
import { encodeString, LeanClient } from './lean.js'
import { topics } from '@warbler/sdk/protocol'

export interface ClientSpec {
  clientId: string
  /** Null: anonymous (Mosquitto). */
  auth: { username: string, password: string } | null
  subs: string[]
  /** Reconnected now and then by the soak scenario. */
  idle?: boolean
}

export interface SenderSpec {
  /** Index of its client in this generator's clients. */
  client: number
  sid: number
  /** Pacing class (`chat`, `group`): paced rates are given per class. */
  cls: string
  /** Warbler: `{user}` of `wb/u/{user}/out`, null for plain MQTT. */
  user: string | null
  /** Plain MQTT topic (Mosquitto). */
  topic: string | null
  to?: string
  conv?: string
  /** Receivers that get each of its messages (for the loss check). */
  fanout: number
}

export interface GenPlan {
  index: number
  port: number
  host: string
  /** Source addresses, used in turn by the clients. */
  sources: string[]
  clients: ClientSpec[]
  senders: SenderSpec[]
  payloadBytes: number
  /** Connects in flight at once in this generator. */
  connectConcurrency: number
  timeoutMs: number
  /** The clients' MQTT protocol (bench/lean.ts). */
  protocol: 4 | 5
  /** Chat sends carry an epoch (one per sender) and n (1, 2, ...), as the SDK's do. */
  numbered: boolean
}

export interface GoArg { mode: 'closed' | 'paced' | 'off', window: number, rates?: Record<string, number> }

export interface Counters {
  connected: number
  open: number
  connectFailures: number
  sent: number
  acked: number
  errored: number
  received: number
  selfCopies: number
  heldBack: number
  gaps: number
  dups: number
  errors: number
  reconnects: number
  reconnectFailures: number
  /** Deliveries the acknowledged messages of this generator's senders should make. */
  expected: number
  inflight: number
  firstError: string | null
}

export interface Mark { t: number, counters: Counters, elu: number }

const plan = workerData as GenPlan
const now = (): number => performance.timeOrigin + performance.now()

interface Sender {
  spec: SenderSpec
  c: LeanClient | null
  topic: Buffer
  prefix: string
  n: number
  inflight: number
  acked: number
}

interface Client { spec: ClientSpec, c: LeanClient | null, last: Map<number, number>, own: Sender | null, index: number }

const clients: Client[] = plan.clients.map((spec, index) => ({ spec, c: null, last: new Map(), own: null, index }))
const senders: Sender[] = plan.senders.map((spec) => ({
  spec,
  c: null,
  topic: encodeString(spec.user !== null ? topics.out(spec.user) : spec.topic ?? 'bench/none'),
  prefix: spec.to !== undefined ? `","to":"${spec.to}","body":"` : `","conv":"${spec.conv ?? ''}","body":"`,
  n: 1,
  inflight: 0,
  acked: 0
}))
for (const s of senders) (clients[s.spec.client] as Client).own = s

const k: Counters = { connected: 0, open: 0, connectFailures: 0, sent: 0, acked: 0, errored: 0, received: 0, selfCopies: 0, heldBack: 0, gaps: 0, dups: 0, errors: 0, reconnects: 0, reconnectFailures: 0, expected: 0, inflight: 0, firstError: null }
let go: GoArg = { mode: 'off', window: 1 }
let pacer: NodeJS.Timeout | null = null
let measuring = false
const MAX_SAMPLES = 2_000_000
let samples = new Float64Array(1 << 16)
let nSamples = 0
let recent: number[] = []
let lastElu = performance.eventLoopUtilization()
const filler = 'x'.repeat(Math.max(0, plan.payloadBytes - 30))

function fail (what: string): void {
  k.errors++
  k.firstError ??= what
}

function record (latency: number): void {
  if (recent.length < 50_000) recent.push(latency)
  if (!measuring || nSamples >= MAX_SAMPLES) return
  if (nSamples === samples.length) {
    const bigger = new Float64Array(samples.length * 2)
    bigger.set(samples)
    samples = bigger
  }
  samples[nSamples++] = latency
}

/** A message body arrived at client `c`: latency and the per-sender order check. */
function body (c: Client, b: string): void {
  const d1 = b.indexOf('.')
  const d2 = b.indexOf('.', d1 + 1)
  const d3 = b.indexOf('.', d2 + 1)
  if (d1 <= 0 || d2 < 0) return
  const sid = Number(b.slice(0, d1))
  if (c.own !== null && c.own.spec.sid === sid) { k.selfCopies++; return }
  const n = Number(b.slice(d1 + 1, d2))
  const ts = Number(b.slice(d2 + 1, d3 === -1 ? undefined : d3))
  const last = c.last.get(sid) ?? 0
  if (n <= last) { k.dups++; return }
  if (n !== last + 1) k.gaps += n - last - 1
  c.last.set(sid, n)
  k.received++
  record(now() - ts)
}

interface Frame { t: string, cid?: string, ref?: string, code?: string, message?: string, from?: string, body?: unknown, frames?: Frame[] }

function onPublish (c: Client, topic: string, payload: Buffer): void {
  if (topic.startsWith('bench/')) { body(c, payload.toString('latin1')); return }
  if (!topic.startsWith('wb/')) return
  // The feed topics, as the SDK reads them: a batch frame carries the messages (acks) of one commit.
  const one = JSON.parse(payload.toString('utf8')) as Frame
  const frames = one.t === 'batch' ? one.frames ?? [] : [one]
  const s = c.own
  if (topic.startsWith('wb/d/')) {
    if (s === null) return
    for (const f of frames) {
      if (f.t === 'ack' && f.cid !== undefined) acked(s)
      else if (f.t === 'error') {
        fail(`${String(f.code)}: ${String(f.message)}`)
        if (f.ref !== undefined) { s.inflight--; k.inflight--; k.errored++; pump(s) }
      }
    }
    return
  }
  // A sender's own feed: every SDK device listens to it; only its own copies matter here.
  const own = s !== null && s.spec.user !== null && topic === topics.feed(s.spec.user) ? s.spec.user : null
  for (const f of frames) {
    if (f.t !== 'msg') continue
    if (own !== null && f.from === own) k.selfCopies++
    else if (typeof f.body === 'string') body(c, f.body)
  }
}

function acked (s: Sender): void {
  s.inflight--
  s.acked++
  k.inflight--
  k.acked++
  k.expected += s.spec.fanout
  if (go.mode === 'closed') pump(s)
  else if (go.mode === 'paced') {
    const c = classOf.get(s)
    if (c !== undefined && c.backlog > 0) { send(s); c.backlog-- }
  }
}

function send (s: Sender): void {
  const c = s.c as LeanClient
  const n = s.n++
  const b = `${s.spec.sid}.${n}.${now().toFixed(3)}.${filler}`
  const id = (n % 65535) + 1
  s.inflight++
  k.inflight++
  k.sent++
  const order = plan.numbered ? `,"epoch":"bench-${s.spec.sid}","n":${n}` : ''
  c.publish1(s.topic, Buffer.from(s.spec.user === null ? b : `{"t":"msg","cid":"c${n}"${order}${s.prefix.slice(1)}${b}"}`), id)
}

function pump (s: Sender): void {
  while (go.mode === 'closed' && s.inflight < go.window && s.c !== null && !s.c.closed) send(s)
}

interface PaceClass { senders: Sender[], rate: number, issued: number, cursor: number, backlog: number }
const classOf = new Map<Sender, PaceClass>()

/** Send what the class owes, to whichever senders have room, in turn. */
function drainClass (c: PaceClass): void {
  let misses = 0
  while (c.backlog > 0 && misses < c.senders.length) {
    const s = c.senders[c.cursor++ % c.senders.length] as Sender
    if (s.c !== null && !s.c.closed && s.inflight < go.window) { send(s); c.backlog--; misses = 0 } else misses++
  }
}

function startPacer (): void {
  classOf.clear()
  const classes = new Map<string, PaceClass>()
  for (const s of senders) {
    const rate = go.rates?.[s.spec.cls] ?? 0
    if (rate <= 0) continue
    let c = classes.get(s.spec.cls)
    if (c === undefined) classes.set(s.spec.cls, c = { senders: [], rate, issued: 0, cursor: 0, backlog: 0 })
    c.senders.push(s)
    classOf.set(s, c)
  }
  const t0 = performance.now()
  pacer = setInterval(() => {
    const elapsed = (performance.now() - t0) / 1000
    for (const c of classes.values()) {
      const due = Math.floor(c.rate * elapsed) - c.issued
      if (due <= 0) continue
      c.issued += due
      c.backlog += due
      drainClass(c)
      // What the senders cannot take (all at `window` unacknowledged) waits at most
      // one window per sender or 50 ms worth, whichever is more; the rest is held back.
      const cap = Math.max(go.window * c.senders.length, Math.ceil(c.rate * 0.05))
      if (c.backlog > cap) { k.heldBack += c.backlog - cap; c.backlog = cap }
    }
  }, 2)
}

async function connectOne (c: Client): Promise<void> {
  const src = plan.sources[c.index % plan.sources.length]
  const lc = await LeanClient.connect(plan.port, c.spec.clientId, c.spec.auth, plan.host, { localAddress: src, timeoutMs: plan.timeoutMs, protocol: plan.protocol })
  c.c = lc
  lc.handlers.onPublish = (topic, payload) => { onPublish(c, topic, payload) }
  if (c.own !== null) {
    const s = c.own
    s.c = lc
    lc.handlers.onPuback = (_id) => { if (s.spec.user === null) acked(s) }
  }
  lc.handlers.onClose = () => { k.open-- }
  k.open++
  if (c.spec.subs.length > 0) await lc.subscribe(c.spec.subs)
}

/**
 * Connect every client, `connectConcurrency` at a time. `start` and `end`
 * (on the clock shared by the threads) span the first CONNECT to the last
 * SUBACK (or CONNACK, without subscriptions) of a session that opened.
 */
async function connectAll (): Promise<{ seconds: number, start: number, end: number }> {
  const t0 = performance.now()
  const start = now()
  let end = start
  let next = 0
  const deadline = Date.now() + plan.timeoutMs * 4 + clients.length * 50
  const lane = async (): Promise<void> => {
    while (next < clients.length && Date.now() < deadline) {
      const c = clients[next++] as Client
      try {
        await connectOne(c)
        k.connected++
        end = now()
      } catch (err) {
        k.connectFailures++
        fail((err as Error).message)
        c.c?.destroy()
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(plan.connectConcurrency, clients.length)) }, lane))
  return { seconds: (performance.now() - t0) / 1000, start, end }
}

let reconnectCursor = 0
async function reconnect (count: number): Promise<void> {
  const idle = clients.filter((c) => c.spec.idle === true)
  if (idle.length === 0) return
  await Promise.all(Array.from({ length: Math.min(count, idle.length) }, async () => {
    const c = idle[reconnectCursor++ % idle.length] as Client
    try {
      if (c.c !== null && !c.c.closed) {
        const closed = new Promise<void>((resolve) => { const lc = c.c as LeanClient; const prev = lc.handlers.onClose; lc.handlers.onClose = () => { prev?.(); resolve() } })
        c.c.end()
        await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, plan.timeoutMs))])
      }
      await connectOne(c)
      k.reconnects++
    } catch (err) {
      k.reconnectFailures++
      fail(`reconnect: ${(err as Error).message}`)
    }
  }))
}

function counters (): Counters { return { ...k } }

function setGo (arg: GoArg): void {
  if (pacer !== null) clearInterval(pacer)
  pacer = null
  go = arg
  if (go.mode === 'closed') for (const s of senders) pump(s)
  else if (go.mode === 'paced') startPacer()
}

function mark (measure: boolean): Mark {
  const e = performance.eventLoopUtilization()
  const elu = performance.eventLoopUtilization(e, lastElu).utilization
  lastElu = e
  if (measure) { nSamples = 0 }
  measuring = measure
  return { t: now(), counters: counters(), elu }
}

parentPort?.on('message', (msg: { id: number, cmd: string, arg?: unknown }) => {
  const reply = (result: unknown, transfer: ArrayBuffer[] = []): void => { parentPort?.postMessage({ id: msg.id, result }, transfer) }
  const error = (err: unknown): void => { parentPort?.postMessage({ id: msg.id, error: String((err as Error).stack ?? err) }) }
  try {
    switch (msg.cmd) {
      case 'connect':
        connectAll().then((r) => reply({ ...r, counters: counters() }), error)
        break
      case 'go':
        setGo(msg.arg as GoArg)
        reply(null)
        break
      case 'mark':
        reply(mark(msg.arg === true))
        break
      case 'stats': {
        const r = recent
        recent = []
        r.sort((a, b) => a - b)
        const p99 = r.length === 0 ? NaN : r[Math.min(r.length - 1, Math.floor(0.99 * r.length))] as number
        reply({ counters: counters(), p99, samples: r.length })
        break
      }
      case 'latencies': {
        const out = samples.slice(0, nSamples)
        reply(out, [out.buffer])
        break
      }
      case 'reconnect':
        reconnect(msg.arg as number).then(() => reply(counters()), error)
        break
      case 'close':
        setGo({ mode: 'off', window: 1 })
        for (const c of clients) c.c?.end()
        reply(counters())
        break
      default:
        error(new Error(`unknown command ${msg.cmd}`))
    }
  } catch (err) {
    error(err)
  }
})
