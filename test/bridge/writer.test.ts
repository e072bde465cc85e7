/**
 * The archive writer on a real SQLite file: a batch of sends is committed in
 * one step, and falls back to statement by statement when that step cannot
 * hold it (a duplicate of an earlier batch, a new conversation), with
 * nothing lost, nothing stored twice and seqs contiguous.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { Database } from '../../shared/sqlite.js'
import { IdentityStore } from '../../broker/identity/identity-store.js'
import { DB_FILE } from '../../shared/data-dir.js'
import { migrate } from '../../bridge/archive/schema.js'
import { ArchiveWriter, type StoredMessage, type StoredReceipt } from '../../bridge/archive/writer.js'

async function open (): Promise<{ db: Database, writer: ArchiveWriter, published: StoredMessage[][], receipts: StoredReceipt[][], close: () => Promise<void> }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'warbler-writer-'))
  const ids = await IdentityStore.open(dir)
  for (const u of ['ann', 'ben', 'cat']) await ids.addUser(u, 'password-1234')
  await ids.close()
  const db = await Database.open(path.join(dir, DB_FILE))
  await migrate(db)
  const published: StoredMessage[][] = []
  const receipts: StoredReceipt[][] = []
  // Batches of at most 512: the tests below span several.
  const writer = new ArchiveWriter(db, (stored, moved) => { published.push(stored); receipts.push(moved); return undefined }, 512)
  return {
    db,
    writer,
    published,
    receipts,
    close: async () => {
      await writer.close()
      await db.close()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

const send = (writer: ArchiveWriter, user: string, peer: string, cid: string): ReturnType<ArchiveWriter['send']> => {
  const conv = `d:${[user, peer].sort().join(':')}`
  return writer.send({ user, cid, conv, peer, body: `body ${cid}`, text: `body ${cid}` })
}

test('batches of sends: retries of earlier batches get their first ack, seqs stay contiguous, order of delivery holds', async () => {
  const w = await open()
  try {
    // A first batch creates the conversation (statement by statement).
    const first = await Promise.all([send(w.writer, 'ann', 'ben', 'a1'), send(w.writer, 'ben', 'ann', 'b1')])
    assert.deepEqual(first.map((r) => r.ack.seq), [1, 2])
    // Many batches of sends in flight at once, each with retries of earlier
    // ones mixed in (the one-step commit fails on the unique index and the
    // batch is redone with the duplicate lookup).
    const rounds: Array<Promise<Awaited<ReturnType<ArchiveWriter['send']>>>> = []
    for (let i = 0; i < 2000; i++) {
      rounds.push(send(w.writer, i % 2 === 0 ? 'ann' : 'ben', i % 2 === 0 ? 'ben' : 'ann', `m${i}`))
      if (i === 1500 || i === 1700) rounds.push(send(w.writer, 'ann', 'ben', 'a1'))
    }
    const results = await Promise.all(rounds)
    const fresh = results.filter((r) => !r.duplicate)
    const dups = results.filter((r) => r.duplicate)
    assert.equal(fresh.length, 2000)
    assert.ok(dups.length > 0)
    for (const d of dups) assert.deepEqual(d.ack, first[0]?.ack)
    const seqs = fresh.map((r) => r.ack.seq).sort((a, b) => a - b)
    assert.deepEqual(seqs, Array.from({ length: 2000 }, (_, i) => i + 3))
    const rows = await w.db.all<{ n: number, lo: number, hi: number }>("SELECT count(*) AS n, min(seq) AS lo, max(seq) AS hi FROM messages WHERE conv = 'd:ann:ben'")
    assert.deepEqual(rows[0], { n: 2002, lo: 1, hi: 2002 })
    const conv = await w.db.get<{ last_seq: number }>("SELECT last_seq FROM conversations WHERE id = 'd:ann:ben'")
    assert.equal(conv?.last_seq, 2002)
    // Deliveries went out in seq order, each message once.
    const delivered = w.published.flat().map((s) => s.frame.seq)
    assert.deepEqual(delivered, Array.from({ length: 2002 }, (_, i) => i + 1))
    // Both ways were taken: in one step, and statement by statement.
    const { batches, oneStep } = w.writer.stats
    assert.ok(oneStep > 0 && oneStep < batches, `batches ${batches}, in one step ${oneStep}`)
  } finally {
    await w.close()
  }
})

test('a batch mixing a new conversation, a refusal and sends to a cached one commits the valid ones', async () => {
  const w = await open()
  try {
    await send(w.writer, 'ann', 'ben', 'x0')
    const [a, b, c] = await Promise.allSettled([
      send(w.writer, 'ann', 'ben', 'x1'),
      send(w.writer, 'ann', 'nobody', 'x2'),
      send(w.writer, 'cat', 'ann', 'x3')
    ])
    assert.equal(a.status, 'fulfilled')
    assert.equal(a.status === 'fulfilled' && a.value.ack.seq, 2)
    assert.equal(b.status, 'rejected')
    assert.match(String(b.status === 'rejected' && (b.reason as Error).message), /no user nobody/)
    assert.equal(c.status === 'fulfilled' && c.value.ack.seq, 1)
    const n = await w.db.get<{ n: number }>('SELECT count(*) AS n FROM messages')
    assert.equal(n?.n, 3)
  } finally {
    await w.close()
  }
})

test('the watermark moves of a batch give one receipt per member and conversation, with where they ended', async () => {
  const w = await open()
  try {
    await send(w.writer, 'ann', 'ben', 'a1') // creates the conversation
    w.receipts.length = 0
    // Sent in one tick, so committed in one batch: ann twice, ben once.
    const [a2, a3, b1] = await Promise.all([send(w.writer, 'ann', 'ben', 'a2'), send(w.writer, 'ann', 'ben', 'a3'), send(w.writer, 'ben', 'ann', 'b1')])
    assert.deepEqual([a2.ack.seq, a3.ack.seq, b1.ack.seq], [2, 3, 4])
    assert.equal(w.receipts.length, 1, 'one batch')
    const batch = w.receipts[0] as StoredReceipt[]
    assert.deepEqual(batch.map((r) => r.frame), [
      { t: 'receipt', conv: 'd:ann:ben', user: 'ann', read: 3, delivered: 3 },
      { t: 'receipt', conv: 'd:ann:ben', user: 'ben', read: 4, delivered: 4 }
    ])
    for (const r of batch) assert.deepEqual([...r.recipients].sort(), ['ann', 'ben'])
    const rows = await w.db.all<{ user: string, read_seq: number, delivered_seq: number }>('SELECT user, read_seq, delivered_seq FROM members WHERE conv = ? ORDER BY user', ['d:ann:ben'])
    assert.deepEqual(rows.map((r) => [r.user, r.read_seq, r.delivered_seq]), [['ann', 3, 3], ['ben', 4, 4]])
    // A batch that moves nothing (a refused send) reports nothing.
    await assert.rejects(send(w.writer, 'ann', 'nobody', 'x1'), /no user nobody/)
    assert.deepEqual(w.receipts.slice(1).flat(), [])
  } finally {
    await w.close()
  }
})
