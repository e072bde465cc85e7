/**
 * What one run of a `warbler bench` scenario against one target gives: the
 * figures the report compares, per phase, over time, and the check.
 */
import type { TargetName } from './bench-options.js'
import type { Check, PhaseStats, Sample } from './phases.js'

export interface RunResult {
  target: TargetName
  run: number
  /** The figures compared across targets (see each scenario's metrics). */
  values: Record<string, number>
  phases: Record<string, PhaseStats>
  timeline: Sample[]
  check: Check | null
  notes: string[]
}
