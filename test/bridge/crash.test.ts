/**
 * Crash safety of the message service: the real CLI is killed with SIGKILL
 * while several plain MQTT clients send QoS 1 chat messages as fast as the
 * service acknowledges them (so kills land between COMMIT and ack, inside
 * batches, and between batches). After each kill the node is started again on
 * the same data dir; the senders reconnect and re-send, with the same client
 * message id, everything not acknowledged. At the end every message is
 * acknowledged and the archive holds each exactly once, with the seq of its
 * ack, per-conversation seqs contiguous from 1, and a recipient's sync sees
 * them all in order.
 */
import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import mqtt, { type MqttClient } from 'mqtt'
import type { AckFrame, ErrorFrame, MessageFrame } from '../../sdk/src/protocol.js'
import { Database } from '../../shared/sqlite.js'
import { ChatClient } from '../helpers/chat-client.js'
import { addUser, spawnNode, type SpawnedNode, tempDir } from '../helpers/test-node.js'

const PW = 'password-123'
const USERS = ['alice', 'bob', 'carol', 'dave']
/** Messages each sender creates at most, over the whole test. */
const PER_SENDER = 500
/** Sends in flight per sender (QoS 1, unacknowledged by the service). */
const WINDOW = 16
const CYCLES = 3

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Retried sends the node answered from the archive: stored before a kill, not acknowledged. */
async function duplicates (n: SpawnedNode): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${n.ports.http ?? 0}/metrics`)).text()
  return Number(/^warbler_message_duplicates_total (\d+)/m.exec(text)?.[1] ?? 'NaN')
}

interface Msg { cid: string, target: { to: string } | { conv: string }, body: string }

/** One user sending over plain mqtt.js; survives its broker being killed. */
class Sender {
  readonly msgs: Msg[] = []
  readonly acks = new Map<string, AckFrame>()
  readonly errors: ErrorFrame[] = []
  /** Acks that contradict an earlier ack of the same cid. */
  readonly conflicts: string[] = []
  resent = 0
  /**
   * Just before a kill the sender stops listening: acks that arrive then are
   * lost as if the kill had come between COMMIT and the ack. Kept to compare
   * with the ack the retry gets.
   */
  deaf = false
  readonly lost = new Map<string, AckFrame>()
  private client: MqttClient | null = null
  private readonly waiting = new Map<string, () => void>()
  private closedWaiters: Array<() => void> = []

  constructor (readonly user: string, private readonly targets: Array<{ to: string } | { conv: string }>) {}

  get clientId (): string { return `${this.user}-crash` }
  get unacked (): Msg[] { return this.msgs.filter((m) => !this.acks.has(m.cid)) }

  async connect (url: string): Promise<void> {
    const c = mqtt.connect(url, { username: this.user, password: PW, clientId: this.clientId, clean: true, reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4 })
    c.on('error', () => {}) // the broker is killed under it: expected
    c.on('message', (_topic, payload) => {
      const f = JSON.parse(payload.toString('utf8')) as AckFrame | ErrorFrame
      if (f.t === 'ack' && this.deaf) {
        if (!this.lost.has(f.cid)) this.lost.set(f.cid, f)
      } else if (f.t === 'ack') {
        const before = this.acks.get(f.cid)
        if (before !== undefined && JSON.stringify(before) !== JSON.stringify(f)) this.conflicts.push(`${JSON.stringify(before)} vs ${JSON.stringify(f)}`)
        if (before === undefined) this.acks.set(f.cid, f)
        this.waiting.get(f.cid)?.()
      } else if (f.t === 'error') {
        this.errors.push(f)
        if (f.ref !== undefined) this.waiting.get(f.ref)?.()
      }
    })
    c.on('close', () => {
      for (const w of this.closedWaiters) w()
      this.closedWaiters = []
    })
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve())
      c.once('error', reject)
      c.once('close', () => reject(new Error(`${this.user}: closed before CONNACK`)))
    })
    await c.subscribeAsync(`wb/d/${this.clientId}`, { qos: 1 })
    this.deaf = false
    this.client = c
  }

  /** Publish one message and wait for its ack, an error, or the connection to close. False if it was not acknowledged. */
  private async sendOne (m: Msg): Promise<boolean> {
    const c = this.client
    if (c === null || !c.connected) return false
    await new Promise<void>((resolve) => {
      const done = (): void => { this.waiting.delete(m.cid); this.closedWaiters = this.closedWaiters.filter((w) => w !== done); resolve() }
      this.waiting.set(m.cid, done)
      this.closedWaiters.push(done)
      c.publish(`wb/u/${this.user}/out`, JSON.stringify({ t: 'msg', cid: m.cid, ...m.target, body: m.body }), { qos: 1 }, (err) => { if (err != null) done() })
    })
    return this.acks.has(m.cid)
  }

  /**
   * Re-send what is not acknowledged, then new messages, WINDOW at a time,
   * until the connection closes, `deadline`, or (with `onlyRetries`) nothing is left.
   */
  async run (deadline: number, onlyRetries: boolean): Promise<void> {
    const retries = this.unacked
    this.resent += retries.length
    let next = 0
    const take = (): Msg | null => {
      if (next < retries.length) return retries[next++] as Msg
      if (onlyRetries || this.msgs.length >= PER_SENDER) return null
      const i = this.msgs.length
      const m: Msg = { cid: `${this.user}-${i}`, target: this.targets[i % this.targets.length] as Msg['target'], body: `${this.user} #${i}` }
      this.msgs.push(m)
      return m
    }
    const worker = async (): Promise<void> => {
      while (Date.now() < deadline && this.client?.connected === true) {
        const m = take()
        if (m === null) return
        if (!await this.sendOne(m) && this.client?.connected === true && Date.now() < deadline) {
          retries.push(m) // refused or lost with the connection still up: try again later in this cycle
        }
      }
    }
    await Promise.all(Array.from({ length: WINDOW }, worker))
  }

  /** Send `cids` again (already acknowledged) and wait for their acks; the duplicate acks are checked in the message handler. */
  async resendAcked (n: number): Promise<number> {
    const sample = this.msgs.filter((m) => this.acks.has(m.cid)).slice(0, n)
    for (const m of sample) await this.sendOne(m)
    return sample.length
  }

  async close (): Promise<void> {
    const c = this.client
    this.client = null
    if (c !== null) await c.endAsync(true).catch(() => {})
  }
}

