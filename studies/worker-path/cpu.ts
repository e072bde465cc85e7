/**
 * CPU time of whole processes read from outside, the same way for every
 * process of a trial (Node peers, the cluster primary, redis-server): the sum
 * over the process's threads of /proc/PID/task/TID/schedstat's first field,
 * nanoseconds on a CPU. Nanosecond resolution, where /proc/PID/stat counts in
 * 10 ms ticks; threads count too (libuv's pool, V8's GC helpers, Redis' I/O
 * threads). A thread that ends between two readings takes its time with it;
 * the processes here keep theirs for their whole life.
 */
import { readdirSync, readFileSync } from 'node:fs'

export function cpuNs (pid: number): number {
  let total = 0
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0])
    } catch { /* the thread ended meanwhile */ }
  }
  return total
}

/** Fails early, with the reason, on a system without per-thread schedstat (not Linux, or a kernel without it). */
export function checkCpuSource (): void {
  try {
    if (!Number.isFinite(cpuNs(process.pid))) throw new Error('unreadable')
  } catch (err) {
    throw new Error(`this study reads CPU time from /proc/PID/task/TID/schedstat (Linux): ${(err as Error).message}`)
  }
}
