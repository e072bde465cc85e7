/**
 * An outbox kept in a file (Node only): a JSON document rewritten atomically
 * (write to a temporary file, fsync, rename) on every change, so unsent
 * messages survive a crash or restart of the app.
 */
import { mkdir, open, readFile, rename } from 'node:fs/promises'
import path from 'node:path'
import type { OutboxEntry, OutboxStore } from './outbox.js'

export class FileOutbox implements OutboxStore {
  private entries: Map<string, OutboxEntry> | null = null
  private writing: Promise<void> = Promise.resolve()

  constructor (readonly file: string) {}

  private async ensure (): Promise<Map<string, OutboxEntry>> {
    if (this.entries !== null) return this.entries
    let list: OutboxEntry[] = []
    try {
      list = JSON.parse(await readFile(this.file, 'utf8')) as OutboxEntry[]
      if (!Array.isArray(list)) list = []
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    this.entries = new Map(list.map((e) => [e.cid, e]))
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
    const data = JSON.stringify([...(this.entries ?? new Map()).values()])
    this.writing = this.writing.then(async () => {
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
    return this.writing
  }
}
