/**
 * A scenario of `warbler bench`: what it measures, the figures it compares
 * across targets, and one run against one target.
 */
import type { BenchOptions } from '../bench-options.js'
import type { RunContext } from '../run-context.js'
import type { RunResult } from '../run.js'

export interface Metric {
  key: string
  label: string
  unit: string
  /** Which way is better (for the ratio's reading); null: neither. */
  better: 'higher' | 'lower' | null
  digits?: number
  /** Shown in the SVG chart. */
  chart?: boolean
}

export interface ScenarioDef {
  about: string
  /** The compared figures; a function where they depend on the options (workers: a row per configuration). */
  metrics: Metric[] | ((o: BenchOptions) => Metric[])
  run: (ctx: RunContext) => Promise<RunResult>
}

export const LATENCY = (prefix: string, label: string, chart = true): Metric[] => [
  { key: `${prefix}p50_ms`, label: `${label} latency p50`, unit: 'ms', better: 'lower', digits: 2 },
  { key: `${prefix}p95_ms`, label: `${label} latency p95`, unit: 'ms', better: 'lower', digits: 2 },
  { key: `${prefix}p99_ms`, label: `${label} latency p99`, unit: 'ms', better: 'lower', digits: 2, chart },
  { key: `${prefix}max_ms`, label: `${label} latency max`, unit: 'ms', better: 'lower', digits: 1 }
]

export function latencyValues (prefix: string, l: { p50: number, p95: number, p99: number, max: number }): Record<string, number> {
  return { [`${prefix}p50_ms`]: l.p50, [`${prefix}p95_ms`]: l.p95, [`${prefix}p99_ms`]: l.p99, [`${prefix}max_ms`]: l.max }
}
