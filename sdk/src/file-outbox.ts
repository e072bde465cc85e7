/**
 * An outbox kept in a file (Node only): a JSON document rewritten atomically
 * (write to a temporary file, fsync, rename) on every change, so unsent
 * messages survive a crash or restart of the app.
 */
import { mkdir, open, readFile, rename } from 'node:fs/promises'
import path from 'node:path'
import type { OutboxEntry, OutboxStore } from './outbox.js'

export class FileOutbox implements OutboxStore {
  private entries: Promise<Map<string, OutboxEntry>> | null = null
  private current = new Map<string, OutboxEntry>()
  private writing: Promise<void> = Promise.resolve()

  constructor (readonly file: string) {}

  /** Read the file once; concurrent first calls share the read (two reads would lose a put). */
  private ensure (): Promise<Map<string, OutboxEntry>> {
    this.entries ??= (async () => {
      let list: OutboxEntry[] = []
      try {
        list = JSON.parse(await readFile(this.file, 'utf8')) as OutboxEntry[]
        if (!Array.isArray(list)) list = []
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      }
      this.current = new Map(list.map((e) => [e.cid, e]))
      return this.current
    })()
    this.entries.catch(() => { this.entries = null }) // a failed read is tried again next time
    return this.entries
  }

  async load (): Promise<OutboxEntry[]> {
    return [...(await this.ensure()).values()]
  }

  async put (e: OutboxEntry): Promise<void> {
    (await this.ensure()).set(e.cid, e)
    await this.save()
  }

  async remove (cid: string): Promise<void> {
    if ((await this.ensure()).delete(cid)) await this.save()
  }

  private save (): Promise<void> {
    const data = JSON.stringify([...this.current.values()])
    // Writes in call order; one failed write (disk full) does not fail the later ones.
    const next = this.writing.catch(() => {}).then(async () => {
      await mkdir(path.dirname(this.file), { recursive: true })
      const tmp = `${this.file}.tmp`
      const fh = await open(tmp, 'w', 0o600)
      try {
        await fh.writeFile(data)
        await fh.sync()
      } finally {
        await fh.close()
      }
      await rename(tmp, this.file)
    })
    this.writing = next
    return next
  }
}
