/**
 * Shared by the benchmarks that drive bench/load.ts: the orchestrator's
 * handle on the load generator's worker thread, and integer option parsing.
 */
import { Worker } from 'node:worker_threads'
import type { LoadConfig } from './load.js'

/** Parse an integer option value in min..max, naming the option when it is not. */
export function intOption (name: string, v: string | undefined, min: number, max: number): number {
  const n = Number(v)
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer in ${min}..${max}`)
  return n
}

/** The load generator (bench/load.ts) in a worker thread; commands are request/reply. */
export class LoadWorker {
  private readonly worker: Worker
  private next = 0
  private readonly calls = new Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>()
  constructor (cfg: LoadConfig) {
    this.worker = new Worker(new URL('./load.js', import.meta.url), { workerData: cfg })
    this.worker.on('message', (m: { id: number, result?: unknown, error?: string }) => {
      const c = this.calls.get(m.id)
      this.calls.delete(m.id)
      if (m.error !== undefined) c?.reject(new Error(m.error))
      else c?.resolve(m.result)
    })
    this.worker.on('error', (e) => { for (const c of this.calls.values()) c.reject(e) })
  }

  /** Run a command in the generator; every call is bounded in time. */
  call<T> (cmd: string, timeoutMs = 60_000): Promise<T> {
    const id = ++this.next
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.calls.delete(id)
        reject(new Error(`load generator: no answer to ${cmd} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.calls.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v as T) },
        reject: (e) => { clearTimeout(timer); reject(e) }
      })
      this.worker.postMessage({ id, cmd })
    })
  }

  async terminate (): Promise<void> { await this.worker.terminate() }
}
