/**
 * WAL checkpoints off the commit path.
 *
 * In WAL mode with synchronous=NORMAL (durability `process`, the default) a
 * commit appends to the WAL and does not sync; the sync happens when the WAL
 * is copied back into the database (a checkpoint). With synchronous=FULL
 * (durability `power`) every commit also syncs the WAL, and checkpoints still
 * copy it back. By default SQLite runs that checkpoint inside the commit
 * that crosses 1,000 WAL pages, so every so often one batch of sends waits
 * for an fsync, and with it every sender of the batch. Here the writer's
 * connection never checkpoints by itself; a connection of its own runs a
 * PASSIVE checkpoint (it never blocks the writer or readers) on a timer, on
 * SQLite's thread like every statement. Closing the last connection
 * checkpoints what is left, as before.
 */
import type { Database } from '../../shared/sqlite.js'

export class Checkpointer {
  private running: Promise<void> | null = null
  private readonly timer: NodeJS.Timeout
  /** Checkpoints completed so far (a test waits on it rather than on the clock). */
  completed = 0

  private constructor (private readonly db: Database, intervalMs: number, onError: (err: unknown) => void) {
    this.timer = setInterval(() => {
      if (this.running !== null) return
      this.running = db.exec('PRAGMA wal_checkpoint(PASSIVE)').then(() => { this.completed++ }, onError).finally(() => { this.running = null })
    }, intervalMs)
    this.timer.unref()
  }

  /** Turn automatic checkpoints off on `writer` and checkpoint from `own` every `intervalMs`. */
  static async start (writer: Database, own: Database, intervalMs: number, onError: (err: unknown) => void): Promise<Checkpointer> {
    await writer.exec('PRAGMA wal_autocheckpoint = 0')
    return new Checkpointer(own, intervalMs, onError)
  }

  /** Stop the timer and close the checkpoint connection (after a checkpoint in progress). */
  async close (): Promise<void> {
    clearInterval(this.timer)
    if (this.running !== null) await this.running
    await this.db.close()
  }
}
