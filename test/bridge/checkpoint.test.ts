/**
 * WAL checkpoints run off the writer's connection (bridge/archive/checkpoint.ts):
 * the writer never checkpoints by itself, and the WAL still stays bounded
 * because the checkpoint connection copies it back on its timer.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { test } from 'node:test'
import { Database } from '../../shared/sqlite.js'
import { Checkpointer } from '../../bridge/archive/checkpoint.js'

const walSize = (file: string): number => statSync(`${file}-wal`).size

/**
 * 20 transactions of about 1 MB each; the largest WAL size seen. Between two,
 * a pause: without a checkpointer a fixed one, with it until a checkpoint
 * that began after the commit has completed (two completions), so that a
 * loaded machine, where the timer runs late, changes nothing.
 */
async function writeAndWatch (db: Database, file: string, ck?: Checkpointer): Promise<number> {
  let largest = 0
  for (let i = 0; i < 20; i++) {
    await db.exec('BEGIN; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) INSERT INTO t(v) SELECT randomblob(1000) FROM c; COMMIT')
    largest = Math.max(largest, walSize(file))
    if (ck === undefined) {
      await sleep(60)
      continue
    }
    const target = ck.completed + 2
    const deadline = Date.now() + 30_000 // a safety bound only
    while (ck.completed < target) {
      assert.ok(Date.now() < deadline, 'no checkpoint completed within 30 s')
      await sleep(5)
    }
  }
  return largest
}

test('the writer leaves checkpoints to the checkpoint connection, and the WAL stays bounded', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'warbler-ckpt-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'a.db')
  const writer = await Database.open(file)
  await writer.exec('CREATE TABLE t (v BLOB)')

  // Without the checkpointer and with automatic checkpoints off, the WAL only grows.
  await writer.exec('PRAGMA wal_autocheckpoint = 0')
  const unchecked = await writeAndWatch(writer, file)
  assert.ok(unchecked > 15 * 1024 * 1024, `WAL ${unchecked} bytes`)
  await writer.exec('PRAGMA wal_checkpoint(TRUNCATE)')

  const errors: unknown[] = []
  const ck = await Checkpointer.start(writer, await Database.open(file), 25, (e) => errors.push(e))
  const bounded = await writeAndWatch(writer, file, ck)
  await ck.close()
  await writer.close()
  assert.deepEqual(errors, [])
  assert.ok(bounded < unchecked / 3, `WAL reached ${bounded} bytes with checkpoints, ${unchecked} without`)
})
