// An app's listener that throws never breaks the client: the exception is
// told as an `error` event (ListenerError, code listener_failed, the original
// as cause), and messages, sends and states go on as before. A throwing
// `error` listener (or one missing) is not emitted again: the exception is
// rethrown in a microtask.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { WarblerClient } from '../../sdk/src/client.js'
import { ListenerError, type WarblerError } from '../../sdk/src/errors.js'
import { directConversation } from '../../sdk/src/protocol.js'
import { startNode } from '../helpers/test-node.js'
import { assertComplete, lifo, PW, recorded, until, within } from './support.js'

const users = [{ name: 'alice', password: PW }, { name: 'bob', password: PW }]

test('listeners that throw are told as listener_failed errors; delivery stays in order and sends resolve', { timeout: 20_000 }, async (t) => {
  const defer = lifo(t)
  const node = await startNode([], { users })
  defer(() => node.close())
  const url = `mqtt://127.0.0.1:${node.ports.mqtt as number}`
  const a = recorded({ url, username: 'alice', password: PW, device: 'thrower-a' })
  defer(() => a.client.close())
  const b = recorded({ url, username: 'bob', password: PW, device: 'thrower-b' })
  defer(() => b.client.close())
  const thrown: Error[] = []
  const boom = (what: string): never => { const e = new Error(what); thrown.push(e); throw e }
  b.client.on('message', (m) => { if (m.seq % 2 === 0) boom(`message ${m.seq}`) })
  b.client.on('status', (s) => { if (s.status === 'sent') boom(`status ${s.cid}`) })
  b.client.on('state', (e) => { boom(`state ${e.newState}`) })
  await Promise.all([a.client.connect(), b.client.connect()])

  const conv = directConversation('alice', 'bob')
  for (let i = 0; i < 10; i++) await within(a.client.send({ to: 'bob' }, `a${i}`), 5000, `alice's send ${i}`)
  const acks = await within(Promise.all(Array.from({ length: 5 }, (_, i) => b.client.send({ to: 'alice' }, `b${i}`))), 5000, 'bob\'s sends')
  assert.deepEqual(acks.map((ack) => ack.seq), [11, 12, 13, 14, 15], 'bob\'s sends resolve despite his status listener')
  await until(() => b.messages.length === 15 && a.messages.length === 15, 5000, () => `15 messages each (bob ${b.messages.length}, alice ${a.messages.length})`)
  assertComplete(b.messages, conv, 15, 'bob')
  assertComplete(a.messages, conv, 15, 'alice')
  assert.deepEqual(b.messages.map((m) => m.body), [...Array.from({ length: 10 }, (_, i) => `a${i}`), ...Array.from({ length: 5 }, (_, i) => `b${i}`)])

  // 'connecting' and 'connected', 7 even seqs, 5 'sent' statuses: each told once, the original as cause.
  await until(() => b.errors.length === thrown.length, 2000, 'an error event per exception')
  assert.equal(thrown.length, 2 + 7 + 5)
  assert.ok(b.errors.every((e) => e instanceof ListenerError && e.code === 'listener_failed'), 'all listener_failed')
  assert.deepEqual(b.errors.map((e) => e.cause), thrown, 'each carries what was thrown, in order')
  const byEvent = (event: string): number => b.errors.filter((e) => (e as ListenerError).event === event).length
  assert.deepEqual([byEvent('state'), byEvent('message'), byEvent('status')], [2, 7, 5])
  assert.deepEqual(a.errors, [])

  // The client still works after it all: a request answers, and closing is clean.
  const page = await b.client.history(conv, { limit: 3 })
  assert.deepEqual(page.messages.map((m) => m.seq), [13, 14, 15])
  await b.client.close()
  assert.equal(b.client.state, 'closed')
})

test('an error listener that throws, or none at all: rethrown in a microtask, never emitted again', async () => {
  const client = new WarblerClient({ url: 'mqtt://127.0.0.1:1', username: 'alice', password: PW })
  const emit = (event: string, arg: unknown): void => { (client as unknown as { emit: (e: string, a: unknown) => void }).emit(event, arg) }
  const rethrown: unknown[] = []
  const original = globalThis.queueMicrotask
  globalThis.queueMicrotask = (fn) => { try { fn() } catch (err) { rethrown.push(err) } }
  try {
    // No error listener: a status listener's exception is rethrown as it is.
    const first = new Error('status listener')
    const offStatus = client.on('status', () => { throw first })
    emit('status', { cid: 'c1', status: 'pending' })
    assert.deepEqual(rethrown, [first])

    // An error listener that throws itself: the listener_failed error reaches every error listener, and what the
    // throwing one threw is rethrown, once.
    const seen: WarblerError[] = []
    const second = new Error('error listener')
    client.on('error', () => { throw second })
    client.on('error', (e) => { seen.push(e) })
    emit('status', { cid: 'c2', status: 'pending' })
    assert.equal(seen.length, 1)
    assert.ok(seen[0] instanceof ListenerError && seen[0].event === 'status' && seen[0].cause === first)
    assert.deepEqual(rethrown, [first, second])
    offStatus()
    emit('status', { cid: 'c3', status: 'pending' })
    assert.deepEqual(rethrown, [first, second], 'nothing more once the listener is gone')
  } finally {
    globalThis.queueMicrotask = original
    await client.close()
  }
})
