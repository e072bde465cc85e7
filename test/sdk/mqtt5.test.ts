// The SDK on MQTT 5 (its default) and MQTT 3.1.1 (`protocolVersion: 4`):
// reason codes mapped to the SDK's error codes, a refusing PUBACK failing a
// publish at once (against a bare aedes whose publish hook refuses, which
// answers MQTT 5 with PUBACK 0x87 and its reason string), and the same
// client chatting with a Warbler server over either protocol.
import assert from 'node:assert/strict'
import net from 'node:net'
import { test } from 'node:test'
import { Aedes } from 'aedes'
import { InvalidArgumentError, ServerError } from '../../sdk/src/errors.js'
import { resolveOptions } from '../../sdk/src/client-options.js'
import { openLink, publishBytes, type Link } from '../../sdk/src/link.js'
import { connackReturnCode, pubackErrorCode } from '../../sdk/src/reason-codes.js'
import { MemoryOutbox } from '../../sdk/src/outbox.js'
import { SendQueue } from '../../sdk/src/send-queue.js'
import { startNode } from '../helpers/test-node.js'
import { lifo, PW, recorded, until, within } from './support.js'

/** A send queue on a fake link that is always ready: `answer(cid)` is each publish's PUBACK; `published` records the cids handed over. */
function queueOn (outbox: MemoryOutbox, link: Link, published: string[], answer: (cid: string) => Promise<void>): SendQueue {
  return new SendQueue({
    outbox,
    requestTimeout: 60_000,
    link: () => link,
    closed: () => false,
    handOff: (_link, _frame, id) => { published.push(id); return Promise.resolve({ acked: answer(id) }) },
    status: () => {},
    error: (e) => { throw e }
  })
}

test('PUBACK reason codes map to the codes of the error notices; unknown refusals are internal', () => {
  assert.equal(pubackErrorCode(0x87), 'not_authorized')
  assert.equal(pubackErrorCode(0x90), 'not_authorized')
  // MQTT 5 allows no 0x95 on a PUBACK (the broker acknowledges a payload over maxPayload with 0).
  assert.equal(pubackErrorCode(0x95), 'internal')
  assert.equal(pubackErrorCode(0x97), 'rate_limited')
  assert.equal(pubackErrorCode(0x99), 'bad_request')
  assert.equal(pubackErrorCode(0x80), 'internal')
  assert.equal(pubackErrorCode(0x83), 'internal')
})

test('MQTT 5 CONNACK refusals are told as the MQTT 3.1.1 return code of the same meaning', () => {
  assert.deepEqual([0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8c, 0x97, 0x9f].map(connackReturnCode), [1, 2, 4, 5, 3, 3, 5, 4, 3, 3])
  assert.deepEqual([1, 2, 3, 4, 5].map(connackReturnCode), [1, 2, 3, 4, 5])
  assert.equal(connackReturnCode(0x9c), 3, 'another refusal: retried like a busy server')
  assert.equal(connackReturnCode(0), null)
})

test('protocolVersion is 5 unless 4 is asked for; anything else is refused by name', () => {
  const base = { url: 'mqtt://127.0.0.1:1', username: 'alice', password: PW }
  assert.equal(resolveOptions(base).protocolVersion, 5)
  assert.equal(resolveOptions({ ...base, protocolVersion: 4 }).protocolVersion, 4)
  assert.throws(() => resolveOptions({ ...base, protocolVersion: 3 as 4 }), (e: unknown) => e instanceof InvalidArgumentError && /protocolVersion must be 5/.test(e.message))
})

