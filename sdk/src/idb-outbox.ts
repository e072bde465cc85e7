/**
 * An outbox kept in IndexedDB (browsers), so unsent messages survive a page
 * reload or a closed tab.
 */
import type { OutboxEntry, OutboxStore } from './outbox.js'

const STORE = 'outbox'

function req<T> (r: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result)
    r.onerror = () => reject(r.error ?? new Error('IndexedDB request failed'))
  })
}

export class IndexedDbOutbox implements OutboxStore {
  private db: Promise<IDBDatabase> | null = null

  /** `name` is the IndexedDB database name; use one per user and device. */
  constructor (readonly name = 'warbler-outbox') {}

  private open (): Promise<IDBDatabase> {
    this.db ??= new Promise((resolve, reject) => {
      const r = indexedDB.open(this.name, 1)
      r.onupgradeneeded = () => { r.result.createObjectStore(STORE, { keyPath: 'cid' }) }
      r.onsuccess = () => resolve(r.result)
      r.onerror = () => reject(r.error ?? new Error(`IndexedDB database '${this.name}' did not open`))
    })
    return this.db
  }

  private async tx (mode: IDBTransactionMode): Promise<IDBObjectStore> {
    return (await this.open()).transaction(STORE, mode).objectStore(STORE)
  }

  async load (): Promise<OutboxEntry[]> {
    const all = await req((await this.tx('readonly')).getAll()) as OutboxEntry[]
    return all.sort((a, b) => a.createdAt - b.createdAt)
  }

  async put (e: OutboxEntry): Promise<void> { await req((await this.tx('readwrite')).put(e)) }
  async remove (cid: string): Promise<void> { await req((await this.tx('readwrite')).delete(cid)) }
}
