/**
 * With Redis, a broker alone on the routing (one worker, no other node) still
 * sees every subscriber: the message service publishes a user's frames only
 * to the topics someone reads, as without Redis. Once a broker of another
 * node joins the routing, whose clients are not seen here, every frame goes
 * to both of a user's topics again, so that node's clients get theirs.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { ChatClient } from '../helpers/chat-client.js'
import { startRedis } from '../helpers/redis.js'
import { startNode, type TestNode } from '../helpers/test-node.js'

const PW = 'password-123'
const USERS = ['alice', 'bob'].map((name) => ({ name, password: PW }))

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function waitFor (what: string, fn: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

test('alone on Redis the service publishes only where someone reads; with another node\'s broker, to both topics', async (t) => {
  const redis = await startRedis()
  const lines: string[] = []
  const nodes: TestNode[] = []
  const clients: ChatClient[] = []
  t.after(async () => {
    for (const c of clients) await c.close().catch(() => {})
    for (const n of nodes.reverse()) await n.close()
    await redis.stop()
  })
  const a = await startNode(['--redis', redis.url, '--publish-rate', '0'], { users: USERS, logLines: lines })
  nodes.push(a)
  const published: string[] = []
  a.broker.on('publish', (packet: { topic: string }) => { published.push(packet.topic) })
  // Both read their feeds, as the SDK does: nobody reads bob's inbox.
  const alice = await ChatClient.connect(a.mqttUrl, 'alice', PW, { feed: true })
  const bob = await ChatClient.connect(a.mqttUrl, 'bob', PW, { feed: true })
  clients.push(alice, bob)
  await alice.sendOk({ to: 'bob' }, 'one')
  await bob.until(() => bob.messages.length >= 1, 5000, 'the first message')
  assert.ok(published.includes('wb/u/bob/feed'), 'delivered on the feed')
  assert.equal(published.filter((x) => x === 'wb/u/bob/inbox').length, 0, 'nothing published to the inbox nobody reads')

  // A broker of another node joins the routing (no service of its own).
  const b = await startNode(['--redis', redis.url, '--bridge', 'off'])
  nodes.push(b)
  await waitFor('the other broker on the routing', () => lines.some((l) => l.includes('another broker shares the routing')))
  await alice.sendOk({ to: 'bob' }, 'two')
  await bob.until(() => bob.messages.length >= 2, 5000, 'the second message')
  await waitFor('the inbox publish', () => published.includes('wb/u/bob/inbox'))
})