test('a publish refused in its MQTT 5 PUBACK fails at once with the server\'s code, its reason string and the id it was sent for', async (t) => {
  const defer = lifo(t)
  const broker = await Aedes.createBroker({ authorizePublish: (_client, _packet, done) => { done(new Error('no publishing here')) } })
  const server = net.createServer((socket) => { broker.handle(socket) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  defer(() => new Promise<void>((resolve) => { broker.close(() => resolve()) }))
  defer(() => new Promise<void>((resolve) => { server.close(() => resolve()) }))
  const port = (server.address() as net.AddressInfo).port
  const connected = new Promise<Link>((resolve, reject) => {
    const link = openLink(1, { url: `mqtt://127.0.0.1:${port}`, clientId: 'x-1', username: 'x', password: 'y', keepalive: 20, connectTimeout: 2000, protocolVersion: 5 }, {
      payload: async () => {},
      failed: reject,
      connected: () => { resolve(link) },
      closed: () => { reject(new Error('closed')) }
    })
  })
  const link = await within(connected, 5000, 'CONNACK')
  defer(() => link.client.endAsync(true))
  const started = Date.now()
  await assert.rejects(publishBytes(link, 'a/b', new TextEncoder().encode('{}'), 'cid-1', 1), (e: unknown) => {
    assert.ok(e instanceof ServerError, String(e))
    assert.equal(e.code, 'not_authorized')
    assert.equal(e.ref, 'cid-1')
    assert.match(e.message, /PUBACK 0x87\): no publishing here/)
    return true
  })
  assert.ok(Date.now() - started < 2000, 'at once, not after a timeout')
})

test('a send whose PUBACK refuses it fails with that error and leaves the outbox; a retryable refusal sends it again', async () => {
  const outbox = new MemoryOutbox()
  const link = { gen: 1, ready: true } as unknown as Link
  const published: string[] = []
  let answer = (cid: string): Promise<void> => Promise.reject(new ServerError('not_authorized', 'refused in the PUBACK', cid))
  const queue = queueOn(outbox, link, published, (cid) => answer(cid))
  const entry = { cid: 'c1', target: { to: 'bob' }, body: 'x', createdAt: 1 }
  await outbox.put(entry)
  const sent = queue.add(entry)
  void queue.pump()
  await assert.rejects(within(sent, 2000, 'the refusal'), (e: unknown) => e instanceof ServerError && e.code === 'not_authorized' && e.ref === 'c1')
  assert.deepEqual(await outbox.load(), [])
  // rate_limited (0x97): not failed, sent again after a backoff; then acknowledged.
  const later = { cid: 'c2', target: { to: 'bob' }, body: 'y', createdAt: 2 }
  await outbox.put(later)
  answer = (cid) => { answer = () => Promise.resolve(); return Promise.reject(new ServerError('rate_limited', 'quota', cid)) }
  const retried = queue.add(later)
  void queue.pump()
  await until(() => published.filter((id) => id === 'c2').length === 2, 5000, 'the second publish of c2')
  void queue.acked({ t: 'ack', cid: 'c2', conv: 'd:alice:bob', seq: 1, id: 'm', ts: 1 })
  assert.equal((await within(retried, 2000, 'the ack')).seq, 1)
  queue.close(new ServerError('internal', 'closed'))
})

test('a publish refused twice, in its PUBACK and by the notice, in either order: backed off once and sent again once', { timeout: 20_000 }, async () => {
  for (const noticeFirst of [false, true]) {
    const outbox = new MemoryOutbox()
    const link = { gen: 1, ready: true } as unknown as Link
    const published: string[] = []
    const refusal = (cid: string): ServerError => new ServerError('rate_limited', 'quota', cid)
    let queue: SendQueue | null = null
    let first = true
    const answer = async (cid: string): Promise<void> => {
      if (!first) return
      first = false
      // The other answer of the same publish, before or after the PUBACK's.
      if (noticeFirst) await queue?.refused(link, cid, refusal(cid))
      else setImmediate(() => { void queue?.refused(link, cid, refusal(cid)) })
      throw refusal(cid)
    }
    queue = queueOn(outbox, link, published, answer)
    const entry = { cid: 'twice', target: { to: 'bob' }, body: 'x', createdAt: 1 }
    await outbox.put(entry)
    const sent = queue.add(entry)
    void queue.pump()
    await until(() => published.length === 2, 5000, 'the publish sent again')
    assert.equal((queue as unknown as { throttled: number }).throttled, 1, `one backoff step (notice first: ${String(noticeFirst)})`)
    void queue.acked({ t: 'ack', cid: 'twice', conv: 'd:alice:bob', seq: 1, id: 'm', ts: 1 })
    assert.equal((await within(sent, 2000, 'the ack')).seq, 1)
    // Nothing is sent a third time.
    await queue.pump()
    assert.deepEqual(published, ['twice', 'twice'])
    queue.close(new ServerError('internal', 'closed'))
  }
})

test('a window of sends refused one by one in their PUBACKs is one backoff step; each is sent again once', { timeout: 20_000 }, async (t) => {
  const outbox = new MemoryOutbox()
  const link = { gen: 1, ready: true } as unknown as Link
  const published: string[] = []
  // The first window's PUBACKs come once all three are out, each refusing its publish.
  const refusals: Array<() => void> = []
  const queue = queueOn(outbox, link, published, async (id) => {
    if (published.length > 3) return
    await new Promise<void>((_resolve, reject) => { refusals.push(() => { reject(new ServerError('rate_limited', 'quota', id)) }) })
  })
  t.after(() => { queue.close(new ServerError('internal', 'closed')) })
  const cids = ['w1', 'w2', 'w3']
  const sent: Array<Promise<unknown>> = []
  for (const [i, cid] of cids.entries()) {
    const entry = { cid, target: { to: 'bob' }, body: 'x', createdAt: i + 1 }
    await outbox.put(entry)
    sent.push(queue.add(entry))
  }
  void queue.pump()
  await until(() => published.length === 3, 2000, 'the first window')
  for (const refuse of refusals) refuse()
  await until(() => published.length === 6, 5000, 'the window sent again')
  assert.equal((queue as unknown as { throttled: number }).throttled, 1)
  assert.deepEqual(published, [...cids, ...cids])
  for (const [i, cid] of cids.entries()) void queue.acked({ t: 'ack', cid, conv: 'd:alice:bob', seq: i + 1, id: `m${i}`, ts: 1 })
  await within(Promise.all(sent), 2000, 'the acks')
})

for (const protocolVersion of [5, 4] as const) {
  test(`MQTT ${protocolVersion === 5 ? '5' : '3.1.1'}: the SDK chats, and a refusal the server sends as a notice fails the send with its code`, { timeout: 20_000 }, async (t) => {
    const defer = lifo(t)
    const node = await startNode(['--max-payload', '4096'], { users: [{ name: 'alice', password: PW }, { name: 'bob', password: PW }] })
    defer(() => node.close())
    const a = recorded({ url: node.mqttUrl, username: 'alice', password: PW, device: `v${protocolVersion}`, protocolVersion, compressThreshold: 0 })
    defer(() => a.client.close())
    const b = recorded({ url: node.mqttUrl, username: 'bob', password: PW, device: `v${protocolVersion}`, protocolVersion })
    defer(() => b.client.close())
    await a.client.connect()
    await b.client.connect()
    const clients = (node.broker as unknown as { clients: Record<string, { version: number } | undefined> }).clients
    assert.equal(clients[a.client.clientId]?.version, protocolVersion, 'the protocol the server sees')
    const ack = await within(a.client.send({ to: 'bob' }, 'hello'), 5000, 'the ack')
    await until(() => b.messages.some((m) => m.id === ack.id), 5000, 'bob gets it')
    assert.deepEqual((await b.client.history('d:alice:bob')).messages.map((m) => m.body), ['hello'])
    // Over --max-payload: refused by the broker (the notice names the packet id).
    await assert.rejects(within(a.client.send({ to: 'bob' }, 'x'.repeat(5000)), 2500, 'the refusal'),
      (e: unknown) => e instanceof ServerError && e.code === 'payload_too_large')
    assert.deepEqual(await a.client.pending(), [], 'the refused send left the outbox')
  })
}
