// The app quits with messages in its FileOutbox while the server is out of
// reach; a new client instance (the app started again) with the same file,
// device and `since` delivers them exactly once, in the order they were
// written, and gets what it missed without what it already had.
import assert from 'node:assert/strict'
import { readFileSync, rmSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { ClosedError } from '../../sdk/src/errors.js'
import { FileOutbox } from '../../sdk/src/file-outbox.js'
import type { OutboxEntry } from '../../sdk/src/outbox.js'
import { directConversation, type MessageFrame } from '../../sdk/src/protocol.js'
import { TcpProxy } from '../helpers/proxy.js'
import { startNode, tempDir } from '../helpers/test-node.js'
import { assertComplete, lifo, type Outcome, PW, recorded, track, until, within } from './support.js'

test('an app restarted with its FileOutbox sends what the last run left, once, in order, and resumes from since', { timeout: 30_000 }, async (t) => {
  const defer = lifo(t)
  const node = await startNode([], { users: [{ name: 'alice', password: PW }, { name: 'bob', password: PW }] })
  defer(() => node.close())
  const dir = tempDir('warbler-sdk-outbox-')
  defer(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'alice', 'outbox.json')
  const proxy = await TcpProxy.start(node.ports.mqtt as number)
  defer(() => proxy.close())
  const conv = directConversation('alice', 'bob')

  const bob = recorded({ url: node.mqttUrl, username: 'bob', password: PW, device: 'desk' })
  defer(() => bob.client.close())
  await bob.client.connect()

  // First run: a little chat, then the server goes out of reach and alice writes 5 more.
  const run1 = recorded({ url: proxy.url, username: 'alice', password: PW, device: 'app', outbox: new FileOutbox(file) })
  defer(() => run1.client.close())
  await run1.client.connect()
  await run1.client.send({ to: 'bob' }, 'a1')
  await bob.client.send({ to: 'alice' }, 'b1')
  await run1.client.send({ to: 'bob' }, 'a2')
  await until(() => run1.messages.length === 3, 5000, 'the first run to see 3 messages')
  proxy.block()
  await until(() => run1.client.state === 'reconnecting', 5000, 'the first run to lose its link')
  const left: Outcome[] = []
  const leftSends = [1, 2, 3, 4, 5].map((i) => track(run1.client, { to: 'bob' }, `offline ${i}`, left))
  await until(() => run1.statuses.filter((s) => s.status === 'pending').length === 7, 5000, '5 more pending sends')
  const inFile = JSON.parse(readFileSync(file, 'utf8')) as OutboxEntry[]
  assert.deepEqual(inFile.map((e) => e.body), [1, 2, 3, 4, 5].map((i) => `offline ${i}`), 'the outbox file holds them, in order')
  // bob writes meanwhile: the first run never sees these.
  await bob.client.send({ to: 'alice' }, 'b2')
  await bob.client.send({ to: 'alice' }, 'b3')
  const since = run1.client.syncState
  assert.deepEqual(since, { [conv]: 3 })
  await run1.client.close() // the app quits
  await Promise.all(leftSends)
  assert.ok(left.every((o) => !o.ok && o.error instanceof ClosedError), 'close() ends the waiting sends with ClosedError')
  assert.equal((JSON.parse(readFileSync(file, 'utf8')) as OutboxEntry[]).length, 5, 'and leaves them in the file')

  // Second run: the same file, device and since.
  proxy.unblock()
  const run2 = recorded({ url: proxy.url, username: 'alice', password: PW, device: 'app', outbox: new FileOutbox(file), since })
  defer(() => run2.client.close())
  await run2.client.connect()
  await until(() => run2.statuses.filter((s) => s.status === 'sent').length === 5, 10_000, () => `5 sent statuses (${run2.statuses.length} statuses)`)
  await until(() => bob.messages.length === 10, 5000, () => `bob to see 10 messages (has ${bob.messages.length})`)
  await until(() => run2.messages.length === 7, 5000, () => `the second run to see seq 4..10 (has ${run2.messages.map((m) => m.seq).join(',')})`)
  await new Promise((resolve) => setTimeout(resolve, 300))

  const bodies = (ms: MessageFrame[]): unknown[] => ms.map((m) => m.body)
  const offline = [1, 2, 3, 4, 5].map((i) => `offline ${i}`)
  assert.deepEqual(run2.messages.map((m) => m.seq), [4, 5, 6, 7, 8, 9, 10], 'the second run starts after since: nothing it had again')
  assert.deepEqual(bodies(run2.messages), ['b2', 'b3', ...offline])
  assert.deepEqual(bodies(bob.messages), ['a1', 'b1', 'a2', 'b2', 'b3', ...offline], 'bob gets each once, in the order written')
  const sent = run2.statuses.flatMap((s) => (s.status === 'sent' ? [s.ack.seq] : []))
  assert.deepEqual(sent, [6, 7, 8, 9, 10], 'acknowledged in the order written')
  assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), [], 'the outbox file is empty')
  assert.deepEqual(await run2.client.pending(), [])

  const page = await within(run2.client.history(conv, { after: 0 }), 5000, 'history')
  assert.deepEqual(bodies(page.messages), ['a1', 'b1', 'a2', 'b2', 'b3', ...offline], 'the archive holds each once')

  // A new device without since gets the whole conversation, though its sync stops at 3 per conversation.
  const tablet = recorded({ url: node.mqttUrl, username: 'alice', password: PW, device: 'tablet', syncLimit: 3 })
  defer(() => tablet.client.close())
  await tablet.client.connect()
  await until(() => tablet.messages.length >= 10, 5000, () => `the new device to get 10 messages (has ${tablet.messages.length})`)
  assertComplete(tablet.messages, conv, 10, 'the new device')
})
