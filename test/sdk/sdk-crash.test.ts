// The broker is killed with SIGKILL while an SDK client sends: the real CLI on
// a kept data dir (no Redis, so the archive is SQLite and the offline queues
// live in memory and die with the process), restarted on the same data dir on
// new ports, the clients' proxies pointed at it. Every acknowledged message
// reaches the other app once, in order; the unacknowledged ones are sent again
// from the outbox and stored once; the receiver's lost offline queue is made
// up by the SDK's sync.
import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import { test } from 'node:test'
import { directConversation, type MessageFrame } from '../../sdk/src/protocol.js'
import { TcpProxy } from '../helpers/proxy.js'
import { addUser, type SpawnedNode, spawnNode, tempDir } from '../helpers/test-node.js'
import { assertAllArrived, assertComplete, lifo, type Outcome, PW, recorded, sleep, track, until, within } from './support.js'

test('SIGKILL of the broker mid-stream: acknowledged messages arrive once, in order; the rest are resent and stored once', { timeout: 60_000 }, async (t) => {
  const defer = lifo(t)
  const dataDir = tempDir('warbler-sdk-crash-')
  defer(() => rmSync(dataDir, { recursive: true, force: true }))
  for (const name of ['alice', 'bob']) await addUser(dataDir, { name, password: PW })
  const nodes: SpawnedNode[] = []
  defer(async () => { for (const n of nodes) await n.stop('SIGKILL') })
  const first = await spawnNode([], { dataDir })
  nodes.push(first)
  const pa = await TcpProxy.start(first.ports.mqtt as number)
  const pb = await TcpProxy.start(first.ports.mqtt as number)
  defer(() => pa.close())
  defer(() => pb.close())

  const a = recorded({ url: pa.url, username: 'alice', password: PW, device: 'crash' })
  const b = recorded({ url: pb.url, username: 'bob', password: PW, device: 'crash' })
  defer(() => a.client.close())
  defer(() => b.client.close())
  await Promise.all([a.client.connect(), b.client.connect()])
  const conv = directConversation('alice', 'bob')

  // alice streams 60 messages, one every 20 ms; the broker dies after the 20th.
  const N = 60
  const out: Outcome[] = []
  const sends: Array<Promise<void>> = []
  let killed: Promise<number | null> | null = null
  for (let i = 1; i <= N; i++) {
    sends.push(track(a.client, { to: 'bob' }, `crash ${i}`, out))
    if (i === 20) killed = first.stop('SIGKILL')
    await sleep(20)
  }
  assert.equal(await killed, null, 'killed by the signal')
  const ackedBeforeRestart = out.length
  assert.ok(ackedBeforeRestart < N, `some sends wait for the broker (${ackedBeforeRestart} acked)`)

  const second = await spawnNode([], { dataDir })
  nodes.push(second)
  pa.retarget(second.ports.mqtt as number)
  pb.retarget(second.ports.mqtt as number)

  await within(Promise.all(sends), 20_000, () => `sends after the restart: ${out.length}/${N} done`)
  assert.deepEqual(out.filter((o) => !o.ok), [], 'no send fails')
  const seqs = out.map((o) => (o.ok ? o.ack.seq : 0)).sort((x, y) => x - y)
  assert.deepEqual(seqs, Array.from({ length: N }, (_, i) => i + 1), 'each message stored once: seq 1..60')

  await until(() => b.messages.length >= N, 15_000, () => `bob to get ${N} messages (has ${b.messages.length})`)
  await sleep(300)
  assertComplete(b.messages, conv, N, 'bob')
  assertAllArrived(out, b.messages, 'bob')
  assertComplete(a.messages, conv, N, 'alice')

  // The archive, as the history request shows it: every body once, in send order.
  const page = await b.client.history(conv, { after: 0, limit: 200 })
  const bodies = page.messages.map((m: MessageFrame) => m.body as string)
  assert.equal(new Set(bodies).size, bodies.length, 'no duplicate bodies in the archive')
  assert.deepEqual(bodies, Array.from({ length: N }, (_, i) => `crash ${i + 1}`), 'stored once each, in the order sent')
  assert.equal(page.more, false)
  assert.deepEqual(await a.client.pending(), [], 'the outbox is empty')
})
