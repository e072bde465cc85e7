// Sends keep their order (large compressed ones and small plain ones mixed,
// sent at once or left in the outbox while offline), and the broker's own
// refusals, which name only the MQTT packet id, reach the send that caused
// them: a payload over the limit fails its send, a rate limit delays sends
// until they are stored.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { ServerError } from '../../sdk/src/errors.js'
import { directConversation } from '../../sdk/src/protocol.js'
import { TcpProxy } from '../helpers/proxy.js'
import { startNode } from '../helpers/test-node.js'
import { lifo, type Outcome, PW, recorded, track, until, within } from './support.js'

const users = [{ name: 'alice', password: PW }, { name: 'bob', password: PW }]

test('one sender\'s messages are stored in the order sent: compressed and plain mixed, online and from the outbox', { timeout: 20_000 }, async (t) => {
  const defer = lifo(t)
  const node = await startNode([], { users })
  defer(() => node.close())
  const proxy = await TcpProxy.start(node.ports.mqtt as number)
  defer(() => proxy.close())
  const a = recorded({ url: proxy.url, username: 'alice', password: PW, device: 'order', compressThreshold: 256 })
  defer(() => a.client.close())
  await a.client.connect()
  const body = (i: number): string => (i % 3 === 0 ? `big ${i} ` + 'la '.repeat(5000) : `small ${i}`)

  const out: Outcome[] = []
  const online = Array.from({ length: 30 }, (_, i) => track(a.client, { to: 'bob' }, body(i), out))
  await within(Promise.all(online), 10_000, 'online sends')
  proxy.block()
  await until(() => a.client.state === 'reconnecting', 5000, 'the lost link')
  const queued = Array.from({ length: 30 }, (_, i) => track(a.client, { to: 'bob' }, body(30 + i), out))
  proxy.unblock()
  await within(Promise.all(queued), 10_000, 'queued sends')

  assert.ok(out.every((o) => o.ok))
  const seqOf = new Map(out.map((o) => [o.body, o.ok ? o.ack.seq : 0]))
  assert.deepEqual(Array.from({ length: 60 }, (_, i) => seqOf.get(body(i))), Array.from({ length: 60 }, (_, i) => i + 1), 'seq follows the send order')
  await until(() => a.messages.length === 60, 5000, 'alice\'s own 60 messages')
  assert.deepEqual(a.messages.map((m) => m.body), Array.from({ length: 60 }, (_, i) => body(i)))
})

test('the broker\'s refusals reach the send that caused them: over the size limit fails, rate-limited is retried', { timeout: 30_000 }, async (t) => {
  const defer = lifo(t)
  const node = await startNode(['--max-payload', '8192', '--publish-rate', '20', '--publish-burst', '10'], { users })
  defer(() => node.close())
  const a = recorded({ url: node.mqttUrl, username: 'alice', password: PW, device: 'limits', requestTimeout: 1500 })
  defer(() => a.client.close())
  await a.client.connect()

  // Incompressible and over 8 KiB: the broker refuses the publish (naming its packet id only).
  const huge = randomBytes(12_000).toString('base64')
  await assert.rejects(within(a.client.send({ to: 'bob' }, huge), 5000, 'the refusal'),
    (e: unknown) => e instanceof ServerError && e.code === 'payload_too_large' && typeof e.ref === 'string')
  assert.equal(a.statuses.at(-1)?.status, 'failed')
  assert.deepEqual(await a.client.pending(), [], 'a refused send leaves the outbox')

  // 40 at once against a burst of 10 and 20 a second: refused ones are sent again until stored, each once.
  const out: Outcome[] = []
  const sends = Array.from({ length: 40 }, (_, i) => track(a.client, { to: 'bob' }, `burst ${i}`, out))
  await within(Promise.all(sends), 20_000, () => `rate-limited sends: ${out.length}/40 done`)
  assert.ok(out.every((o) => o.ok), 'all stored in the end')
  assert.deepEqual(out.map((o) => (o.ok ? o.ack.seq : 0)).sort((x, y) => x - y), Array.from({ length: 40 }, (_, i) => i + 1))
  const page = await a.client.history(directConversation('alice', 'bob'), { after: 0, limit: 100 })
  assert.equal(page.messages.length, 40, 'each stored once')
})

test('links dropped while a window of sends is in flight: no unhandled rejection, every send stored once, in order', { timeout: 60_000 }, async (t) => {
  const defer = lifo(t)
  // A rejection nobody handles ends a Node app; here it is collected instead, to be asserted on.
  const unhandled: unknown[] = []
  const collect = (reason: unknown): void => { unhandled.push(reason) }
  process.on('unhandledRejection', collect)
  defer(() => process.off('unhandledRejection', collect))
  const node = await startNode([], { users })
  defer(() => node.close())
  const proxy = await TcpProxy.start(node.ports.mqtt as number)
  defer(() => proxy.close())
  // Compression makes each hand-over wait, so links drop between hand-overs of one window.
  const a = recorded({ url: proxy.url, username: 'alice', password: PW, device: 'drops', compressThreshold: 64, reconnect: { minDelay: 50, maxDelay: 200 } })
  defer(() => a.client.close())
  await a.client.connect()
  const out: Outcome[] = []
  const body = (i: number): string => `drop ${i} ` + 'la '.repeat(40)
  const sends = Array.from({ length: 300 }, (_, i) => track(a.client, { to: 'bob' }, body(i), out))
  for (let cut = 0; cut < 6; cut++) {
    await until(() => a.client.state === 'connected', 10_000, `link ${cut}`)
    await new Promise((resolve) => setImmediate(resolve))
    proxy.drop()
  }
  await within(Promise.all(sends), 30_000, 'every send')
  assert.deepEqual(unhandled.map(String), [], 'no rejection left unhandled')
  assert.ok(out.every((o) => o.ok))
  const seqOf = new Map(out.map((o) => [o.body, o.ok ? o.ack.seq : 0]))
  assert.deepEqual(Array.from({ length: 300 }, (_, i) => seqOf.get(body(i))), Array.from({ length: 300 }, (_, i) => i + 1), 'seq follows the send order')
})
