/**
 * Numbered sends (docs/protocol.md, "Numbered sends"): the archive writer on a
 * real SQLite file stores a sender's numbered sends only in the order of
 * their `n`, refuses one that comes early with the number it expects, answers
 * repeats as any send, remembers where each epoch stands across a restart
 * and forgets epochs by age; the message service checks `epoch` and `n` and
 * tells the sender `next` (a node in this process, real MQTT).
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
import { OutOfOrderError } from '../../bridge/archive/archive-errors.js'
import { pruneSendOrder, SendOrder } from '../../bridge/archive/send-order.js'
import { ArchiveWriter, type SendResult } from '../../bridge/archive/writer.js'
import { parseFrame } from '../../bridge/frames.js'
import type { AckFrame, ErrorFrame } from '../../sdk/src/protocol.js'
import { ChatClient } from '../helpers/chat-client.js'
import { startNode } from '../helpers/test-node.js'

const PW = 'password-123'

interface Opened { db: Database, writer: ArchiveWriter, dir: string, reopen: () => Promise<void>, close: () => Promise<void> }

async function open (): Promise<Opened> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'warbler-order-'))
  const ids = await IdentityStore.open(dir)
  for (const u of ['ann', 'ben']) await ids.addUser(u, 'password-1234')
  await ids.close()
  const o: Opened = {
    db: await Database.open(path.join(dir, DB_FILE)),
    writer: null as unknown as ArchiveWriter,
    dir,
    // A service restart: a new writer (nothing in memory) on the same file.
    reopen: async () => {
      await o.writer.close()
      await o.db.close()
      o.db = await Database.open(path.join(dir, DB_FILE))
      o.writer = new ArchiveWriter(o.db, () => undefined)
    },
    close: async () => {
      await o.writer.close()
      await o.db.close()
      rmSync(dir, { recursive: true, force: true })
    }
  }
  await migrate(o.db)
  o.writer = new ArchiveWriter(o.db, () => undefined)
  return o
}

/** A numbered send of ann to ben (or to `conv`). */
function send (w: ArchiveWriter, cid: string, n: number | null, epoch = 'e1', conv = 'd:ann:ben'): Promise<SendResult> {
  return w.send({ user: 'ann', cid, conv, peer: conv === 'd:ann:ben' ? 'ben' : null, body: cid, text: cid, order: n === null ? undefined : { epoch, n } })
}

async function archived (db: Database): Promise<string[]> {
  return (await db.all<{ cid: string }>("SELECT cid FROM messages WHERE conv = 'd:ann:ben' ORDER BY seq")).map((r) => r.cid)
}

async function lastN (db: Database, epoch = 'e1'): Promise<number | undefined> {
  return (await db.get<{ n: number }>('SELECT n FROM send_order WHERE sender = ? AND epoch = ?', ['ann', epoch]))?.n
}

/** The refusal of a send that came early: the number expected. */
async function early (p: Promise<SendResult>): Promise<number> {
  try {
    await p
  } catch (err) {
    assert.ok(err instanceof OutOfOrderError, String(err))
    assert.equal(err.code, 'out_of_order')
    return err.next
  }
  throw new Error('stored, not refused as out of order')
}

