/**
 * The live figures panel: the $SYS values of each broker of the node (one
 * under `$SYS/broker`, or one per worker and node under
 * `$SYS/broker/node/NODE/WORKER` with Redis), sampled every two seconds into
 * small charts. Counters (messages) are charted as rates.
 */
import { h } from '../dom.js'
import { Chart } from './chart.js'
import type { ConsoleStrings } from './console-strings.js'
import type { FeedState } from './sys-feed.js'

const SAMPLE_MS = 2000

/** The root of a $SYS topic (whose broker it is) and the figure's name under it. */
function split (topic: string): { root: string, key: string } | null {
  const m = /^(\$SYS\/broker\/node\/[^/]+\/[^/]+|\$SYS\/broker)\/(.+)$/.exec(topic)
  return m === null ? null : { root: m[1] as string, key: m[2] as string }
}

interface Broker {
  values: Map<string, string>
  charts: Record<'connected' | 'in' | 'out' | 'refused' | 'p99' | 'heap', Chart>
  reasons: HTMLElement
  last: { at: number, received: number, sent: number } | null
}

export class FiguresPanel {
  readonly root: HTMLElement
  private readonly state: HTMLElement
  private readonly boxes: HTMLElement
  private readonly brokers = new Map<string, Broker>()
  private timer: ReturnType<typeof setInterval> | null = null

  constructor (private readonly t: ConsoleStrings) {
    this.state = h('p', { class: 'feed-state', id: 'feed-state', 'data-state': 'connecting', role: 'status' }, t.feed.connecting)
    this.boxes = h('div', { class: 'brokers' })
    this.root = h('section', { id: 'figures', 'aria-labelledby': 'figures-h' }, h('h2', { id: 'figures-h' }, t.sections.figures), this.state, this.boxes)
  }

  start (): void {
    this.timer = setInterval(() => { this.sample() }, SAMPLE_MS)
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
  }

  setState (s: FeedState, detail?: string): void {
    this.state.dataset.state = s
    this.state.textContent = detail === undefined ? this.t.feed[s] : `${this.t.feed[s]} (${detail})`
  }

  onValue (topic: string, value: string): void {
    const at = split(topic)
    if (at === null) return
    this.broker(at.root).values.set(at.key, value)
  }

  private broker (root: string): Broker {
    let b = this.brokers.get(root)
    if (b !== undefined) return b
    const i = this.brokers.size
    const c = (id: string, title: string, unit: string, digits = 0): Chart => new Chart(`fig-${i}-${id}`, title, unit, digits)
    b = {
      values: new Map(),
      charts: {
        connected: c('connected', this.t.connected, ''),
        in: c('in', this.t.msgIn, '', 1),
        out: c('out', this.t.msgOut, '', 1),
        refused: c('refused', this.t.refused, ''),
        p99: c('p99', this.t.storeP99, ' ms', 2),
        heap: c('heap', this.t.heap, ' MB', 1)
      },
      reasons: h('ul', { class: 'reasons', id: `fig-${i}-reasons`, 'aria-label': this.t.byReason }),
      last: null
    }
    const box = h('div', { class: 'broker', 'data-root': root }, h('h3', {}, this.t.broker(root)), h('div', { class: 'charts' }, ...Object.values(b.charts).map((ch) => ch.root)), h('h4', {}, this.t.byReason), b.reasons)
    this.boxes.append(box)
    this.brokers.set(root, b)
    return b
  }

  private sample (): void {
    const now = Date.now()
    for (const b of this.brokers.values()) {
      const num = (k: string): number => Number(b.values.get(k) ?? 0)
      const received = num('messages/received')
      const sent = num('messages/sent')
      if (b.last !== null) {
        const s = Math.max(0.001, (now - b.last.at) / 1000)
        b.charts.in.push(Math.max(0, received - b.last.received) / s)
        b.charts.out.push(Math.max(0, sent - b.last.sent) / s)
      }
      b.last = { at: now, received, sent }
      b.charts.connected.push(num('clients/connected'))
      b.charts.p99.push(num('warbler/store/latency/p99_ms'))
      b.charts.heap.push(num('heap/current') / 1048576)
      const reasons = [...b.values].filter(([k]) => k.startsWith('warbler/refused/')).map(([k, v]) => [k.slice('warbler/refused/'.length), Number(v)] as const)
      b.charts.refused.push(reasons.reduce((n, [, v]) => n + v, 0))
      b.reasons.replaceChildren(...reasons.filter(([, v]) => v > 0).map(([r, v]) => h('li', {}, `${r}: ${v}`)))
    }
  }
}
