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

/**
 * SIGKILL worker `index` of a node and wait until the primary has started
 * its replacement and that one is ready; resolves to the new pid.
 */
export async function killWorkerAndWait (stderr: () => string, index: number, ms = 10_000): Promise<number> {
  const old = workerPids(stderr()).get(index)
  if (old === undefined) throw new Error(`no worker ${index} in the node's log`)
  const before = stderr().length
  process.kill(old, 'SIGKILL')
  const deadline = Date.now() + ms
  for (;;) {
    const now = workerPids(stderr()).get(index)
    if (now !== undefined && now !== old && stderr().slice(before).includes('"msg":"worker ready"')) return now
    if (Date.now() > deadline) throw new Error(`worker ${index} was not restarted within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
