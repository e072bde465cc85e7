/** The study's results as markdown tables: medians per path, fan-out and payload size, with ratios against Redis. */
import os from 'node:os'
import type { PathName } from './paths.js'
import type { TrialResult } from './trial.js'

export interface Row { path: PathName, size: number, receivers: number, rate: number, runs: TrialResult[], median: TrialResult }

const LABEL: Record<PathName, string> = {
  none: 'none: the sender alone (control)',
  redis: 'Redis pub/sub (mqemitter-redis)',
  'ipc-advanced': 'cluster IPC, advanced, via the primary',
  'ipc-json': 'cluster IPC, json, via the primary',
  'uds-batched': 'Unix socket, batched per turn',
  'uds-single': 'Unix socket, one write a message'
}

function median (xs: number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] as number : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}

export function medianResult (runs: TrialResult[]): TrialResult {
  const m = (f: (r: TrialResult) => number): number => median(runs.map(f))
  return {
    cpu: { sender: m((r) => r.cpu.sender), hub: m((r) => r.cpu.hub), receivers: m((r) => r.cpu.receivers), redis: m((r) => r.cpu.redis), total: m((r) => r.cpu.total) },
    msgsPerS: m((r) => r.msgsPerS),
    p50: m((r) => r.p50),
    p99: m((r) => r.p99),
    bytes: m((r) => r.bytes)
  }
}

function machine (): string {
  const cpus = os.cpus()
  const load = os.loadavg().map((x) => x.toFixed(1)).join(', ')
  return `${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.versions.node}, load average ${load} at the end`
}

const f1 = (x: number): string => Number.isNaN(x) ? '–' : x.toFixed(1)
const f2 = (x: number): string => Number.isNaN(x) ? '–' : x.toFixed(2)
const int = (x: number): string => Number.isNaN(x) ? '–' : Math.round(x).toLocaleString('en-US')

function table (rows: Row[], saturated: boolean): string {
  const head = saturated
    ? '| path | receivers | msgs/s | sender µs | primary µs | receivers µs | Redis µs | total µs | total / Redis | bytes/msg |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
    : '| path | receivers | sender µs | primary µs | receivers µs | Redis µs | total µs | total / Redis | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
  const lines = rows.map((r) => {
    const base = rows.find((b) => b.path === 'redis' && b.receivers === r.receivers)
    const ratio = base === undefined ? NaN : r.median.cpu.total / base.median.cpu.total
    const c = r.median.cpu
    const cpu = `${f1(c.sender)} | ${r.path.startsWith('ipc') ? f1(c.hub) : '–'} | ${f1(c.receivers)} | ${r.path === 'redis' ? f1(c.redis) : '–'} | **${f1(c.total)}** | ${f2(ratio)}`
    return saturated
      ? `| ${LABEL[r.path]} | ${r.path === 'none' ? '–' : r.receivers} | ${int(r.median.msgsPerS)} | ${cpu} | ${int(r.median.bytes)} |`
      : `| ${LABEL[r.path]} | ${r.path === 'none' ? '–' : r.receivers} | ${cpu} | ${f2(r.median.p50)} | ${f2(r.median.p99)} |`
  })
  return [head, ...lines].join('\n')
}

export function renderMarkdown (rows: Row[], o: { command: string, runs: number, n: number, rate: number, seconds: number, elapsed: number }): string {
  const out: string[] = [
    `Command: \`${o.command}\`; machine: ${machine()}; ${o.runs} runs, medians; ${Math.round(o.elapsed)} s in all.`,
    'CPU is microseconds per message sent, summed over every process of the path (a broadcast\'s copies count as one message);',
    '"total / Redis" is the total against Redis pub/sub with the same fan-out and size.'
  ]
  const sizes = [...new Set(rows.map((r) => r.size))]
  for (const size of sizes) {
    const sat = rows.filter((r) => r.size === size && r.rate === 0)
    const fixed = rows.filter((r) => r.size === size && r.rate > 0)
    if (sat.length > 0) out.push('', `**Saturated, ${size}-byte payload** (${o.n.toLocaleString('en-US')} messages a trial):`, '', table(sat, true))
    if (fixed.length > 0) out.push('', `**${o.rate.toLocaleString('en-US')} msg/s, ${size}-byte payload** (${o.seconds} s a trial; latency one way, the slowest receiver's):`, '', table(fixed, false))
  }
  return out.join('\n')
}
