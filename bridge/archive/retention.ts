/**
 * Retention: delete messages older than `retentionDays`, and beyond the newest
 * `retentionMessages` of each conversation, in small batches through the
 * writer (so it never holds the database for long), then give free pages back
 * with an incremental vacuum. Sequence numbers are never reused: a
 * conversation's last_seq stays where it is.
 */
import type { ArchiveWriter } from './writer.js'

const BATCH = 1000
/** Pages given back per vacuum step (8 MB with 4 KB pages); steps go through the writer's queue. */
const VACUUM_PAGES = 2000
/** Most vacuum steps per pass; what is left goes at the next pass. */
const VACUUM_STEPS = 50

/**
 * The writer's own connection, to run a statement to completion: Tx.run
 * takes one step of a statement (node-sqlite3's run), which for
 * `PRAGMA incremental_vacuum(N)` frees a single page, not N.
 */
interface Connection {
  exec: (sql: string) => Promise<void>
  get: (sql: string) => Promise<Record<string, unknown> | undefined>
}

export interface RetentionPolicy { days: number, messages: number }

export class Retention {
  private timer: NodeJS.Timeout | null = null
  private running: Promise<number> | null = null
  deleted = 0

  constructor (private readonly writer: ArchiveWriter, private readonly policy: RetentionPolicy, private readonly everyMs = 3600_000) {}

  start (): void {
    if (this.policy.days === 0 && this.policy.messages === 0) return
    this.timer = setInterval(() => { void this.run().catch(() => {}) }, this.everyMs)
    this.timer.unref()
    void this.run().catch(() => {})
  }

  /** One pass; resolves to the number of messages deleted. */
  run (): Promise<number> {
    this.running ??= this.pass().finally(() => { this.running = null })
    return this.running
  }

  private async pass (): Promise<number> {
    let total = 0
    if (this.policy.days > 0) {
      const cutoff = Date.now() - this.policy.days * 86400_000
      for (;;) {
        const n = await this.writer.op(async (tx) => (await tx.run(
          'DELETE FROM messages WHERE rowid IN (SELECT rowid FROM messages WHERE ts < ? LIMIT ?)', [cutoff, BATCH])).changes)
        total += n
        if (n < BATCH) break
      }
    }
    if (this.policy.messages > 0) {
      const keep = this.policy.messages
      for (;;) {
        const n = await this.writer.op(async (tx) => (await tx.run(
          `DELETE FROM messages WHERE rowid IN (
             SELECT m.rowid FROM conversations c JOIN messages m ON m.conv = c.id AND m.seq <= c.last_seq - ?
              WHERE c.last_seq > ? LIMIT ?)`, [keep, keep, BATCH])).changes)
        total += n
        if (n < BATCH) break
      }
    }
    if (total > 0) await this.vacuum()
    this.deleted += total
    return total
  }

  /** Give free pages back to the file system, a slice at a time, in order with the writer's batches. */
  private async vacuum (): Promise<void> {
    const conn = (this.writer as unknown as { db?: Partial<Connection> }).db
    if (typeof conn?.exec !== 'function' || typeof conn.get !== 'function') {
      await this.writer.op(async (tx) => { for (let i = 0; i < VACUUM_PAGES; i++) await tx.run('PRAGMA incremental_vacuum(1)') })
      return
    }
    const db = conn as Connection
    for (let i = 0; i < VACUUM_STEPS; i++) {
      const left = await this.writer.op(async () => {
        await db.exec(`PRAGMA incremental_vacuum(${VACUUM_PAGES})`)
        return Number((await db.get('PRAGMA freelist_count'))?.freelist_count ?? 0)
      })
      if (left === 0) break
    }
  }

  stop (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }
}
