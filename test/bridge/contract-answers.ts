/**
 * The message service contract, continued: what it answers and to whom.
 * Receipts follow every move of a watermark, explicit or implied by a send;
 * a device's answers reach each of its two topics that has a reader; a
 * storage failure is answered, logged with its cause and counted. Run
 * against each arrangement, like contract.ts (whose bad-input test checks
 * the `ref` of every refusal).
 */
import assert from 'node:assert/strict'
import path from 'node:path'
import { test } from 'node:test'
import type { MqttClient } from 'mqtt'
import { Database } from '../../shared/sqlite.js'
import { DB_FILE } from '../../shared/data-dir.js'
import type { ErrorFrame, ReceiptFrame, SingleFrame } from '../../sdk/src/protocol.js'
import type { ChatClient } from '../helpers/chat-client.js'
import { connect } from '../helpers/test-node.js'
import { PW, setupArrangement, type Start } from './contract.js'

/** The receipts `x` got about `user`'s watermarks, in arrival order. */
function receiptsOf (x: ChatClient, user: string): ReceiptFrame[] {
  return x.frames.filter((f) => f.frame.t === 'receipt' && f.frame.user === user).map((f) => f.frame as ReceiptFrame)
}

/** Poll `pred` until it holds (for what arrives outside MQTT: log lines, metrics), or fail after timeoutMs. */
async function waitFor<T> (pred: () => T | undefined | Promise<T | undefined>, what: string, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await pred()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** The frames a plain mqtt.js client receives, a batch frame's frames each on their own. */
function framesOn (client: MqttClient): Array<{ topic: string, frame: SingleFrame }> {
  const got: Array<{ topic: string, frame: SingleFrame }> = []
  client.on('message', (topic, payload) => {
    const f = JSON.parse(payload.toString('utf8')) as SingleFrame | { t: 'batch', frames: SingleFrame[] }
    for (const one of f.t === 'batch' ? f.frames : [f]) got.push({ topic, frame: one })
  })
  return got
}

// eslint-disable-next-line max-lines-per-function -- the contract: every case of the chat API in one list, each a few lines
export function answersContract (name: string, start: Start): void {
  test(`${name}: a reply tells the other member how far its sender has read; a read it already implied sends nothing and is answered`, async (t) => {
    const { c } = await setupArrangement(start, t)
    const alice = await c('alice')
    const bob = await c('bob')
    const conv = 'd:alice:bob'
    await alice.sendOk({ to: 'bob' }, 'hi bob') // seq 1
    await bob.until(() => bob.messages.length === 1)
    await bob.sendOk({ conv }, 'hi alice') // seq 2: bob has read, and had delivered, up to 2
    const moved = await alice.until(() => receiptsOf(alice, 'bob')[0], 5000, "bob's receipt")
    assert.deepEqual(moved, { t: 'receipt', conv, user: 'bob', read: 2, delivered: 2 })
    // Every member hears of a move: bob's other devices, and bob of alice's send.
    assert.deepEqual(await bob.until(() => receiptsOf(bob, 'bob')[0], 5000, 'his own receipt'), moved)
    assert.deepEqual(await bob.until(() => receiptsOf(bob, 'alice')[0], 5000, "alice's receipt"), { t: 'receipt', conv, user: 'alice', read: 1, delivered: 1 })

    // Reading (or marking delivered) what he has read already moves nothing: answered, no receipt.
    assert.deepEqual(await bob.req('read', { conv, seq: 2 }), { conv, seq: 2 })
    assert.deepEqual(await bob.req('delivered', { conv, seq: 1 }), { conv, seq: 1 })
    // A receipt for them would reach alice before bob's next one (one publisher, one path, in order).
    await bob.sendOk({ conv }, 'and again') // seq 3
    await alice.until(() => receiptsOf(alice, 'bob').some((r) => r.read === 3), 5000, "bob's receipt up to 3")
    assert.deepEqual(receiptsOf(alice, 'bob'), [moved, { t: 'receipt', conv, user: 'bob', read: 3, delivered: 3 }], 'one receipt per move, none for a read that moved nothing')

    // An explicit read that moves both of alice's watermarks says so, once.
    assert.deepEqual(await alice.req('read', { conv, seq: 3 }), { conv, seq: 3 })
    await bob.until(() => receiptsOf(bob, 'alice').length === 2, 5000, "alice's read")
    assert.deepEqual(receiptsOf(bob, 'alice')[1], { t: 'receipt', conv, user: 'alice', read: 3, delivered: 3 })
    const state = await bob.req('receipts', { conv })
    assert.deepEqual(state.members, [{ user: 'alice', read: 3, delivered: 3 }, { user: 'bob', read: 3, delivered: 3 }])
  })

  test(`${name}: in a group, every member hears of each move of a member's watermarks, implied by a send or explicit, once`, async (t) => {
    const { c } = await setupArrangement(start, t)
    const alice = await c('alice')
    const bob = await c('bob')
    const carol = await c('carol', { feed: true })
    const g = await alice.req('group.create', { name: 'Readers', members: ['bob', 'carol'] }) // seq 1
    await alice.sendOk({ conv: g.conv }, 'hello group') // seq 2
    for (const x of [bob, carol]) {
      assert.deepEqual(await x.until(() => receiptsOf(x, 'alice')[0], 5000, `${x.clientId}: alice's receipt`), { t: 'receipt', conv: g.conv, user: 'alice', read: 2, delivered: 2 })
    }
    await bob.sendOk({ conv: g.conv }, 'hi all') // seq 3
    for (const x of [alice, carol]) {
      assert.deepEqual(await x.until(() => receiptsOf(x, 'bob')[0], 5000, `${x.clientId}: bob's receipt`), { t: 'receipt', conv: g.conv, user: 'bob', read: 3, delivered: 3 })
    }
    // Carol (a feed reader) reads explicitly; then again, which moves nothing.
    await carol.until(() => carol.messages.length === 3, 5000, 'the three messages')
    assert.deepEqual(await carol.req('read', { conv: g.conv, seq: 3 }), { conv: g.conv, seq: 3 })
    const carolRead = { t: 'receipt', conv: g.conv, user: 'carol', read: 3, delivered: 3 }
    for (const x of [alice, bob]) assert.deepEqual(await x.until(() => receiptsOf(x, 'carol')[0], 5000, `${x.clientId}: carol's read`), carolRead)
    assert.deepEqual(await carol.req('read', { conv: g.conv, seq: 3 }), { conv: g.conv, seq: 3 })
    assert.deepEqual(await carol.req('delivered', { conv: g.conv, seq: 2 }), { conv: g.conv, seq: 2 })
    await carol.sendOk({ conv: g.conv }, 'read it all') // seq 4
    for (const x of [alice, bob]) {
      await x.until(() => receiptsOf(x, 'carol').some((r) => r.read === 4), 5000, `${x.clientId}: carol's receipt up to 4`)
      assert.deepEqual(receiptsOf(x, 'carol'), [carolRead, { t: 'receipt', conv: g.conv, user: 'carol', read: 4, delivered: 4 }])
      assert.equal(receiptsOf(x, 'bob').length, 1, 'bob moved once')
    }
  })

  test(`${name}: a device's answers reach its device topic and its device feed when a connection reads each`, async (t) => {
    const { a } = await setupArrangement(start, t)
    const opts = (clientId: string): { username: string, password: string, clientId: string } => ({ username: 'bob', password: PW, clientId })
    // Bob publishes as bob-pub and reads its answers with two other connections, one per topic (the ACL lets his client ids read each other's).
    const plain = await connect(a.mqttUrl, opts('bob-plain'))
    const feed = await connect(a.mqttUrl, opts('bob-feed'))
    const pub = await connect(a.mqttUrl, opts('bob-pub'))
    try {
      const onPlain = framesOn(plain)
      const onFeed = framesOn(feed)
      assert.deepEqual((await plain.subscribeAsync('wb/d/bob-pub', { qos: 1 })).map((g) => g.qos), [1])
      assert.deepEqual((await feed.subscribeAsync('wb/d/bob-pub/feed', { qos: 1 })).map((g) => g.qos), [1])
      const answered = async (payload: object, is: (f: SingleFrame) => boolean, what: string): Promise<void> => {
        await pub.publishAsync('wb/u/bob/out', JSON.stringify(payload), { qos: 1 })
        for (const [got, topic] of [[onPlain, 'wb/d/bob-pub'], [onFeed, 'wb/d/bob-pub/feed']] as const) {
          const f = await waitFor(() => got.find((x) => is(x.frame)), `${what} on ${topic}`)
          assert.equal(f.topic, topic)
        }
      }
      await answered({ t: 'msg', cid: 'b-1', to: 'alice', body: 'hi' }, (f) => f.t === 'ack' && f.cid === 'b-1', 'the ack')
      await answered({ t: 'req', id: 'r-1', op: 'unread' }, (f) => f.t === 'res' && f.id === 'r-1', 'the reply')
      await answered({ t: 'req', id: 'r-2', op: 'nope' }, (f) => f.t === 'error' && f.ref === 'r-2' && f.code === 'unknown_type', 'the refusal')
      assert.equal(onPlain.filter((f) => f.frame.t === 'ack').length, 1, 'one ack on the device topic')
      assert.equal(onFeed.filter((f) => f.frame.t === 'ack').length, 1, 'one ack on the device feed')
    } finally {
      for (const x of [plain, feed, pub]) await x.endAsync(true)
    }
  })

  test(`${name}: a storage failure is answered with internal and its ref, logged at error level with its cause, counted; then all works again`, async (t) => {
    const { a, c } = await setupArrangement(start, t)
    const alice = await c('alice')
    const bob = await c('bob')
    // The archive refuses every new message: a real SQLite failure inside the writer's transaction.
    const db = await Database.open(path.join(a.dataDir, DB_FILE))
    try {
      await db.exec("CREATE TRIGGER refuse_messages BEFORE INSERT ON messages BEGIN SELECT RAISE(ABORT, 'no new messages today'); END")
      const body = 'a body that stays out of the log'
      const refused = await alice.send({ to: 'bob' }, body, 'doomed-1') as ErrorFrame
      assert.equal(refused.t, 'error')
      assert.equal(refused.code, 'internal')
      assert.equal(refused.ref, 'doomed-1')
      assert.doesNotMatch(refused.message, /SQLITE|no new messages/, 'the cause is for the log, not for clients')
      // A request that writes a message fails the same way; the refusal names it (req() matches its ref).
      await assert.rejects(alice.req('group.create', { name: 'Doomed', members: ['bob'] }), (err: Error & { code?: string }) => err.code === 'internal')

      const errorLines = (): Array<Record<string, unknown>> => a.logLines()
        .map((l) => { try { return JSON.parse(l) as Record<string, unknown> } catch { return {} } })
        .filter((l) => l.level === 'error')
      const send = await waitFor(() => errorLines().find((l) => l.kind === 'send'), 'the log line of the failed send')
      assert.equal(send.user, 'alice')
      assert.equal(send.clientId, alice.clientId)
      assert.equal(send.conv, 'd:alice:bob')
      assert.equal(send.ref, 'doomed-1')
      assert.match(String(send.error), /SQLITE_CONSTRAINT.*no new messages today/)
      const req = await waitFor(() => errorLines().find((l) => l.kind === 'request'), 'the log line of the failed request')
      assert.equal(req.op, 'group.create')
      assert.equal(req.clientId, alice.clientId)
      assert.match(String(req.error), /no new messages today/)
      assert.ok(!a.logLines().some((l) => l.includes(body)), 'no body in the log')
      if (a.metrics !== undefined) {
        const text = await a.metrics()
        assert.match(text, /^warbler_service_internal_errors_total\{kind="send"\} 1$/m)
        assert.match(text, /^warbler_service_internal_errors_total\{kind="request"\} 1$/m)
        assert.match(text, /^warbler_service_refusals_total\{code="internal"\} 2$/m)
      }

      // Nothing else was harmed: once the archive takes messages again, the same send is stored, first.
      await db.exec('DROP TRIGGER refuse_messages')
    } finally {
      await db.close()
    }
    // (Sent raw: send() would take the earlier refusal of this cid for its answer.)
    await alice.publishRaw(JSON.stringify({ t: 'msg', cid: 'doomed-1', to: 'bob', body: 'after the fault' }))
    const ack = await alice.until(() => alice.frames.find((f) => f.frame.t === 'ack' && f.frame.cid === 'doomed-1')?.frame, 5000, 'the ack of the retry')
    assert.equal((ack as { seq: number }).seq, 1)
    await bob.until(() => bob.messages.some((m) => m.body === 'after the fault'), 5000, 'the message')
    assert.equal((await bob.sendOk({ to: 'alice' }, 'got it')).seq, 2)
    assert.deepEqual((await alice.req('history', { conv: 'd:alice:bob' })).messages.map((m: { seq: number }) => m.seq), [1, 2])
  })
}
