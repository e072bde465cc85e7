/**
 * The generator threads of `warbler bench` (bench/gen.ts) as one handle:
 * clients and senders dealt out over the threads, commands sent to all of
 * them, and their counters summed.
 */
import type { ClientSpec, Counters, GenPlan, GoArg, SenderSpec } from './gen.js'
import { ThreadHandle } from './load-worker.js'
import { type BenchOptions, NET_TIMEOUT_MS } from './bench-options.js'
import { fmt0, type Progress } from './progress.js'
import type { RunContext } from './run-context.js'
import type { Target } from './system-under-test.js'
import { sleep } from './targets.js'

const SUM_KEYS = ['connected', 'open', 'connectFailures', 'sent', 'acked', 'errored', 'received', 'selfCopies', 'heldBack', 'gaps', 'dups', 'errors', 'reconnects', 'reconnectFailures', 'expected', 'inflight'] as const

export function sumCounters (cs: Counters[]): Counters {
  const out: Counters = { connected: 0, open: 0, connectFailures: 0, sent: 0, acked: 0, errored: 0, received: 0, selfCopies: 0, heldBack: 0, gaps: 0, dups: 0, errors: 0, reconnects: 0, reconnectFailures: 0, expected: 0, inflight: 0, firstError: null }
  for (const c of cs) {
    for (const key of SUM_KEYS) out[key] += c[key]
    out.firstError ??= c.firstError
  }
  return out
}

/**
 * The generator threads. Clients are dealt out by `slot` (a chat pair's two
 * clients share a slot, so a thread holds whole pairs); senders go with their client.
 */
export class Generators {
  readonly threads: ThreadHandle[] = []
  /** Per thread: senders by class, for splitting paced rates. */
  private readonly classCounts: Array<Map<string, number>> = []

  constructor (o: BenchOptions, port: number, clients: Array<ClientSpec & { slot: number }>, senders: Array<Omit<SenderSpec, 'client'> & { clientId: string }>) {
    const n = Math.max(1, Math.min(o.generators, clients.length))
    const sources = Array.from({ length: o.sources }, (_, i) => `127.0.0.${i + 2}`)
    const plans: GenPlan[] = Array.from({ length: n }, (_, index) => ({
      index, port, host: '127.0.0.1', sources, clients: [], senders: [], payloadBytes: o.payload,
      connectConcurrency: Math.max(1, Math.ceil(o.connectConcurrency / n)), timeoutMs: NET_TIMEOUT_MS, protocol: o.protocol, numbered: o.numbered
    }))
    const where = new Map<string, { plan: GenPlan, index: number }>()
    for (const c of clients) {
      const plan = plans[c.slot % n] as GenPlan
      where.set(c.clientId, { plan, index: plan.clients.length })
      const { slot: _slot, ...spec } = c
      plan.clients.push(spec)
    }
    for (const s of senders) {
      const w = where.get(s.clientId)
      if (w === undefined) throw new Error(`sender ${s.clientId} has no client`)
      const { clientId: _id, ...spec } = s
      w.plan.senders.push({ ...spec, client: w.index })
    }
    for (const plan of plans) {
      const counts = new Map<string, number>()
      for (const s of plan.senders) counts.set(s.cls, (counts.get(s.cls) ?? 0) + 1)
      this.classCounts.push(counts)
      this.threads.push(new ThreadHandle(new URL('./gen.js', import.meta.url), plan, `generator ${plan.index}`))
    }
  }

  all<T> (cmd: string, arg?: unknown, timeoutMs = NET_TIMEOUT_MS * 2): Promise<T[]> {
    return Promise.all(this.threads.map((t) => t.call<T>(cmd, timeoutMs, arg)))
  }

  async counters (): Promise<{ counters: Counters, p99: number }> {
    const rs = await this.all<{ counters: Counters, p99: number }>('stats')
    const p = rs.map((r) => r.p99).filter((x) => Number.isFinite(x))
    return { counters: sumCounters(rs.map((r) => r.counters)), p99: p.length === 0 ? NaN : Math.max(...p) }
  }

  /** Closed loop with `window`, or paced at total `rates` per class (split by each thread's share of senders). */
  async go (arg: GoArg): Promise<void> {
    const total = new Map<string, number>()
    for (const c of this.classCounts) for (const [cls, n] of c) total.set(cls, (total.get(cls) ?? 0) + n)
    await Promise.all(this.threads.map((t, i) => {
      const rates: Record<string, number> = {}
      for (const [cls, r] of Object.entries(arg.rates ?? {})) {
        rates[cls] = r * ((this.classCounts[i] as Map<string, number>).get(cls) ?? 0) / Math.max(1, total.get(cls) ?? 0)
      }
      return t.call('go', NET_TIMEOUT_MS, { ...arg, rates })
    }))
  }

  /**
   * Connect every client (bounded concurrency), showing progress; wall-clock
   * seconds, and `span`: seconds from the first CONNECT to the last SUBACK over all threads.
   */
  async connect (progress: Progress, total: number, phase = 'connect'): Promise<{ seconds: number, span: number, counters: Counters }> {
    const t0 = performance.now()
    let done = false
    const all = this.all<{ counters: Counters, start: number, end: number }>('connect', undefined, NET_TIMEOUT_MS * 4 + total * 50).finally(() => { done = true })
    while (!done) {
      await Promise.race([all.catch(() => {}), sleep(1000)])
      if (done) break
      const { counters: c } = await this.counters()
      const s = (performance.now() - t0) / 1000
      progress.update(phase, s, `${fmt0(c.connected)}/${fmt0(total)} sessions  ${fmt0(c.connected / s)} sessions/s${c.connectFailures > 0 ? `  ${c.connectFailures} failed` : ''}`)
    }
    const rs = await all
    const span = (Math.max(...rs.map((r) => r.end)) - Math.min(...rs.map((r) => r.start))) / 1000
    return { seconds: (performance.now() - t0) / 1000, span, counters: sumCounters(rs.map((r) => r.counters)) }
  }

  async close (): Promise<void> {
    await this.all('close', undefined, 5000).catch(() => {})
    await sleep(200)
    for (const t of this.threads) await t.terminate()
  }
}

/** Start the generator threads for a run and register their close. */
export function generators (ctx: RunContext, t: Target, clients: Array<ClientSpec & { slot: number }>, senders: Array<Omit<SenderSpec, 'client'> & { clientId: string }>): Generators {
  const g = new Generators(ctx.o, t.port, clients, senders)
  ctx.cleanup.push(() => g.close())
  return g
}
