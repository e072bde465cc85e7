// The chat walkthrough of docs/protocol.md, with Debian's mosquitto_pub and
// mosquitto_sub as the device and an mqtt.js app (ChatClient) as the other side.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { test } from 'node:test'
import type { AckFrame, MessageFrame, ReceiptFrame } from '../../sdk/src/protocol.js'
import { ChatClient } from '../helpers/chat-client.js'
import { startNode, type TestNode } from '../helpers/test-node.js'

const PW = 'password-123'

/**
 * mosquitto_sub until `count` messages or `seconds`; `lines` resolves to its
 * `-v` lines (topic payload), `ready` once the broker has its subscriptions
 * (its stdout is a pipe, so block-buffered: it cannot tell us itself).
 */
function sub (node: TestNode, user: string, clientId: string, topics: string[], count: number, seconds = 10): { lines: Promise<string[]>, ready: Promise<void> } {
  const ready = new Promise<void>((resolve) => {
    let pending = topics.length
    const on = (subs: Array<{ topic: string }>, client: { id: string }): void => {
      if (client.id !== clientId) return
      pending -= subs.length
      if (pending <= 0) { node.broker.off('subscribe', on); resolve() }
    }
    node.broker.on('subscribe', on)
  })
  const args = ['-h', '127.0.0.1', '-p', String(node.ports.mqtt), '-u', user, '-P', PW, '-i', clientId, '-q', '1', '-v', '-C', String(count), '-W', String(seconds)]
  for (const t of topics) args.push('-t', t)
  const child = spawn('mosquitto_sub', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.resume()
  const lines = new Promise<string[]>((resolve) => {
    child.on('exit', () => {
      if (process.env.WARBLER_TEST_LOG !== undefined) process.stderr.write(out)
      resolve(out.split('\n').filter((l) => l.startsWith('wb/')))
    })
  })
  return { lines, ready }
}

function pub (port: number, user: string, clientId: string, message: string): Promise<number | null> {
  const child = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-u', user, '-P', PW, '-i', clientId, '-q', '1', '-t', `wb/u/${user}/out`, '-m', message], { stdio: 'ignore' })
  return new Promise((resolve) => child.on('exit', (code) => resolve(code)))
}

const frame = (line: string): { topic: string, f: Record<string, unknown> } => {
  const i = line.indexOf(' ')
  return { topic: line.slice(0, i), f: JSON.parse(line.slice(i + 1)) as Record<string, unknown> }
}

test('a mosquitto_pub/sub device and an mqtt.js app hold a direct and a group chat', async (t) => {
  const node = await startNode([], { users: ['alice', 'bob', 'carol'].map((name) => ({ name, password: PW })) })
  t.after(() => node.close())
  const port = node.ports.mqtt as number
  const alice = await ChatClient.connect(node.mqttUrl, 'alice', PW, { device: 'app' })
  t.after(() => alice.close())

  // bob's device: its inbox, and the replies to what it publishes as bob-pub.
  const bob = sub(node, 'bob', 'bob-sub', ['wb/u/bob/inbox', 'wb/d/bob-pub'], 10)
  await bob.ready

  // alice (app) writes to bob; bob (device) answers with plain JSON.
  await alice.sendOk({ to: 'bob' }, 'hi bob, from the app')
  assert.equal(await pub(port, 'bob', 'bob-pub', '{"t":"msg","cid":"bob-1","to":"alice","body":"hi alice, from mosquitto_pub"}'), 0)
  const got = await alice.until(() => alice.messages.find((m) => m.from === 'bob'))
  assert.deepEqual([got.conv, got.seq, got.body, got.cid], ['d:alice:bob', 2, 'hi alice, from mosquitto_pub', 'bob-1'])

  // a group: alice creates it; bob writes to it from the device and asks for history.
  const g = await alice.req<{ conv: string }>('group.create', { name: 'pi club', members: ['bob', 'carol'] })
  assert.equal(await pub(port, 'bob', 'bob-pub', JSON.stringify({ t: 'msg', cid: 'bob-2', conv: g.conv, body: 'hello club' })), 0)
  await alice.until(() => alice.messages.some((m) => m.body === 'hello club'))
  assert.equal(await pub(port, 'bob', 'bob-pub', '{"t":"req","id":"h1","op":"history","conv":"d:alice:bob","limit":20}'), 0)

  const lines = (await bob.lines).map(frame)
  const inbox = lines.filter((l) => l.topic === 'wb/u/bob/inbox').map((l) => l.f)
  const conv = (c: string): string => c.startsWith('g:') ? 'group' : c
  const messages = inbox.filter((f) => f.t === 'msg') as unknown as MessageFrame[]
  assert.deepEqual(messages.map((m) => [conv(m.conv), m.seq]), [['d:alice:bob', 1], ['d:alice:bob', 2], ['group', 1], ['group', 2]])
  // Sending implies having read: each send moved its sender's watermarks, and the members heard of it.
  // (Receipts are QoS 0 and messages QoS 1, so one may overtake the message it covers.)
  const receipts = inbox.filter((f) => f.t === 'receipt') as unknown as ReceiptFrame[]
  assert.deepEqual(receipts.map((r) => [conv(r.conv), r.user, r.read, r.delivered]).sort(), [['d:alice:bob', 'alice', 1, 1], ['d:alice:bob', 'bob', 2, 2], ['group', 'bob', 2, 2]])
  const replies = lines.filter((l) => l.topic === 'wb/d/bob-pub').map((l) => l.f)
  const acks = replies.filter((r) => r.t === 'ack') as unknown as AckFrame[]
  assert.deepEqual(acks.map((a) => [a.cid, a.seq]), [['bob-1', 2], ['bob-2', 2]])
  const history = replies.find((r) => r.t === 'res' && r.id === 'h1') as { data: { messages: MessageFrame[] } } | undefined
  assert.deepEqual(history?.data.messages.map((m) => m.body), ['hi bob, from the app', 'hi alice, from mosquitto_pub'])
})
