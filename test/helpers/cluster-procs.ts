/**
 * The processes of a `warbler start --workers N` node, as tests see them from
 * outside: whether a pid lives, and which pid each worker has.
 */

/** Whether a process with this pid exists (signal 0 checks without sending). */
export function alive (pid: number): boolean {
  try { process.kill(pid, 0); return true } catch { return false }
}

/** Worker pids by index, from the primary's "worker started" log lines (the latest per index). */
export function workerPids (stderr: string): Map<number, number> {
  const out = new Map<number, number>()
  for (const line of stderr.split('\n')) {
    if (!line.includes('"worker started"')) continue
    const j = JSON.parse(line) as { worker: number, pid: number }
    out.set(j.worker, j.pid)
  }
  return out
}
