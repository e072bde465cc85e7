/**
 * Requests waiting for their answer (a `res` or `error` frame naming their
 * id), each with a timeout.
 */
import { TimeoutError, type WarblerError } from './errors.js'

interface Waiter { resolve: (v: unknown) => void, reject: (e: WarblerError) => void, timer: ReturnType<typeof setTimeout> }

export class Requests {
  private readonly waiting = new Map<string, Waiter>()

  constructor (private readonly timeout: number) {}

  /** Wait for the answer to request `id` (`op` names it in a TimeoutError). */
  wait<R> (id: string, op: string): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id)
        reject(new TimeoutError(op, this.timeout))
      }, this.timeout)
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject, timer })
    })
  }

  /** The answer to `id` came; false if nobody waits for it (any more). */
  resolve (id: string, data: unknown): boolean {
    const w = this.take(id)
    w?.resolve(data)
    return w !== undefined
  }

  /** Request `id` failed; false if nobody waits for it (any more). */
  reject (id: string, e: WarblerError): boolean {
    const w = this.take(id)
    w?.reject(e)
    return w !== undefined
  }

  /** Every waiting request fails with `e`. */
  rejectAll (e: () => WarblerError): void {
    for (const id of [...this.waiting.keys()]) this.reject(id, e())
  }

  private take (id: string): Waiter | undefined {
    const w = this.waiting.get(id)
    if (w === undefined) return undefined
    this.waiting.delete(id)
    clearTimeout(w.timer)
    return w
  }
}
