// Two SDK clients chat both ways through TCP proxies that the test drops and
// stalls (a dead link that only keepalives notice) again and again: every
// send ends acknowledged, each app gets every acknowledged message once, in
// seq order, with no gap, and the states go connecting, connected, then
// reconnecting/connected once per lost link.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { directConversation } from '../../sdk/src/protocol.js'
import { TcpProxy } from '../helpers/proxy.js'
import { startNode } from '../helpers/test-node.js'
import { assertAllArrived, assertComplete, assertStates, lifo, type Outcome, PW, recorded, sleep, track, until, within } from './support.js'

test('chat through links that drop and stall repeatedly loses nothing and duplicates nothing', { timeout: 60_000 }, async (t) => {
  const defer = lifo(t)
  const node = await startNode([], { users: [{ name: 'alice', password: PW }, { name: 'bob', password: PW }] })
  defer(() => node.close())
  const pa = await TcpProxy.start(node.ports.mqtt as number)
  const pb = await TcpProxy.start(node.ports.mqtt as number)
  defer(() => pa.close())
  defer(() => pb.close())

  const a = recorded({ url: pa.url, username: 'alice', password: PW, device: 'flaky' })
  const b = recorded({ url: pb.url, username: 'bob', password: PW, device: 'flaky' })
  defer(() => a.client.close())
  defer(() => b.client.close())
  await Promise.all([a.client.connect(), b.client.connect()])
  const conv = directConversation('alice', 'bob')

  // Both keep sending, 40 messages each, one every 150 ms, without waiting for acks.
  const outA: Outcome[] = []
  const outB: Outcome[] = []
  const sending = Promise.all([['alice', a, outA, 'bob'], ['bob', b, outB, 'alice']].map(async ([who, r, out, to]) => {
    const sends: Array<Promise<void>> = []
    for (let i = 1; i <= 40; i++) {
      sends.push(track((r as typeof a).client, { to: to as string }, `${who as string} ${i}`, out as Outcome[]))
      await sleep(150)
    }
    await Promise.all(sends)
  }))

  // The disruptions, each on connected links so that each costs exactly one reconnect.
  const lost = { a: 0, b: 0 }
  const down = async (...who: Array<'a' | 'b'>): Promise<void> => {
    for (const w of who) lost[w]++
    const clients = who.map((w) => (w === 'a' ? a : b).client)
    await until(() => clients.every((c) => c.state === 'reconnecting'), 6000, `${who.join(', ')} to notice the lost link`)
  }
  const plan: Array<[string, () => Promise<void>]> = [
    ['drop a', async () => { pa.drop(); await down('a') }],
    ['drop b', async () => { pb.drop(); await down('b') }],
    ['stall a', async () => {
      pa.stall()
      await down('a') // by keepalive: 2 s, then 1.5 times that without an answer
      await sleep(500) // a reconnect attempt is stalled too
      pa.resume()
    }],
    ['drop both', async () => { pa.drop(); pb.drop(); await down('a', 'b') }],
    ['stall b', async () => { pb.stall(); await down('b'); pb.resume() }],
    ['drop both again', async () => { pa.drop(); pb.drop(); await down('a', 'b') }]
  ]
  for (const [what, disrupt] of plan) {
    await until(() => a.client.state === 'connected' && b.client.state === 'connected', 15_000, `both connected before ${what}`)
    await sleep(250)
    await disrupt()
  }
  // Every lost link comes back (on a loaded machine the sends may all be done before the last one does).
  await until(() => a.client.state === 'connected' && b.client.state === 'connected', 15_000, 'both connected again after the last disruption')

  await within(sending, 30_000, () => `sends still pending: alice ${outA.length}/40, bob ${outB.length}/40 done`)
  const failed = [...outA, ...outB].filter((o) => !o.ok)
  assert.deepEqual(failed, [], 'no send should fail: the links come back')
  const n = outA.length + outB.length
  assert.equal(n, 80)
  const seqs = [...outA, ...outB].map((o) => (o.ok ? o.ack.seq : 0)).sort((x, y) => x - y)
  assert.deepEqual(seqs, Array.from({ length: n }, (_, i) => i + 1), 'the acks name seq 1..80, each once')

  await until(() => a.messages.length >= n && b.messages.length >= n, 15_000, () => `all ${n} messages: alice has ${a.messages.length}, bob ${b.messages.length}`)
  await sleep(300) // nothing more (no duplicates) arrives
  for (const [who, r] of [['alice', a], ['bob', b]] as const) {
    assertComplete(r.messages, conv, n, who)
    assertAllArrived(outA, r.messages, who)
    assertAllArrived(outB, r.messages, who)
  }
  // Each sender's own messages are stored in the order it sent them (the outbox keeps its order).
  for (const out of [outA, outB]) {
    const byBody = out.map((o) => [Number(o.body.split(' ')[1]), o.ok ? o.ack.seq : 0]).sort((x, y) => (x[0] as number) - (y[0] as number))
    const inSendOrder = byBody.map(([, s]) => s as number)
    assert.deepEqual(inSendOrder, [...inSendOrder].sort((x, y) => x - y), 'one sender\'s messages keep their order')
  }
  assert.deepEqual(a.errors.map((e) => e.code), [], 'no error events for lost links')
  assert.deepEqual(b.errors.map((e) => e.code), [], 'no error events for lost links')

  await a.client.close()
  await b.client.close()
  assertStates(a.states, lost.a, 'alice')
  assertStates(b.states, lost.b, 'bob')
  assert.ok(pa.accepted > lost.a && pb.accepted > lost.b)
})

test('requests on a dead link end: by timeout while it looks alive, with ConnectionLostError when it drops', { timeout: 20_000 }, async (t) => {
  const defer = lifo(t)
  const node = await startNode([], { users: [{ name: 'alice', password: PW }] })
  defer(() => node.close())
  const proxy = await TcpProxy.start(node.ports.mqtt as number)
  defer(() => proxy.close())
  const a = recorded({ url: proxy.url, username: 'alice', password: PW, device: 'req', keepalive: 30, requestTimeout: 600 })
  defer(() => a.client.close())
  await a.client.connect()

  proxy.stall() // no PUBACK, no answer: the keepalive (30 s) will not notice in time
  await assert.rejects(a.client.unread(), { code: 'timeout' })
  const lost = assert.rejects(a.client.unread(), { code: 'connection_lost' })
  await sleep(100)
  proxy.drop()
  await lost
  await assert.rejects(a.client.unread(), { code: 'connection_lost' }, 'while reconnecting: at once')
  proxy.resume()
  await until(() => a.client.state === 'connected', 5000, 'the reconnect')
  assert.deepEqual(await a.client.unread(), { total: 0, conversations: {} })
  const last = assert.rejects(a.client.unread(), { code: 'closed' })
  await a.client.close()
  await last
  await assert.rejects(a.client.unread(), { code: 'closed' })
  assert.deepEqual(a.states, ['connecting', 'connected', 'reconnecting', 'connected', 'closed'])
})
