/**
 * The archive writer alone, without a broker: how fast `ArchiveWriter`
 * stores sends, and what each costs on the event loop and on SQLite's thread.
 *
 *   node dist/bench/writer-alone.js [--sends 100000] [--concurrency 512] [--prefill 0]
 *
 * 16 direct conversations; `concurrency` sends are kept in flight (each lane
 * sends its next message when the previous one is acknowledged). `--prefill N`
 * first stores N messages (in one transaction) so that lookups run against a
 * large archive: the duplicate check of every batch must stay an index lookup.
 * A temp data dir on the same disk as the system temp dir, deleted at the end.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Database } from '../shared/sqlite.js'
import { migrate } from '../bridge/archive/schema.js'
import { ArchiveWriter } from '../bridge/archive/writer.js'
import { IdentityStore } from '../broker/identity/identity-store.js'
import { DB_FILE } from '../shared/data-dir.js'

function option (name: string, def: number): number {
  const i = process.argv.indexOf(name)
  const v = i === -1 ? def : Number(process.argv[i + 1])
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name} must be a non-negative integer`)
  return v
}

function ticks (file: string): number {
  const s = readFileSync(file, 'utf8')
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) * 10 // ms (USER_HZ 100)
}

const sends = Math.max(1, option('--sends', 100_000))
const concurrency = Math.max(1, option('--concurrency', 512))
const prefill = option('--prefill', 0)
const dir = mkdtempSync(path.join(os.tmpdir(), 'warbler-bench-writer-'))
try {
  const ids = await IdentityStore.open(dir)
  for (let i = 0; i < 16; i++) { await ids.addUser(`s${i}`, 'bench-password-1'); await ids.addUser(`r${i}`, 'bench-password-1') }
  await ids.close()
  const db = await Database.open(path.join(dir, DB_FILE))
  await migrate(db)
  if (prefill > 0) {
    await db.exec(`INSERT INTO conversations(id, kind, name, created_at, last_seq, last_ts) VALUES ('d:old:past', 'direct', NULL, 0, ${prefill}, 0);
      WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${prefill})
      INSERT INTO messages(conv, seq, id, sender, cid, ts, body, text) SELECT 'd:old:past', x, 'old' || x, 's' || (x % 16), 'old' || x, x, '"hello"', 'hello' FROM c;`)
  }
  const writer = new ArchiveWriter(db, () => undefined)
  const body = 'x'.repeat(64)
  let next = 0
  const main0 = ticks(`/proc/self/task/${process.pid}/stat`)
  const all0 = ticks('/proc/self/stat')
  const t0 = performance.now()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < sends) {
      const n = next++
      const s = n % 16
      await writer.send({ user: `s${s}`, cid: `c${n}`, conv: `d:r${s}:s${s}`, peer: `r${s}`, body, text: body })
    }
  }))
  const secs = (performance.now() - t0) / 1000
  const main = ticks(`/proc/self/task/${process.pid}/stat`) - main0
  const others = ticks('/proc/self/stat') - all0 - main
  const lat = [...writer.stats.latencies].sort((a, b) => a - b)
  const pct = (q: number): number => lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] ?? 0
  const out = {
    sends,
    concurrency,
    prefill,
    storesPerSec: Math.round(sends / secs),
    batches: writer.stats.batches,
    meanBatch: +(sends / writer.stats.batches).toFixed(1),
    commitP50Ms: +pct(0.5).toFixed(2),
    commitP99Ms: +pct(0.99).toFixed(2),
    eventLoopUsPerSend: +(main * 1000 / sends).toFixed(1),
    otherThreadsUsPerSend: +(others * 1000 / sends).toFixed(1)
  }
  process.stdout.write(JSON.stringify(out, null, 2) + '\n')
  await writer.close()
  await db.close()
} finally {
  rmSync(dir, { recursive: true, force: true })
}
