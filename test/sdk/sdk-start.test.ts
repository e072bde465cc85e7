// A device that starts from now (`startAt: 'now'`): with no saved seq it hands
// over none of the user's old messages, only what comes after it connected, in
// order; history stays a request away, later reconnects resume from where it
// was, and conversations that appear later come from seq 1. Without the
// option a fresh device gets everything, as before.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { directConversation } from '../../sdk/src/protocol.js'
import { TcpProxy } from '../helpers/proxy.js'
import { startNode } from '../helpers/test-node.js'
import { assertComplete, lifo, PW, recorded, sleep, until, within } from './support.js'

const users = [{ name: 'alice', password: PW }, { name: 'bob', password: PW }]

test('startAt now: a new device gets no old messages, new ones in order, history on request', { timeout: 30_000 }, async (t) => {
  const defer = lifo(t)
  const node = await startNode([], { users })
  defer(() => node.close())
  const url = `mqtt://127.0.0.1:${node.ports.mqtt as number}`
  const proxy = await TcpProxy.start(node.ports.mqtt as number)
  defer(() => proxy.close())

  // Bob writes to alice while none of her devices is connected: 5 direct messages, a group with 3.
  const bob = recorded({ url, username: 'bob', password: PW, device: 'b' })
  defer(() => bob.client.close())
  await bob.client.connect()
  const direct = directConversation('alice', 'bob')
  for (let i = 1; i <= 5; i++) await bob.client.send({ to: 'alice' }, `old ${i}`)
  const { conv: group } = await bob.client.createGroup('old club', ['alice'])
  await bob.client.send({ conv: group }, 'old g2')
  await bob.client.send({ conv: group }, 'old g3')

  const fresh = recorded({ url: proxy.url, username: 'alice', password: PW, device: 'fresh', startAt: 'now' })
  defer(() => fresh.client.close())
  const full = recorded({ url, username: 'alice', password: PW, device: 'full' })
  defer(() => full.client.close())
  await Promise.all([fresh.client.connect(), full.client.connect()])

  // Without the option: everything, from seq 1. With it: nothing old, and its state is the last seqs.
  await until(() => full.messages.length === 8, 5000, () => `the full device's 8 old messages (got ${full.messages.length})`)
  assertComplete(full.messages, direct, 5, 'full device')
  assertComplete(full.messages, group, 3, 'full device')
  await sleep(300)
  assert.equal(fresh.messages.length, 0, 'no old message as an event')
  assert.deepEqual(fresh.client.syncState, { [direct]: 5, [group]: 3 })

  // New messages come, in order.
  for (let i = 6; i <= 10; i++) await bob.client.send({ to: 'alice' }, `new ${i}`)
  await bob.client.send({ conv: group }, 'new g4')
  await until(() => fresh.messages.length === 6, 5000, () => `6 new messages (got ${fresh.messages.length})`)
  assert.deepEqual(fresh.messages.filter((m) => m.conv === direct).map((m) => [m.seq, m.body]), [6, 7, 8, 9, 10].map((s) => [s, `new ${s}`]))
  assert.deepEqual(fresh.messages.filter((m) => m.conv === group).map((m) => [m.seq, m.body]), [[4, 'new g4']])

  // History is still there, on request.
  const page = await fresh.client.history(direct, { limit: 50 })
  assert.deepEqual(page.messages.map((m) => m.body), [1, 2, 3, 4, 5].map((s) => `old ${s}`).concat([6, 7, 8, 9, 10].map((s) => `new ${s}`)))

  // A lost link: the next sync resumes from its seqs (what came meanwhile arrives), it does not start from now again.
  proxy.block()
  await until(() => fresh.client.state === 'reconnecting', 10_000, 'the lost link')
  await bob.client.send({ to: 'alice' }, 'while away 11')
  await bob.client.send({ to: 'alice' }, 'while away 12')
  const { conv: later } = await bob.client.createGroup('new club', ['alice'])
  await bob.client.send({ conv: later }, 'later g2')
  proxy.unblock()
  await until(() => fresh.messages.length === 10, 10_000, () => `the 4 messages sent while away (got ${fresh.messages.length})`)
  assert.deepEqual(fresh.messages.filter((m) => m.conv === direct).map((m) => m.seq), [6, 7, 8, 9, 10, 11, 12])
  // A conversation that appeared after the device started comes from seq 1.
  assertComplete(fresh.messages, later, 2, 'fresh device')
  assert.deepEqual(fresh.errors, [])
  assert.deepEqual(full.errors, [])
})

test('startAt now resumes the conversations that since names, and starts the others from now', { timeout: 20_000 }, async (t) => {
  const defer = lifo(t)
  const node = await startNode([], { users })
  defer(() => node.close())
  const url = `mqtt://127.0.0.1:${node.ports.mqtt as number}`
  const bob = recorded({ url, username: 'bob', password: PW, device: 'b' })
  defer(() => bob.client.close())
  await bob.client.connect()
  const direct = directConversation('alice', 'bob')
  for (let i = 1; i <= 4; i++) await bob.client.send({ to: 'alice' }, `d${i}`)
  const { conv: group } = await bob.client.createGroup('club', ['alice'])
  await bob.client.send({ conv: group }, 'g2')

  const alice = recorded({ url, username: 'alice', password: PW, device: 'a', startAt: 'now', since: { [direct]: 2 } })
  defer(() => alice.client.close())
  await within(alice.client.connect(), 5000, 'connect')
  await until(() => alice.messages.length === 2, 5000, () => `2 messages (got ${alice.messages.length})`)
  await sleep(200)
  assert.deepEqual(alice.messages.map((m) => [m.conv, m.seq]), [[direct, 3], [direct, 4]])
  assert.deepEqual(alice.client.syncState, { [direct]: 4, [group]: 2 })
})
