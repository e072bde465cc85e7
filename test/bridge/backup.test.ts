/**
 * Backup, restore and retention, on real SQLite files in temp dirs:
 * - `warbler backup FILE` from the real CLI while a spawned node runs and
 *   chat flows: the snapshot holds every message acknowledged before it
 *   began, is consistent (no gap in any sequence), passes SQLite's integrity
 *   check, is owner-only, and an existing FILE is never overwritten;
 * - `warbler restore FILE` refuses while the node (or a bridge) runs,
 *   refuses damaged and foreign files without touching anything, and, with
 *   the node stopped, puts the backup in place: a new node serves the
 *   restored history and goes on from its sequence numbers;
 * - retention by count and by age: the right messages go, sequence numbers
 *   are never reused, history, sync and search still work, and the freed
 *   pages go back to the file system.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { lockDataDir } from '../../shared/data-dir.js'
import type { AckFrame, MessageFrame } from '../../sdk/src/protocol.js'
import { Database } from '../../shared/sqlite.js'
import { Retention } from '../../bridge/archive/retention.js'
import { ChatClient } from '../helpers/chat-client.js'
import { addUser, CLI, spawnNode, startNode, tempDir } from '../helpers/test-node.js'

const PW = 'password-123'
const users = ['alice', 'bob', 'carol'].map((name) => ({ name, password: PW }))

/** Run the real CLI without blocking this process (chat keeps flowing meanwhile). */
function cli (args: string[]): Promise<{ code: number | null, stdout: string, stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.once('exit', (code) => resolve({ code, stdout, stderr }))
  })
}

async function query<T extends Record<string, unknown>> (file: string, sql: string, params: unknown[] = []): Promise<T[]> {
  const db = await Database.open(file, { readonly: true })
  try { return await db.all<T>(sql, params) } finally { await db.close() }
}

/** What a directory holds: names and content hashes (to show that nothing changed). */
function snapshot (dir: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const name of readdirSync(dir).sort()) out[name] = createHash('sha256').update(readFileSync(path.join(dir, name))).digest('hex')
  return out
}

function cleanups (t: { after: (fn: () => Promise<void>) => void }): (fn: () => unknown) => void {
  const stack: Array<() => unknown> = []
  t.after(async () => { for (const fn of stack.reverse()) await fn() })
  return (fn) => { stack.push(fn) }
}

