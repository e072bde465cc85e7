/**
 * Shared by the benchmarks: the orchestrator's handle on a load generator's
 * worker thread (bench/load.ts, bench/gen.ts), and integer option parsing.
 */
import { Worker } from 'node:worker_threads'
import type { LoadConfig } from './load.js'

/** Parse an integer option value in min..max, naming the option when it is not. */
export function intOption (name: string, v: string | undefined, min: number, max: number): number {
  const n = Number(v)
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer in ${min}..${max}`)
  return n
}

/**
 * A worker thread driven by request/reply commands (`{id, cmd, arg}` in,
 * `{id, result}` or `{id, error}` out); every call is bounded in time.
 */
export class ThreadHandle {
  private readonly worker: Worker
  private next = 0
  private readonly calls = new Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>()
  constructor (script: URL, workerData: unknown, private readonly label = 'load generator') {
    this.worker = new Worker(script, { workerData })
    this.worker.on('message', (m: { id: number, result?: unknown, error?: string }) => {
      const c = this.calls.get(m.id)
      this.calls.delete(m.id)
      if (m.error !== undefined) c?.reject(new Error(m.error))
      else c?.resolve(m.result)
    })
    const failAll = (e: Error): void => {
      for (const c of this.calls.values()) c.reject(e)
      this.calls.clear()
    }
    this.worker.on('error', failAll)
    this.worker.on('exit', (code) => { failAll(new Error(`${this.label} thread exited (${code})`)) })
  }

  /** Run a command in the thread; rejects after timeoutMs. */
  call<T> (cmd: string, timeoutMs = 60_000, arg?: unknown): Promise<T> {
    const id = ++this.next
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.calls.delete(id)
        reject(new Error(`${this.label}: no answer to ${cmd} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.calls.set(id, {
        resolve: (v) => { clearTimeout(timer); resolve(v as T) },
        reject: (e) => { clearTimeout(timer); reject(e) }
      })
      this.worker.postMessage({ id, cmd, arg })
    })
  }

  async terminate (): Promise<void> { await this.worker.terminate() }
}

/** The load generator of the archive and workers benchmarks (bench/load.ts) in a worker thread. */
export class LoadWorker extends ThreadHandle {
  constructor (cfg: LoadConfig) { super(new URL('./load.js', import.meta.url), cfg) }
}
