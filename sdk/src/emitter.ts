/** A minimal typed event emitter (works in browsers and Node). */
export class Emitter<Events extends { [K in keyof Events]: (...args: never[]) => void }> {
  private readonly listeners = new Map<keyof Events, Set<Events[keyof Events]>>()

  on<K extends keyof Events> (event: K, fn: Events[K]): () => void {
    let set = this.listeners.get(event)
    if (set === undefined) { set = new Set(); this.listeners.set(event, set) }
    set.add(fn)
    return () => { this.off(event, fn) }
  }

  off<K extends keyof Events> (event: K, fn: Events[K]): void {
    this.listeners.get(event)?.delete(fn)
  }

  protected listenerCount (event: keyof Events): number {
    return this.listeners.get(event)?.size ?? 0
  }

  /** Calls every listener of `event`; one that throws neither stops the others nor reaches the caller. */
  protected emit<K extends keyof Events> (event: K, ...args: Parameters<Events[K]>): void {
    for (const fn of [...(this.listeners.get(event) ?? [])]) {
      try { (fn as (...a: Parameters<Events[K]>) => void)(...args) } catch (err) { this.listenerFailed(event, err) }
    }
  }

  /** A listener of `event` threw `err`: by default rethrown in a microtask (an uncaught exception, outside the emitter). */
  protected listenerFailed (_event: keyof Events, err: unknown): void {
    rethrowLater(err)
  }
}

/** Report an exception as uncaught without unwinding the caller. */
export function rethrowLater (err: unknown): void {
  queueMicrotask(() => { throw err })
}