// eslint-disable-next-line max-lines-per-function -- one scenario, its steps read in order top to bottom
test('backup while chat flows holds everything acknowledged before it; restore refuses a running node, then brings the history back', async (t) => {
  const defer = cleanups(t)
  const dir = tempDir()
  const work = tempDir('warbler-backups-')
  defer(() => { rmSync(dir, { recursive: true, force: true }); rmSync(work, { recursive: true, force: true }) })
  for (const u of users) await addUser(dir, u)
  let node = await spawnNode(['--publish-rate', '0'], { dataDir: dir })
  defer(() => node.stop())
  const url = `mqtt://127.0.0.1:${node.ports.mqtt ?? 0}`
  const alice = await ChatClient.connect(url, 'alice', PW)
  const carol = await ChatClient.connect(url, 'carol', PW)
  defer(() => alice.close().catch(() => {}))
  defer(() => carol.close().catch(() => {}))

  // Two conversations with sends in flight all the time.
  const acked: AckFrame[] = []
  let stop = false
  const flow = (c: ChatClient, to: string): Promise<void> => (async () => {
    for (let i = 1; !stop; i++) acked.push(await c.sendOk({ to }, `${c.user} ${i} ${'x'.repeat(200)}`))
  })()
  const flows = [flow(alice, 'bob'), flow(carol, 'bob')]
  while (acked.length < 100) await new Promise((resolve) => setTimeout(resolve, 10))
  const before = acked.slice()
  const file = path.join(work, 'warbler-backup.db')
  const r = await cli(['backup', file, '--data-dir', dir])
  const during = acked.length - before.length
  while (acked.length < before.length + during + 20) await new Promise((resolve) => setTimeout(resolve, 10))
  stop = true
  await Promise.all(flows)
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stdout, /^backup written to .*warbler-backup\.db \(3 users, \d+ messages\)\n$/)
  assert.equal(statSync(file).mode & 0o777, 0o600, 'the backup holds password hashes: owner-only')

  const ids = new Set((await query<{ id: string }>(file, 'SELECT id FROM messages')).map((x) => x.id))
  const missing = before.filter((a) => !ids.has(a.id))
  assert.deepEqual(missing, [], 'every message acknowledged before the backup began is in it')
  assert.ok(ids.size < acked.length, 'chat went on after the snapshot')
  // A consistent snapshot: in each conversation, seqs 1..last_seq with no gap.
  const convs = await query<{ id: string, last_seq: number, n: number, max: number }>(file,
    'SELECT c.id, c.last_seq, count(m.seq) AS n, max(m.seq) AS max FROM conversations c JOIN messages m ON m.conv = c.id GROUP BY c.id ORDER BY c.id')
  assert.deepEqual(convs.map((c) => c.id), ['d:alice:bob', 'd:bob:carol'])
  for (const c of convs) assert.ok(c.n === c.last_seq && c.max === c.last_seq, `${c.id}: ${c.n} messages, last_seq ${c.last_seq}`)
  assert.deepEqual(await query(file, 'PRAGMA integrity_check'), [{ integrity_check: 'ok' }])
  assert.equal((await query<{ n: number }>(file, 'SELECT count(*) AS n FROM users'))[0]?.n, 3)

  // Never over an existing file.
  const sum = snapshot(work)
  const again = await cli(['backup', file, '--data-dir', dir])
  assert.equal(again.code, 2)
  assert.match(again.stderr, /warbler-backup\.db already exists; choose a new file name/)
  assert.deepEqual(snapshot(work), sum)

  // Restore refuses while the node runs (its lock), and while a message service does, and changes nothing.
  const files = snapshot(dir)
  const busy = await cli(['restore', file, '--data-dir', dir])
  assert.equal(busy.code, 3)
  assert.match(busy.stderr, new RegExp(`the data dir .* is in use by warbler start, pid ${node.pid}; stop it first`))
  assert.deepEqual(Object.keys(snapshot(dir)).sort(), Object.keys(files).sort())
  await alice.close()
  await carol.close()
  assert.equal(await node.stop(), 0)
  // A `warbler bridge` holds only the service lock: the same lock, held here.
  const service = await lockDataDir(dir, 'service')
  const bridgeBusy = await cli(['restore', file, '--data-dir', dir])
  await service.release()
  assert.equal(bridgeBusy.code, 3)
  assert.match(bridgeBusy.stderr, new RegExp(`in use by the message service \\(warbler start or warbler bridge\\), pid ${process.pid}`))
  assert.deepEqual(Object.keys(snapshot(dir)).filter((n) => n.startsWith('warbler.db.before')), [])

  // Stopped: restore puts the backup in place and keeps the current database aside.
  const ok = await cli(['restore', file, '--data-dir', dir])
  assert.equal(ok.code, 0, ok.stderr)
  assert.match(ok.stdout, new RegExp(`^restored .* \\(3 users, ${ids.size} messages\\) into .*; the previous database is kept as .*warbler\\.db\\.before-restore-`))
  const kept = readdirSync(dir).filter((n) => n.startsWith('warbler.db.before-restore-'))
  assert.equal(kept.length, 1)
  assert.equal((await query<{ n: number }>(path.join(dir, kept[0] as string), 'SELECT count(*) AS n FROM messages'))[0]?.n, acked.length, 'the previous database is whole')
  assert.equal(statSync(path.join(dir, 'warbler.db')).mode & 0o777, 0o600)

  // A new node serves the restored history and continues its sequences.
  node = await spawnNode(['--publish-rate', '0'], { dataDir: dir })
  const url2 = `mqtt://127.0.0.1:${node.ports.mqtt ?? 0}`
  const bob = await ChatClient.connect(url2, 'bob', PW)
  defer(() => bob.close().catch(() => {}))
  const last = convs.find((c) => c.id === 'd:alice:bob')?.last_seq ?? 0
  const s = await bob.req('sync', { after: {} })
  const lastSeqs = Object.fromEntries((s.conversations as Array<{ conv: string, lastSeq: number }>).map((x) => [x.conv, x.lastSeq]))
  assert.deepEqual(lastSeqs, Object.fromEntries(convs.map((c) => [c.id, c.last_seq])))
  const page = await bob.req('history', { conv: 'd:alice:bob', limit: 5 })
  assert.deepEqual(page.messages.map((m: MessageFrame) => m.seq), [last - 4, last - 3, last - 2, last - 1, last])
  assert.ok(page.messages.every((m: MessageFrame) => ids.has(m.id)))
  const ack = await bob.sendOk({ to: 'alice' }, 'after the restore')
  assert.equal(ack.seq, last + 1)
  await bob.close()
  assert.equal(await node.stop(), 0)
})