test('numbered sends: stored in the order of n; one that comes early is refused with the number expected and nothing is stored', async () => {
  const o = await open()
  try {
    await send(o.writer, 'a1', 1) // a new conversation: statement by statement
    await send(o.writer, 'a2', 2) // a cached one: in one step
    assert.equal(await early(send(o.writer, 'a4', 4)), 3)
    assert.equal(await early(send(o.writer, 'a5', 5)), 3)
    assert.deepEqual(await archived(o.db), ['a1', 'a2'])
    assert.equal(await lastN(o.db), 2)
    // Sent again from 3, in order: stored in that order.
    for (const [cid, n] of [['a3', 3], ['a4', 4], ['a5', 5]] as const) await send(o.writer, cid, n)
    assert.deepEqual(await archived(o.db), ['a1', 'a2', 'a3', 'a4', 'a5'])
    // In one batch (one tick): 6 stored, 8 refused (7 not taken yet when it came), 7 stored, then 8 again.
    const [six, eight, seven] = await Promise.allSettled([send(o.writer, 'a6', 6), send(o.writer, 'a8', 8), send(o.writer, 'a7', 7)])
    assert.equal(six.status, 'fulfilled')
    assert.equal(seven.status, 'fulfilled')
    assert.ok(eight.status === 'rejected' && eight.reason instanceof OutOfOrderError && eight.reason.next === 7, String(eight.status === 'rejected' && eight.reason))
    await send(o.writer, 'a8', 8)
    assert.deepEqual(await archived(o.db), ['a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7', 'a8'])
    assert.equal(await lastN(o.db), 8)
    // Another epoch of the same sender is numbered apart, from 1.
    assert.equal(await early(send(o.writer, 'b2', 2, 'e2')), 1)
    await send(o.writer, 'b1', 1, 'e2')
    assert.equal(await lastN(o.db, 'e2'), 1)
    // A send without numbering is stored as it comes.
    await send(o.writer, 'plain', null)
    assert.deepEqual((await archived(o.db)).slice(-2), ['b1', 'plain'])
  } finally {
    await o.close()
  }
})

test('numbered sends: a repeat gets its first ack; a stored cid sent with a higher n moves the epoch on; a refusal for good takes its number', async () => {
  const o = await open()
  try {
    const first = await send(o.writer, 'a1', 1)
    await send(o.writer, 'a2', 2)
    // A repeat at or below the last number: the first ack, stored once.
    const again = await send(o.writer, 'a1', 1)
    assert.deepEqual([again.duplicate, again.ack], [true, first.ack])
    // Stored already (here without numbering), so what came before it was taken: 3 moves the epoch to 3.
    await send(o.writer, 'x', null)
    const dup = await send(o.writer, 'x', 3)
    assert.equal(dup.duplicate, true)
    assert.equal(await lastN(o.db), 3)
    // Refused for good (no such conversation): its number is taken, the next one is stored.
    await assert.rejects(send(o.writer, 'g1', 4, 'e1', 'g:nosuch'), /no conversation g:nosuch/)
    assert.equal(await lastN(o.db), 4)
    await send(o.writer, 'a5', 5)
    assert.deepEqual(await archived(o.db), ['a1', 'a2', 'x', 'a5'])
    // A repeat of a duplicate from an earlier batch, together with new sends: the one-step
    // commit fails on the unique index and the batch runs again statement by statement.
    const [r5, r6] = await Promise.all([send(o.writer, 'a5', 5), send(o.writer, 'a6', 6)])
    assert.deepEqual([r5.duplicate, r6.duplicate], [true, false])
    assert.equal(await lastN(o.db), 6)
  } finally {
    await o.close()
  }
})

test('numbered sends: where an epoch stands outlives a restart; epochs idle past the cutoff are forgotten and start again from 1', async () => {
  const o = await open()
  try {
    for (let n = 1; n <= 3; n++) await send(o.writer, `a${n}`, n)
    await o.reopen()
    assert.equal(await early(send(o.writer, 'a5', 5)), 4)
    await send(o.writer, 'a4', 4)
    await send(o.writer, 'b1', 1, 'e2')
    await o.db.run("UPDATE send_order SET ts = 1000 WHERE epoch = 'e1'")
    assert.equal(await o.writer.op((tx) => pruneSendOrder(tx, 2000)), 1)
    assert.deepEqual(await o.db.all('SELECT epoch FROM send_order'), [{ epoch: 'e2' }])
    o.writer.order.forget()
    // The SDK answers "from 1" for an epoch it has moved past by starting a new epoch.
    assert.equal(await early(send(o.writer, 'a6', 6)), 1)
  } finally {
    await o.close()
  }
})

