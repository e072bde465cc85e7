/**
 * The message service contract: the same tests run against each arrangement
 * (the service embedded in the broker, and as its own process over MQTT).
 * What the service answers (receipts, refs, answers on both device topics,
 * storage failures) is in contract-answers.ts.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { deflateRawSync } from 'node:zlib'
import type { AckFrame, ErrorFrame, MessageFrame } from '../../sdk/src/protocol.js'
import { ChatClient } from '../helpers/chat-client.js'
import type { UserSpec } from '../helpers/test-node.js'

export interface Arrangement {
  mqttUrl: string
  /** The data dir whose archive (warbler.db) the service writes. */
  dataDir: string
  /** The lines the message service has logged so far (JSON, one object a line). */
  logLines: () => string[]
  /** The broker's /metrics text, where the arrangement serves the service's metrics (embedded only). */
  metrics?: () => Promise<string>
  close: () => Promise<void>
}

export type Start = (users: UserSpec[]) => Promise<Arrangement>

export const PW = 'password-123'
const users = ['alice', 'bob', 'carol', 'dave'].map((name) => ({ name, password: PW }))

export type Connect = (u: string, opts?: { device?: string, clean?: boolean, feed?: boolean, protocolVersion?: 4 | 5 }) => Promise<ChatClient>

/** Start the arrangement with alice, bob, carol and dave; it and the chat clients made with `c` are closed after the test. */
export async function setupArrangement (start: Start, t: { after: (fn: () => Promise<void>) => void }): Promise<{ a: Arrangement, c: Connect }> {
  const a = await start(users)
  const clients: ChatClient[] = []
  t.after(async () => {
    for (const x of clients) await x.close().catch(() => {})
    await a.close()
  })
  return {
    a,
    c: async (u, opts) => {
      const x = await ChatClient.connect(a.mqttUrl, u, PW, opts)
      clients.push(x)
      return x
    }
  }
}

