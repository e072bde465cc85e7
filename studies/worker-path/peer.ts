/**
 * One process of a trial: the sender or a receiver of one path. Started by
 * worker-path.ts (child_process.fork) or, for the ipc paths, as a cluster
 * worker of hub.ts; its configuration is in the WP_PEER environment variable
 * and it is driven over its IPC channel by `{ctl, id}` requests, each
 * answered with the same id:
 *
 *   sender:   run {n, rate}  -> sends n packets (rate 0: as fast as the path
 *             takes them), answers {startNs, written}
 *   receiver: arm {n}        -> forgets latencies, keeps the next n
 *             wait {total}   -> answers once `total` packets arrived in all,
 *             with the arrival time of the last and p50/p99 one-way latency
 *   both:     exit
 */
import { setImmediate as turn, setTimeout as sleep } from 'node:timers/promises'
import { makePacket, ageNs, type Packet } from './packet.js'
import { openInbound, openOutbound, type PeerConfig } from './paths.js'

/** Packets a saturated sender makes per event-loop turn (a busy broker's poll phase hands over a few dozen). */
const BURST = 64
/** No request may keep a peer busy longer than this. */
const RUN_TIMEOUT_MS = 120_000

interface Ctl { ctl: string, id: number, n?: number, rate?: number, total?: number, seq?: number }

const config = JSON.parse(process.env.WP_PEER ?? 'null') as PeerConfig | null
if (config === null || process.send === undefined) throw new Error('peer.js runs as a child with WP_PEER set and an IPC channel')
const reply = (m: Record<string, unknown>): void => { process.send?.(m) }
// A peer never outlives the process that drives it.
process.on('disconnect', () => process.exit(0))

async function pump (send: (p: Packet) => boolean, drain: () => Promise<void>, n: number, rate: number, seq: number): Promise<void> {
  const deadline = Date.now() + RUN_TIMEOUT_MS
  const t0 = performance.now()
  let sent = 0
  while (sent < n) {
    if (Date.now() > deadline) throw new Error(`sent only ${sent} of ${n} in ${RUN_TIMEOUT_MS} ms`)
    // At a fixed rate, every packet due by now (a 1 ms timer: a few per turn at 5,000/s).
    const due = rate === 0 ? Math.min(n, sent + BURST) : Math.min(n, Math.floor((performance.now() - t0) * rate / 1000) + 1)
    let ok = true
    while (sent < due && ok) ok = send(makePacket(config!.size, seq + sent++))
    if (!ok) await drain()
    else if (sent < n) await (rate === 0 ? turn() : sleep(1))
  }
}

async function sender (c: PeerConfig): Promise<void> {
  const out = await openOutbound(c)
  process.on('message', (m: Ctl) => {
    if (m.ctl === 'run') {
      const startNs = process.hrtime.bigint().toString()
      pump(out.send, out.drain, m.n ?? 0, m.rate ?? 0, m.seq ?? 0).then(
        () => reply({ ctl: 'done', id: m.id, startNs, written: out.written() }),
        (err: Error) => reply({ ctl: 'done', id: m.id, error: err.message })
      )
    } else if (m.ctl === 'exit') {
      void out.close().finally(() => process.exit(0))
    }
  })
  reply({ ctl: 'ready', pid: process.pid })
}

function percentile (sorted: Float64Array, q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number
}

async function receiver (c: PeerConfig): Promise<void> {
  let count = 0
  let lastNs = 0n
  let lat = new Float64Array(0)
  let kept = 0
  let waiting: { id: number, total: number } | null = null
  const answer = (): void => {
    if (waiting === null || count < waiting.total) return
    const sorted = lat.subarray(0, kept).sort()
    reply({ ctl: 'done', id: waiting.id, count, lastNs: lastNs.toString(), p50: percentile(sorted, 0.5) / 1e6, p99: percentile(sorted, 0.99) / 1e6 })
    waiting = null
  }
  const inbound = await openInbound(c, (p) => {
    const now = process.hrtime.bigint()
    count++
    lastNs = now
    if (kept < lat.length) lat[kept++] = ageNs(p.payload, now)
    if (waiting !== null && count >= waiting.total) answer()
  })
  process.on('message', (m: Ctl) => {
    if (m.ctl === 'arm') {
      lat = new Float64Array(m.n ?? 0)
      kept = 0
      reply({ ctl: 'done', id: m.id })
    } else if (m.ctl === 'wait') {
      waiting = { id: m.id, total: m.total ?? 0 }
      answer()
    } else if (m.ctl === 'exit') {
      void inbound.close().finally(() => process.exit(0))
    }
  })
  reply({ ctl: 'ready', pid: process.pid })
}

await (config.role === 'send' ? sender(config) : receiver(config))