test('restore refuses a damaged, foreign or missing file with a clear message and changes nothing', async (t) => {
  const defer = cleanups(t)
  const dir = tempDir()
  const work = tempDir('warbler-backups-')
  defer(() => { rmSync(dir, { recursive: true, force: true }); rmSync(work, { recursive: true, force: true }) })
  const node = await startNode(['--publish-rate', '0'], { dataDir: dir, users })
  const alice = await ChatClient.connect(node.mqttUrl, 'alice', PW)
  for (let i = 0; i < 30; i++) await alice.sendOk({ to: 'bob' }, `message ${i} ${'y'.repeat(300)}`)
  await alice.close()
  const good = path.join(work, 'good.db')
  const r = await cli(['backup', good, '--data-dir', dir])
  assert.equal(r.code, 0, r.stderr)
  await node.close()

  const files: Record<string, Buffer> = {}
  files['text.db'] = Buffer.from('these are not the droids you are looking for\n'.repeat(100))
  files['empty.db'] = Buffer.alloc(0)
  const damaged = readFileSync(good)
  for (let p = 2; p * 4096 <= damaged.length; p++) damaged.fill(0xa5, (p - 1) * 4096 + 8, p * 4096) // every page after the first
  files['damaged.db'] = damaged
  files['truncated.db'] = readFileSync(good).subarray(0, 3 * 4096)
  for (const [name, data] of Object.entries(files)) writeFileSync(path.join(work, name), data)
  const foreign = path.join(work, 'foreign.db')
  const fdb = await Database.open(foreign)
  await fdb.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT); INSERT INTO notes(text) VALUES (\'hi\')')
  await fdb.close()

  const before = snapshot(dir)
  const expected: Array<[string, RegExp]> = [
    ['text.db', /text\.db is not a SQLite database \(so not a Warbler backup\)/],
    ['empty.db', /empty\.db is a SQLite database but not a Warbler one \(no users, device_tokens, meta table\)/],
    ['damaged.db', /damaged\.db is damaged: (it fails SQLite's integrity check|SQLite cannot read it)/],
    ['truncated.db', /truncated\.db is damaged: (it fails SQLite's integrity check|SQLite cannot read it)/],
    ['foreign.db', /foreign\.db is a SQLite database but not a Warbler one/],
    ['no-such.db', /no file .*no-such\.db/]
  ]
  for (const [name, msg] of expected) {
    const x = await cli(['restore', path.join(work, name), '--data-dir', dir])
    assert.equal(x.code, 2, `${name}: ${x.stderr}`)
    assert.match(x.stderr, msg, name)
    assert.doesNotMatch(x.stderr, /\n\s+at /, `${name}: a message, not a stack trace`)
    assert.deepEqual(snapshot(dir), before, `${name}: the data dir is unchanged`)
  }
  assert.ok(!existsSync(path.join(dir, 'warbler.db.restoring')))
})

test('retention keeps the newest N per conversation: seqs not reused, history, sync and search still work, pages given back', async (t) => {
  const defer = cleanups(t)
  const node = await startNode(['--publish-rate', '0'], { users })
  defer(() => node.close())
  const alice = await ChatClient.connect(node.mqttUrl, 'alice', PW)
  const bob = await ChatClient.connect(node.mqttUrl, 'bob', PW)
  defer(() => alice.close())
  defer(() => bob.close())
  const big = 'z'.repeat(3000)
  for (let i = 1; i <= 60; i++) await alice.sendOk({ to: 'bob' }, { text: `word${i} ${big}` })
  for (let i = 1; i <= 3; i++) await alice.sendOk({ to: 'carol' }, `short ${i}`)
  const svc = node.service
  assert.ok(svc !== null)
  const file = path.join(node.dataDir, 'warbler.db')
  const pagesBefore = (await query<{ page_count: number }>(file, 'PRAGMA page_count'))[0]?.page_count ?? 0

  assert.equal((await bob.req('unread')).conversations['d:alice:bob'], 60)
  const retention = new Retention(svc.writer, { days: 0, messages: 10 })
  assert.equal(await retention.run(), 50)
  assert.equal(await retention.run(), 0, 'a second pass finds nothing more')
  // Unread counts only what is still there: the 10 kept, then what bob has not read of them.
  assert.deepEqual(await bob.req('unread'), { total: 10, conversations: { 'd:alice:bob': 10 } })
  assert.equal((await bob.req('convs')).conversations.find((c: { conv: string }) => c.conv === 'd:alice:bob')?.unread, 10)
  await bob.req('read', { conv: 'd:alice:bob', seq: 55 })
  assert.deepEqual(await bob.req('unread'), { total: 5, conversations: { 'd:alice:bob': 5 } })

  const page = await bob.req('history', { conv: 'd:alice:bob', limit: 200 })
  assert.deepEqual(page.messages.map((m: MessageFrame) => m.seq), Array.from({ length: 10 }, (_, i) => 51 + i))
  assert.equal(page.more, false)
  assert.deepEqual((await alice.req('history', { conv: 'd:alice:carol' })).messages.map((m: MessageFrame) => m.seq), [1, 2, 3], 'a short conversation keeps all')
  const s = await bob.req('sync', { after: { 'd:alice:bob': 5 } })
  assert.deepEqual(s.messages.map((m: MessageFrame) => m.seq), Array.from({ length: 10 }, (_, i) => 51 + i))
  assert.equal((await bob.req('search', { q: 'word3' })).messages.length, 0, 'deleted messages leave the search index')
  assert.deepEqual((await bob.req('search', { q: 'word55' })).messages.map((m: MessageFrame) => m.seq), [55])
  // Sequence numbers go on from where they were.
  assert.equal((await alice.sendOk({ to: 'bob' }, 'next')).seq, 61)
  assert.equal((await bob.sendOk({ conv: 'd:alice:bob' }, 'and next')).seq, 62)
  assert.deepEqual(await query(file, 'PRAGMA integrity_check'), [{ integrity_check: 'ok' }])
  const pagesAfter = (await query<{ page_count: number }>(file, 'PRAGMA page_count'))[0]?.page_count ?? 0
  assert.ok(pagesAfter < pagesBefore - 20, `free pages go back to the file system (${pagesBefore} -> ${pagesAfter} pages)`)
})

test('retention by age at start (--retention-days) and by count (--retention-messages) from the flags', async (t) => {
  const defer = cleanups(t)
  const dir = tempDir()
  defer(() => rmSync(dir, { recursive: true, force: true }))
  // Make history, then age the first 8 messages of d:alice:bob by 40 days, directly in SQLite.
  let node = await startNode(['--publish-rate', '0'], { dataDir: dir, users })
  let alice = await ChatClient.connect(node.mqttUrl, 'alice', PW)
  for (let i = 1; i <= 12; i++) await alice.sendOk({ to: 'bob' }, `m${i}`)
  for (let i = 1; i <= 4; i++) await alice.sendOk({ to: 'carol' }, `c${i}`)
  await alice.close()
  await node.close()
  const file = path.join(dir, 'warbler.db')
  const db = await Database.open(file)
  const old = Date.now() - 40 * 86400_000
  await db.run("UPDATE messages SET ts = ? + seq WHERE conv = 'd:alice:bob' AND seq <= 8", [old])
  await db.close()

  // The pass at start deletes what is older than 30 days.
  node = await startNode(['--publish-rate', '0', '--retention-days', '30'], { dataDir: dir })
  alice = await ChatClient.connect(node.mqttUrl, 'alice', PW)
  let seqs: number[] = []
  for (const deadline = Date.now() + 5000; Date.now() < deadline;) {
    seqs = (await alice.req('history', { conv: 'd:alice:bob' })).messages.map((m: MessageFrame) => m.seq)
    if (seqs.length === 4) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  assert.deepEqual(seqs, [9, 10, 11, 12])
  assert.deepEqual((await alice.req('history', { conv: 'd:alice:carol' })).messages.map((m: MessageFrame) => m.seq), [1, 2, 3, 4])
  const list = await alice.req('convs')
  assert.equal(list.conversations.find((c) => c.conv === 'd:alice:bob')?.last?.seq, 12)
  assert.equal((await alice.sendOk({ to: 'bob' }, 'm13')).seq, 13)
  await alice.close()
  await node.close()

  // --retention-messages 3: the pass at start keeps the newest 3 of each.
  node = await startNode(['--publish-rate', '0', '--retention-messages', '3'], { dataDir: dir })
  defer(() => node.close())
  alice = await ChatClient.connect(node.mqttUrl, 'alice', PW)
  defer(() => alice.close())
  for (const deadline = Date.now() + 5000; Date.now() < deadline;) {
    seqs = (await alice.req('history', { conv: 'd:alice:bob' })).messages.map((m: MessageFrame) => m.seq)
    if (seqs.length === 3) break
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  assert.deepEqual(seqs, [11, 12, 13])
  assert.deepEqual((await alice.req('history', { conv: 'd:alice:carol' })).messages.map((m: MessageFrame) => m.seq), [2, 3, 4])
  assert.equal((await alice.sendOk({ to: 'carol' }, 'c5')).seq, 5)
})