// eslint-disable-next-line max-lines-per-function -- the contract: every case of the chat API in one list, each a few lines
export function chatContract (name: string, start: Start): void {
  const setup = async (t: { after: (fn: () => Promise<void>) => void }): Promise<{ a: Arrangement, c: Connect }> => await setupArrangement(start, t)

  test(`${name}: a direct chat is stored, sequenced, delivered to both users and acknowledged`, async (t) => {
    const { c } = await setup(t)
    const alice = await c('alice')
    const bob = await c('bob')
    const ack1 = await alice.sendOk({ to: 'bob' }, 'hi bob')
    assert.equal(ack1.conv, 'd:alice:bob')
    assert.equal(ack1.seq, 1)
    const ack2 = await bob.sendOk({ conv: 'd:alice:bob' }, { text: 'hi alice' })
    assert.equal(ack2.seq, 2)
    const got = await bob.until(() => bob.messages.length >= 2 ? bob.messages : undefined)
    assert.deepEqual(got.map((m) => [m.seq, m.from, m.body]), [[1, 'alice', 'hi bob'], [2, 'bob', { text: 'hi alice' }]])
    const a = await alice.until(() => alice.messages.length >= 2 ? alice.messages : undefined)
    assert.equal(a[0]?.id, ack1.id)
    assert.ok((a[0]?.ts ?? 0) > 0)
  })

  test(`${name}: a retried send with the same client message id is stored once and acknowledged the same`, async (t) => {
    const { c } = await setup(t)
    const alice = await c('alice')
    const first = await alice.sendOk({ to: 'bob' }, 'once', 'same-cid')
    await alice.publishRaw(JSON.stringify({ t: 'msg', cid: 'same-cid', to: 'bob', body: 'once' }))
    const second = await alice.until(() => alice.frames.filter((f) => f.frame.t === 'ack').length >= 2 ? alice.frames.filter((f) => f.frame.t === 'ack')[1]?.frame : undefined)
    assert.deepEqual(second, first)
    const hist = await alice.req('history', { conv: 'd:alice:bob' })
    assert.equal(hist.messages.length, 1)
  })

  test(`${name}: group chat with roles; a removed member stops receiving; changes are system messages`, async (t) => {
    const { c } = await setup(t)
    const alice = await c('alice')
    const bob = await c('bob')
    const carol = await c('carol')
    const g = await alice.req('group.create', { name: 'Pi club', members: ['bob', 'carol'] })
    assert.match(g.conv, /^g:[0-9a-f]+$/)
    await alice.sendOk({ conv: g.conv }, 'welcome')
    await carol.until(() => carol.messages.some((m) => m.body === 'welcome'))
    await assert.rejects(bob.req('group.rename', { conv: g.conv, name: 'x' }), /forbidden/)
    await alice.req('group.role', { conv: g.conv, user: 'bob', role: 'admin' })
    await bob.req('group.rename', { conv: g.conv, name: 'Pi lovers' })
    await bob.req('group.remove', { conv: g.conv, users: ['carol'] })
    const before = carol.messages.length
    await alice.sendOk({ conv: g.conv }, 'after carol left')
    await bob.until(() => bob.messages.some((m) => m.body === 'after carol left'))
    const refused = await carol.send({ conv: g.conv }, 'let me in')
    assert.equal((refused as ErrorFrame).code, 'not_member')
    await assert.rejects(carol.req('history', { conv: g.conv }), /not_member/)
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.ok(!carol.messages.slice(before).some((m) => m.body === 'after carol left'), 'a removed member receives nothing new')
    const members = await alice.req('group.members', { conv: g.conv })
    assert.deepEqual(members.members, [{ user: 'alice', role: 'owner' }, { user: 'bob', role: 'admin' }])
    const hist = await alice.req('history', { conv: g.conv })
    const sys = hist.messages.map((m) => (m.body as { sys?: string }).sys ?? m.body)
    assert.deepEqual(sys, ['created', 'welcome', 'role', 'renamed', 'removed', 'after carol left'])
    assert.deepEqual(hist.messages.map((m) => m.seq), [1, 2, 3, 4, 5, 6])
    await bob.req('group.leave', { conv: g.conv })
    assert.deepEqual((await alice.req('group.members', { conv: g.conv })).members, [{ user: 'alice', role: 'owner' }])
  })

  test(`${name}: an offline member gets everything it missed, in order, from its session and by sync`, async (t) => {
    const { c } = await setup(t)
    const alice = await c('alice')
    let bob = await c('bob', { device: 'phone', clean: false })
    await alice.sendOk({ to: 'bob' }, 'm1')
    await bob.until(() => bob.messages.length === 1)
    await bob.close()
    for (let i = 2; i <= 30; i++) await alice.sendOk({ to: 'bob' }, `m${i}`)
    bob = await c('bob', { device: 'phone', clean: false })
    const got = await bob.until(() => bob.messages.length >= 29 ? bob.messages : undefined)
    assert.deepEqual(got.map((m) => m.seq), Array.from({ length: 29 }, (_, i) => i + 2))
    // A new device with no session catches up by sync.
    const tablet = await c('bob', { device: 'tablet' })
    const s = await tablet.req('sync', { after: { 'd:alice:bob': 10 } })
    assert.deepEqual(s.messages.map((m) => m.seq), Array.from({ length: 20 }, (_, i) => i + 11))
    assert.deepEqual(s.conversations.map((x: { conv: string, lastSeq: number }) => [x.conv, x.lastSeq]), [['d:alice:bob', 30]])
  })

  test(`${name}: history pages, unread counts, read receipts and the conversation list`, async (t) => {
    const { c } = await setup(t)
    const alice = await c('alice')
    const bob = await c('bob')
    for (let i = 1; i <= 12; i++) await alice.sendOk({ to: 'bob' }, `n${i}`)
    await alice.sendOk({ to: 'carol' }, 'hello carol')
    const page = await bob.req('history', { conv: 'd:alice:bob', limit: 5 })
    assert.deepEqual(page.messages.map((m: MessageFrame) => m.seq), [8, 9, 10, 11, 12])
    assert.equal(page.more, true)
    const older = await bob.req('history', { conv: 'd:alice:bob', before: 8, limit: 5 })
    assert.deepEqual(older.messages.map((m: MessageFrame) => m.seq), [3, 4, 5, 6, 7])
    assert.deepEqual(await bob.req('unread'), { total: 12, conversations: { 'd:alice:bob': 12 } })
    await bob.req('read', { conv: 'd:alice:bob', seq: 10 })
    assert.deepEqual(await bob.req('unread'), { total: 2, conversations: { 'd:alice:bob': 2 } })
    const receipt = await alice.until(() => alice.frames.find((f) => f.frame.t === 'receipt' && f.frame.user === 'bob')?.frame)
    // Reading implies delivery: both of bob's watermarks moved, and the receipt says so.
    assert.deepEqual(receipt, { t: 'receipt', conv: 'd:alice:bob', user: 'bob', read: 10, delivered: 10 })
    const r = await alice.req('receipts', { conv: 'd:alice:bob' })
    assert.deepEqual(r.members.find((m: { user: string }) => m.user === 'bob'), { user: 'bob', read: 10, delivered: 10 })
    const list = await alice.req('convs')
    assert.deepEqual(list.conversations.map((x: { conv: string }) => x.conv), ['d:alice:carol', 'd:alice:bob'])
    assert.equal(list.conversations[0]?.last?.body, 'hello carol')
    assert.equal(list.conversations[0]?.unread, 0, 'what one sends, one has read')
    await assert.rejects(bob.req('read', { conv: 'd:alice:bob', seq: 99 }), /bad_request/)
  })

  test(`${name}: search finds a message by a word in it, only in the user's conversations`, async (t) => {
    const { c } = await setup(t)
    const alice = await c('alice')
    const carol = await c('carol')
    await alice.sendOk({ to: 'bob' }, 'the raspberry pi is warm')
    await alice.sendOk({ to: 'bob' }, { text: 'bring a Raspberry too' })
    await carol.sendOk({ to: 'dave' }, 'raspberry secrets')
    const found = await alice.req('search', { q: 'raspberry' })
    assert.deepEqual(found.messages.map((m: MessageFrame) => m.body).sort(), [{ text: 'bring a Raspberry too' }, 'the raspberry pi is warm'].sort())
    assert.equal((await alice.req('search', { q: 'secrets' })).messages.length, 0)
    assert.equal((await alice.req('search', { q: '"quotes" AND OR *' })).messages.length, 0, 'FTS syntax in queries is inert')
  })

  test(`${name}: bad input gets a clear error with a stable code, naming the send or request it answers (ref), and stores nothing`, async (t) => {
    const { c } = await setup(t)
    const alice = await c('alice')
    const errs = (): Array<{ topic: string, frame: ErrorFrame }> => alice.frames.filter((f) => f.frame.t === 'error').map((f) => ({ topic: f.topic, frame: f.frame as ErrorFrame }))
    const deflated = (json: string): Buffer => Buffer.concat([Buffer.from([0x01]), deflateRawSync(json)])
    const deep = (levels: number): string => '['.repeat(levels) + ']'.repeat(levels)
    // [payload, code, ref]: a ref whenever the frame is an object with a well-formed cid (a send) or id (a request), however bad the rest.
    const cases: Array<[string | Buffer, string, string | undefined]> = [
      ['not json', 'bad_request', undefined],
      ['{"t":"msg",', 'bad_request', undefined],
      ['[1,2]', 'bad_request', undefined],
      ['{"t":"shout"}', 'unknown_type', undefined],
      ['{"t":"shout","id":"s1","cid":"s2"}', 'unknown_type', undefined],
      ['{"cid":"s3","to":"bob","body":"x"}', 'unknown_type', undefined],
      ['{"t":"msg","cid":"x1","body":"no target"}', 'bad_request', 'x1'],
      ['{"t":"msg","cid":"bad cid!","to":"bob","body":"x"}', 'bad_request', undefined],
      ['{"t":"msg","cid":"x2","to":"nobody","body":"x"}', 'not_found', 'x2'],
      ['{"t":"msg","cid":"x3","conv":"d:bob:carol","body":"x"}', 'not_member', 'x3'],
      ['{"t":"msg","cid":"x4","to":"bob","body":{"sys":"created"}}', 'bad_request', 'x4'],
      ['{"t":"msg","cid":"x5","to":"bob"}', 'bad_request', 'x5'],
      ['{"t":"msg","cid":"x6","to":"bob","body":null}', 'bad_request', 'x6'],
      [`{"t":"msg","cid":"x7","to":"bob","body":${deep(65)}}`, 'bad_request', 'x7'],
      ['{"t":"msg","cid":"x8","to":"bob","conv":"d:alice:bob","body":"x"}', 'bad_request', 'x8'],
      ['{"t":"msg","cid":"x9","to":"alice","body":"x"}', 'bad_request', 'x9'],
      ['{"t":"msg","cid":"x10","conv":"nonsense","body":"x"}', 'bad_request', 'x10'],
      ['{"t":"msg","cid":"x11","to":7,"body":"x"}', 'bad_request', 'x11'],
      ['{"t":"msg","cid":"x12","conv":"g:nope","body":"x"}', 'not_found', 'x12'],
      ['{"t":"req","id":"q1","op":"explode"}', 'unknown_type', 'q1'],
      ['{"t":"req","id":"q1b"}', 'unknown_type', 'q1b'],
      ['{"t":"req","id":"bad id!","op":"unread"}', 'bad_request', undefined],
      ['{"t":"req","id":7,"op":"unread"}', 'bad_request', undefined],
      ['{"t":"req","id":"q2","op":"history","conv":"g:nope"}', 'not_member', 'q2'],
      ['{"t":"req","id":"q3","op":"history","conv":"d:alice:bob","limit":100000}', 'bad_request', 'q3'],
      ['{"t":"req","id":"q4","op":"read","conv":"d:alice:bob"}', 'bad_request', 'q4'],
      ['{"t":"req","id":"q5","op":"read","conv":"d:alice:bob","seq":1}', 'not_member', 'q5'],
      ['{"t":"req","id":"q6","op":"sync","after":[1]}', 'bad_request', 'q6'],
      ['{"t":"req","id":"q7","op":"group.create"}', 'bad_request', 'q7'],
      ['{"t":"req","id":"q8","op":"group.rename","conv":"g:nope","name":"x"}', 'not_found', 'q8'],
      ['{"t":"req","id":"q9","op":"group.role","conv":"g:nope","user":"bob","role":"boss"}', 'bad_request', 'q9'],
      ['{"t":"req","id":"q10","op":"presence","users":"bob"}', 'bad_request', 'q10'],
      ['{"t":"typing","conv":"bad"}', 'bad_request', undefined],
      ['{"t":"typing","conv":"d:bob:carol"}', 'not_member', undefined],
      [deflated('{"t":"req","id":"q11","op":"explode"}'), 'unknown_type', 'q11'],
      [deflated('{"t":"msg","cid":"x13","to":"bob"}'), 'bad_request', 'x13'],
      [Buffer.from([0x01, 0xff, 0x00]), 'bad_request', undefined],
      [Buffer.from([0x02, 0x7b, 0x7d]), 'bad_request', undefined]
    ]
    for (const [payload, code, ref] of cases) {
      const n = errs().length
      await alice.publishRaw(payload)
      const e = await alice.until(() => errs().length > n ? errs()[n] : undefined, 5000, `error for ${String(payload)}`)
      assert.equal(e.frame.code, code, `${String(payload)} -> ${e.frame.message}`)
      assert.ok(e.frame.message.length > 0)
      assert.equal(e.frame.ref, ref, `${String(payload)}: ref`)
      if (ref === undefined) assert.ok(!('ref' in e.frame), `${String(payload)}: no ref field`)
      assert.equal(e.topic, `wb/d/${alice.clientId}`, 'on the device topic of the publishing connection')
    }
    // Nothing was stored, and the service still works.
    await alice.sendOk({ to: 'bob' }, 'still fine')
    assert.equal((await alice.req('history', { conv: 'd:alice:bob' })).messages.length, 1)
  })

  test(`${name}: typing notices reach the other members only and are never stored; presence reaches direct peers`, async (t) => {
    const { c } = await setup(t)
    const alice = await c('alice')
    const bob = await c('bob')
    await alice.sendOk({ to: 'bob' }, 'hey')
    await alice.publishRaw(JSON.stringify({ t: 'typing', conv: 'd:alice:bob' }))
    const ty = await bob.until(() => bob.frames.find((f) => f.frame.t === 'typing')?.frame)
    assert.deepEqual(ty, { t: 'typing', conv: 'd:alice:bob', user: 'alice' })
    assert.equal((await bob.req('history', { conv: 'd:alice:bob' })).messages.length, 1)
    const p = await alice.req('presence', { users: ['bob', 'dave'] })
    assert.equal(p.users[0]?.online, true)
    assert.equal(p.users[1]?.online, false)
    await bob.close()
    const off = await alice.until(() => alice.frames.find((f) => f.frame.t === 'presence' && f.frame.user === 'bob' && !f.frame.online)?.frame)
    assert.ok(off !== undefined)
  })
  test(`${name}: feed readers get what inbox readers get, once each, in order; a burst comes in batch frames`, async (t) => {
    const { c } = await setup(t)
    const bobPlain = await c('bob', { device: 'plain' })
    const bobApp = await c('bob', { device: 'app', feed: true })
    const alice = await c('alice', { device: 'app', feed: true })
    const n = 80
    // Published at once, so that commits take several: their deliveries and acks travel together on the feeds.
    await Promise.all(Array.from({ length: n }, (_, i) => alice.publishRaw(JSON.stringify({ t: 'msg', cid: `burst-${i}`, to: 'bob', body: `m${i}` }))))
    const acks = (): AckFrame[] => alice.frames.filter((f) => f.frame.t === 'ack').map((f) => f.frame as AckFrame)
    await alice.until(() => acks().length >= n, 10_000, 'every ack')
    const seqs = Array.from({ length: n }, (_, i) => i + 1)
    for (const x of [bobPlain, bobApp, alice]) {
      await x.until(() => x.messages.length >= n, 10_000, `${x.clientId}: every message`)
    }
    // A moment for strays: a second copy would arrive within it.
    await new Promise((resolve) => setTimeout(resolve, 300))
    for (const x of [bobPlain, bobApp, alice]) {
      assert.deepEqual(x.messages.map((m) => m.seq), seqs, `${x.clientId}: each message once, in order`)
      assert.deepEqual(x.messages.map((m) => m.body), seqs.map((s) => `m${s - 1}`))
    }
    assert.deepEqual(acks().map((a) => a.cid).sort(), Array.from({ length: n }, (_, i) => `burst-${i}`).sort(), 'each send acknowledged once')
    // Each commit moved alice's watermarks: her receipts reached bob on both topics, the last one up to n.
    for (const x of [bobPlain, bobApp]) {
      const last = await x.until(() => x.frames.findLast((f) => f.frame.t === 'receipt' && f.frame.read === n)?.frame, 5000, `${x.clientId}: alice's receipt up to ${n}`)
      assert.deepEqual(last, { t: 'receipt', conv: 'd:alice:bob', user: 'alice', read: n, delivered: n })
    }
    // The inbox reader got one publish per message (and per receipt), the feed readers fewer: batches.
    const receiptsOnInbox = bobPlain.frames.filter((f) => f.frame.t === 'receipt').length
    assert.equal(bobPlain.publishes.get('wb/u/bob/inbox'), n + receiptsOnInbox)
    assert.deepEqual([...bobPlain.publishes.keys()], ['wb/u/bob/inbox'])
    assert.ok((bobApp.publishes.get('wb/u/bob/feed') ?? n) < n, `feed publishes ${String(bobApp.publishes.get('wb/u/bob/feed'))} for ${n} messages`)
    assert.deepEqual([...bobApp.publishes.keys()], ['wb/u/bob/feed'])
    assert.ok((alice.publishes.get('wb/d/alice-app/feed') ?? n) < n, 'acks batched on the device feed')
    assert.equal(alice.publishes.get('wb/d/alice-app'), undefined)
  })

  test(`${name}: a persistent feed reader gets what it missed offline, from its queue, in order`, async (t) => {
    const { c } = await setup(t)
    const first = await c('bob', { device: 'tablet', clean: false, feed: true })
    await first.close()
    const alice = await c('alice')
    for (let i = 0; i < 5; i++) await alice.sendOk({ to: 'bob' }, `while away ${i}`)
    await Promise.all(Array.from({ length: 30 }, (_, i) => alice.publishRaw(JSON.stringify({ t: 'msg', cid: `away-${i}`, to: 'bob', body: `burst ${i}` }))))
    await alice.until(() => alice.frames.filter((f) => f.frame.t === 'ack').length >= 35, 10_000, 'every ack')
    const back = await c('bob', { device: 'tablet', clean: false, feed: true })
    await back.until(() => back.messages.length >= 35, 10_000, 'the queued messages')
    assert.deepEqual(back.messages.map((m) => m.seq), Array.from({ length: 35 }, (_, i) => i + 1))
  })
}