// eslint-disable-next-line max-lines-per-function -- one scenario, its steps read in order top to bottom
test('killing the process with SIGKILL between store and ack loses nothing that was acknowledged', { timeout: 60_000 }, async (t) => {
  const started = Date.now()
  const dataDir = tempDir('warbler-crash-')
  for (const name of USERS) await addUser(dataDir, { name, password: PW })
  let node: SpawnedNode | null = null
  const senders: Sender[] = []
  t.after(async () => {
    for (const s of senders) await s.close()
    await node?.stop('SIGKILL')
    rmSync(dataDir, { recursive: true, force: true })
  })
  const spawn = async (): Promise<SpawnedNode> => await spawnNode(['--publish-rate', '0', '--log-level', 'error'], { dataDir })
  const url = (n: SpawnedNode): string => `mqtt://127.0.0.1:${n.ports.mqtt ?? 0}`

  // A group conversation (alice, bob, carol, dave) in the mix.
  node = await spawn()
  const setup = await ChatClient.connect(url(node), 'alice', PW, { device: 'setup' })
  const group = (await setup.req<{ conv: string }>('group.create', { name: 'crash club', members: ['bob', 'carol', 'dave'] })).conv
  await setup.close()

  senders.push(
    new Sender('alice', [{ to: 'bob' }, { conv: group }, { to: 'carol' }]),
    new Sender('bob', [{ to: 'alice' }, { conv: group }]),
    new Sender('carol', [{ to: 'dave' }, { conv: group }]),
    new Sender('dave', [{ to: 'carol' }, { conv: group }, { to: 'alice' }])
  )

  const kills: Array<{ acked: number, unacked: number }> = []
  let storedUnacked = 0
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    node ??= await spawn()
    const n: SpawnedNode = node
    for (const s of senders) await s.connect(url(n))
    const running = Promise.all(senders.map(async (s) => await s.run(Date.now() + 8000, false)))
    // Kill it mid-stream: after some acks, while sends are in flight, and
    // after a short while in which acks to half of the senders are lost on the way.
    const acked = (): number => senders.reduce((a, s) => a + s.acks.size, 0)
    const target = acked() + 100 + Math.floor(Math.random() * 250)
    const until = Date.now() + 4000
    while (acked() < target && Date.now() < until) await sleep(5)
    senders.forEach((s, i) => { s.deaf = (i + cycle) % 2 === 0 })
    await sleep(20 + Math.floor(Math.random() * 60))
    storedUnacked += await duplicates(n)
    assert.equal(await n.stop('SIGKILL'), null, 'killed by the signal')
    node = null
    await running
    for (const s of senders) await s.close()
    kills.push({ acked: senders.reduce((a, s) => a + s.acks.size, 0), unacked: senders.reduce((a, s) => a + s.unacked.length, 0) })
  }
  assert.ok(kills.every((k, i) => k.acked > (kills[i - 1]?.acked ?? 0)), `every cycle acknowledged messages: ${JSON.stringify(kills)}`)
  assert.ok(kills.some((k) => k.unacked > 0), `some sends were in flight at a kill: ${JSON.stringify(kills)}`)

  // Recovery: start again, re-send everything not acknowledged (same cid), until all is.
  node = await spawn()
  const final: SpawnedNode = node
  for (const s of senders) await s.connect(url(final))
  const deadline = Date.now() + 10_000
  while (senders.some((s) => s.unacked.length > 0) && Date.now() < deadline) {
    await Promise.all(senders.map(async (s) => await s.run(deadline, true)))
    await sleep(20)
  }
  for (const s of senders) assert.deepEqual(s.unacked.map((m) => m.cid), [], `${s.user}: every message acknowledged after recovery`)
  storedUnacked += await duplicates(final)
  // A retry of an acknowledged message gets the first ack again and stores nothing.
  let resentAcked = 0
  for (const s of senders) resentAcked += await s.resendAcked(10)
  assert.ok(resentAcked >= 20)
  for (const s of senders) {
    assert.deepEqual(s.errors, [], `${s.user}: no error frames`)
    assert.deepEqual(s.conflicts, [], `${s.user}: every ack of a cid is the same`)
  }
  const acks = new Map(senders.flatMap((s) => [...s.acks].map(([cid, a]) => [`${s.user}\u0000${cid}`, a] as const)))
  const total = senders.reduce((a, s) => a + s.msgs.length, 0)
  assert.equal(acks.size, total)
  // An ack lost at a kill is given again, the same, to the retry.
  let lost = 0
  for (const s of senders) {
    for (const [cid, a] of s.lost) assert.deepEqual(s.acks.get(cid), a, `${s.user}: the retry of ${cid} got the ack that was lost`)
    lost += s.lost.size
  }
  assert.ok(lost > 0, 'some acks were lost at the kills')
  assert.ok(storedUnacked >= lost, `every message whose ack was lost was answered from the archive when retried (${storedUnacked} >= ${lost})`)

  // Recipients catch up by sync from nothing: every conversation whole and in order.
  const synced = new Map<string, Map<string, MessageFrame[]>>()
  for (const user of ['bob', 'dave']) {
    const c = await ChatClient.connect(url(final), user, PW, { device: 'sync' })
    const have: Record<string, number> = {}
    const got = new Map<string, MessageFrame[]>()
    for (let page = 0; page < 50; page++) {
      const r = await c.req<{ messages: MessageFrame[], truncated: string[] }>('sync', { after: have, limit: 500 })
      for (const m of r.messages) {
        const list = got.get(m.conv) ?? []
        list.push(m)
        got.set(m.conv, list)
        have[m.conv] = m.seq
      }
      if (r.truncated.length === 0) break
    }
    await c.close()
    synced.set(user, got)
  }
  for (const s of senders) await s.close()
  assert.equal(await final.stop('SIGTERM'), 0)
  node = null

  // The archive, read directly.
  const db = await Database.open(path.join(dataDir, 'warbler.db'), { readonly: true })
  try {
    const rows = await db.all<{ conv: string, seq: number, id: string, sender: string, cid: string | null, body: string }>(
      'SELECT conv, seq, id, sender, cid, body FROM messages ORDER BY conv, seq')
    const convs = await db.all<{ id: string, last_seq: number }>('SELECT id, last_seq FROM conversations ORDER BY id')
    const byConv = new Map<string, typeof rows>()
    for (const r of rows) byConv.set(r.conv, [...(byConv.get(r.conv) ?? []), r])
    assert.deepEqual(convs.map((c) => c.id).sort(), [...byConv.keys()].sort())
    assert.equal(convs.length, 5, 'four direct conversations and the group')
    for (const c of convs) {
      const seqs = (byConv.get(c.id) ?? []).map((r) => r.seq)
      assert.deepEqual(seqs, Array.from({ length: c.last_seq }, (_, i) => i + 1), `${c.id}: seqs 1..${c.last_seq}, no gap, no duplicate`)
    }
    // Exactly the messages sent, each once, as acknowledged.
    const chat = rows.filter((r) => r.cid !== null)
    assert.equal(chat.length, total, 'each message stored exactly once')
    for (const r of chat) {
      const a = acks.get(`${r.sender}\u0000${r.cid ?? ''}`)
      assert.ok(a !== undefined, `stored message ${r.sender}/${r.cid ?? ''} was sent`)
      assert.deepEqual([a.conv, a.seq, a.id], [r.conv, r.seq, r.id], `ack of ${r.sender}/${r.cid ?? ''} matches the stored row`)
      assert.equal(JSON.parse(r.body), `${r.sender} #${(r.cid ?? '').split('-')[1] ?? ''}`)
    }
    // What a recipient synced is the archive of its conversations, in order.
    for (const [user, got] of synced) {
      const mine = convs.filter((c) => c.id === group || c.id.split(':').includes(user))
      assert.deepEqual([...got.keys()].sort(), mine.map((c) => c.id).sort(), `${user}: synced every conversation`)
      for (const [conv, list] of got) {
        assert.deepEqual(list.map((m) => [m.seq, m.id]), (byConv.get(conv) ?? []).map((r) => [r.seq, r.id]), `${user}: ${conv} synced whole and in order`)
      }
    }
  } finally {
    await db.close()
  }
  const resent = senders.reduce((a, s) => a + s.resent, 0)
  t.diagnostic(`${total} messages, ${CYCLES} kills ${JSON.stringify(kills)}, ${resent} re-sent (${storedUnacked} of them stored before the kill, ${lost} with a lost ack), ${resentAcked} acknowledged re-sent, ${Date.now() - started} ms`)
})
