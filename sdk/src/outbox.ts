/**
 * The outbox: messages sent but not yet acknowledged by the server. They are
 * resent after every reconnect, with the same client message id, until the
 * server acknowledges them (stored once, whatever the retries) or refuses
 * them. The store is pluggable so that the outbox survives an app restart:
 * memory by default, a file in Node (`@warbler/sdk/file-outbox`), IndexedDB
 * in browsers (`@warbler/sdk/idb-outbox`).
 */
export interface OutboxEntry {
  /** Client message id. */
  cid: string
  /** `{to}` or `{conv}` as given to send(). */
  target: { to: string } | { conv: string }
  body: unknown
  /** When send() was called (ms). */
  createdAt: number
}

export interface OutboxStore {
  /** Everything still pending, oldest first. */
  load: () => Promise<OutboxEntry[]>
  put: (entry: OutboxEntry) => Promise<void>
  remove: (cid: string) => Promise<void>
}

export class MemoryOutbox implements OutboxStore {
  private readonly entries = new Map<string, OutboxEntry>()
  load (): Promise<OutboxEntry[]> { return Promise.resolve([...this.entries.values()]) }
  put (e: OutboxEntry): Promise<void> { this.entries.set(e.cid, e); return Promise.resolve() }
  remove (cid: string): Promise<void> { this.entries.delete(cid); return Promise.resolve() }
}
