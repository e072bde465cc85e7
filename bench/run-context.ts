/**
 * One run of a `warbler bench` scenario against one target: its context (a
 * fresh temp dir, the cleanup of everything started in it). Its result is
 * run.ts's RunResult.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { BenchOptions, TargetName } from './bench-options.js'
import type { Progress } from './progress.js'

export interface RunContext {
  o: BenchOptions
  target: TargetName
  run: number
  dir: string
  progress: Progress
  /** Registered by the scenario so that an interrupt stops what it started. */
  cleanup: Array<() => Promise<void>>
}

/** A fresh temp dir for one run, removed afterwards; everything started in it is stopped. */
export async function inRun<T> (target: TargetName, run: number, o: BenchOptions, progress: Progress, active: Set<RunContext>, fn: (ctx: RunContext) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `warbler-bench-${o.scenario}-${target}-`))
  const ctx: RunContext = { o, target, run, dir, progress, cleanup: [] }
  active.add(ctx)
  try {
    return await fn(ctx)
  } finally {
    await runCleanup(ctx)
    active.delete(ctx)
    rmSync(dir, { recursive: true, force: true })
  }
}

export async function runCleanup (ctx: RunContext): Promise<void> {
  while (ctx.cleanup.length > 0) {
    const f = ctx.cleanup.pop() as () => Promise<void>
    await f().catch(() => {})
  }
}
