/**
 * Where each numbered sender stands: the last `n` the archive took of each
 * (sender, epoch) (docs/protocol.md, "Numbered sends"). The writer stores a
 * numbered send only when its `n` is the next one, so a sender's messages are
 * stored in the order it sent them even when one was lost on its way to the
 * service (a service killed after the broker acknowledged it): the later
 * ones are refused until it is sent again.
 *
 * The numbers are in the `send_order` table, written in the statement that
 * writes the batch's messages (the `send_batch` view, schema.ts), so a
 * restarted service knows them. Here: a bounded cache of them, and the
 * statements. Rows not moved for SEND_ORDER_KEEP_MS are deleted (the
 * service's hourly sweep); a sender that comes back with a forgotten epoch is
 * told to send from 1, which the SDK answers by starting a new epoch.
 */
import type { Database } from '../../shared/sqlite.js'
import type { Tx } from './tx.js'

/** How long an epoch that moved no more is remembered (ms). */
export const SEND_ORDER_KEEP_MS = 7 * 86400_000

/** Epochs kept in memory at most; the rest are read again from the table when they send. */
const CACHE_MAX = 10_000

const SQL_LAST = 'SELECT n FROM send_order WHERE sender = ? AND epoch = ?'

/**
 * A batch's rows with numbered sends in it, through the view whose trigger
 * inserts each message row and moves each order row (schema.ts, migration 4).
 * Message rows as SQL_INSERT's (batch-sql.ts); an order row is
 * [null, null, null, sender, null, ts, null, null, null, epoch, n].
 */
export const SQL_INSERT_ORDERED = `INSERT INTO send_batch(conv, seq, id, sender, cid, ts, body, text, props, epoch, n)
  SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, value->>7, value->>8, value->>9, value->>10 FROM json_each(CAST(?1 AS TEXT))`

/** An order row of a batch (see SQL_INSERT_ORDERED). */
export function orderRow (sender: string, epoch: string, n: number, ts: number): unknown[] {
  return [null, null, null, sender, null, ts, null, null, null, epoch, n]
}

export class SendOrder {
  /** `sender \0 epoch` -> last n stored; in order of last use (a Map keeps insertion order). */
  private readonly last = new Map<string, number>()

  constructor (private readonly db: Database, private readonly max = CACHE_MAX) {}

  /** The last n the archive took of (sender, epoch); 0 for an epoch it does not know. */
  async lastOf (key: string, sender: string, epoch: string): Promise<number> {
    const cached = this.last.get(key)
    if (cached !== undefined) {
      this.last.delete(key)
      this.last.set(key, cached)
      return cached
    }
    const row = await this.db.get<{ n: number }>(SQL_LAST, [sender, epoch])
    const n = row?.n ?? 0
    this.remember(key, n)
    return n
  }

  /** A committed batch moved `key` to `n`. */
  remember (key: string, n: number): void {
    this.last.delete(key)
    this.last.set(key, n)
    if (this.last.size > this.max) this.last.delete(this.last.keys().next().value as string)
  }

  /** What is cached may be ahead of the table (a failed commit) or behind it (a sweep): read again. */
  forget (): void { this.last.clear() }

  get size (): number { return this.last.size }
}

/** Delete the epochs that moved no more since `before` (ms); the number deleted. */
export async function pruneSendOrder (tx: Tx, before: number): Promise<number> {
  return (await tx.run('DELETE FROM send_order WHERE ts < ?', [before])).changes
}

export function orderKey (sender: string, epoch: string): string {
  return `${sender}\u0000${epoch}`
}