test('numbered sends: the epochs kept in memory are bounded; the rest are read again from the table', async () => {
  const o = await open()
  try {
    for (let i = 0; i < 5; i++) await o.db.run('INSERT INTO send_order(sender, epoch, n, ts) VALUES (?, ?, ?, ?)', ['ann', `k${i}`, i + 1, Date.now()])
    const order = new SendOrder(o.db, 3)
    for (let i = 0; i < 5; i++) assert.equal(await order.lastOf(`ann\u0000k${i}`, 'ann', `k${i}`), i + 1)
    assert.equal(order.size, 3)
    assert.equal(await order.lastOf('ann\u0000k0', 'ann', 'k0'), 1, 'read again')
    assert.equal(await order.lastOf('ann\u0000none', 'ann', 'none'), 0, 'an epoch not known starts at 0')
  } finally {
    await o.close()
  }
})

test('numbered sends: a malformed epoch or n is refused by name', () => {
  const base = { t: 'msg', cid: 'c1', to: 'bob', body: 'x' }
  const refused = (extra: Record<string, unknown>, why: RegExp): void => {
    assert.throws(() => parseFrame({ ...base, ...extra }), (err: Error & { code?: string }) => err.code === 'bad_request' && why.test(err.message), JSON.stringify(extra))
  }
  refused({ epoch: 'e'.repeat(33), n: 1 }, /^epoch must be 1-32 characters/)
  refused({ epoch: '', n: 1 }, /^epoch must be/)
  refused({ epoch: 'e/1', n: 1 }, /^epoch must be/)
  refused({ n: 1 }, /^epoch must be/)
  refused({ epoch: 'e1' }, /^n must be a positive integer/)
  for (const n of [0, -1, 1.5, '1', null, 2 ** 53]) refused({ epoch: 'e1', n }, /^n must be a positive integer/)
  assert.deepEqual(parseFrame({ ...base, epoch: 'e'.repeat(32), n: 1 }), { ...base, epoch: 'e'.repeat(32), n: 1 })
  assert.deepEqual(parseFrame(base), base)
})

test('numbered sends over MQTT: an early one is answered with out_of_order and next; bad numbering with bad_request; neither is stored', async (t) => {
  const node = await startNode(['--publish-rate', '0'], { users: [{ name: 'ann', password: PW }, { name: 'ben', password: PW }] })
  t.after(() => node.close())
  const ann = await ChatClient.connect(node.mqttUrl, 'ann', PW)
  t.after(() => ann.close())
  const answer = async (cid: string, extra: Record<string, unknown>): Promise<AckFrame | ErrorFrame> => {
    const seen = ann.frames.length // an answer to this publish, not to an earlier one with the same cid
    await ann.publishRaw(JSON.stringify({ t: 'msg', cid, to: 'ben', body: cid, ...extra }))
    return await ann.until(() => ann.frames.slice(seen).find((x) => (x.frame.t === 'ack' && x.frame.cid === cid) || (x.frame.t === 'error' && x.frame.ref === cid))?.frame as AckFrame | ErrorFrame | undefined, 5000, `answer to ${cid}`)
  }
  assert.equal((await answer('m1', { epoch: 'ep', n: 1 })).t, 'ack')
  const gap = await answer('m3', { epoch: 'ep', n: 3 })
  assert.deepEqual(gap.t === 'error' && [gap.code, gap.next, gap.ref], ['out_of_order', 2, 'm3'])
  assert.match(gap.t === 'error' ? gap.message : '', /send again from 2/)
  const bad = await answer('m4', { epoch: 'ep', n: 0 })
  assert.deepEqual(bad.t === 'error' && [bad.code, bad.message], ['bad_request', 'n must be a positive integer (and comes with epoch)'])
  const long = await answer('m5', { epoch: 'x'.repeat(40), n: 2 })
  assert.deepEqual(long.t === 'error' && long.code, 'bad_request')
  assert.equal((await answer('m2', { epoch: 'ep', n: 2 })).t, 'ack')
  assert.equal((await answer('m3', { epoch: 'ep', n: 3 })).t, 'ack')
  const hist = await ann.req('history', { conv: 'd:ann:ben' })
  assert.deepEqual(hist.messages.map((m) => m.body), ['m1', 'm2', 'm3'])
})
