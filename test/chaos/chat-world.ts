/**
 * The SDK side of the chaos tests: four users with six devices (Warbler.connect)
 * behind fault-injecting proxies, in direct chats and two groups, the load they
 * generate, and the checks made at the end of every scenario.
 */
import assert from 'node:assert/strict'
import path from 'node:path'
import { Database } from '../../shared/sqlite.js'
import { directConversation } from '../../sdk/src/protocol.js'
import { TcpProxy } from '../helpers/proxy.js'
import type { Rng } from '../helpers/rng.js'
import { addUser, tempDir } from '../helpers/test-node.js'
import { assertAllArrived, assertComplete, type Outcome, PW, type Recorded, recorded, sleep, track, until, within } from '../sdk/support.js'

/** Sends each device keeps unacknowledged at most; sends per device at most. */
const WINDOW = 8
const MAX_SENDS = 20_000

type Target = { to: string } | { conv: string }

interface Device { user: string, name: string, rec: Recorded, proxy: TcpProxy }

/**
 * The chat world: four users with six devices, each behind its own proxy, two
 * groups, and the load they generate (sends to direct chats and groups, every
 * fifth one a 4 KB body that does not compress).
 */
export class World {
  readonly devices: Device[] = []
  readonly members = new Map<string, string[]>()
  private readonly outs = new Map<Device, Outcome[]>()
  private readonly loops: Array<Promise<Array<Promise<void>>>> = []
  private running = false
  /** While set, every fifth body is this many random bytes (base64) instead of 3000. */
  big = 0

  constructor (private readonly rng: Rng) {}

  async connect (mqttPort: number, defer: (fn: () => unknown) => void): Promise<void> {
    for (const [user, name] of [['alice', 'phone'], ['alice', 'laptop'], ['bob', 'phone'], ['bob', 'laptop'], ['carol', 'phone'], ['dave', 'phone']] as const) {
      const proxy = await TcpProxy.start(mqttPort)
      defer(() => proxy.close())
      const rec = recorded({ url: proxy.url, username: user, password: PW, device: name })
      defer(() => rec.client.close())
      await rec.client.connect()
      this.devices.push({ user, name, rec, proxy })
    }
    const dev = (user: string): Recorded => (this.devices.find((d) => d.user === user) as Device).rec
    const g1 = (await dev('alice').client.createGroup('chaos one', ['bob', 'carol'])).conv
    const g2 = (await dev('bob').client.createGroup('chaos two', ['carol', 'dave'])).conv
    this.members.set(g1, ['alice', 'bob', 'carol'])
    this.members.set(g2, ['bob', 'carol', 'dave'])
    for (const [a, b] of [['alice', 'bob'], ['alice', 'dave'], ['carol', 'dave']] as const) this.members.set(directConversation(a, b), [a, b])
  }

  /** New connections go to this broker port. */
  retarget (mqttPort: number): void { for (const d of this.devices) d.proxy.retarget(mqttPort) }

  private targets (user: string): Target[] {
    const out: Target[] = []
    for (const [conv, users] of this.members) {
      if (!users.includes(user)) continue
      if (conv.startsWith('g:')) out.push({ conv })
      else out.push({ to: users.find((u) => u !== user) as string })
    }
    return out
  }

  start (): void {
    this.running = true
    for (const d of this.devices) {
      const out: Outcome[] = this.outs.get(d) ?? []
      this.outs.set(d, out)
      const r = this.rng.fork(this.devices.indexOf(d))
      const targets = this.targets(d.user)
      this.loops.push((async () => {
        const sends: Array<Promise<void>> = []
        for (let i = 0; this.running && i < MAX_SENDS; i++) {
          while (this.running && sends.length - out.length >= WINDOW) await sleep(10)
          if (!this.running) break
          const id = `${d.user}-${d.name} #${i}`
          const body = i % 5 === 4 ? `${id} ${r.bytes(this.big > 0 ? this.big : 3000).toString('base64')}` : id
          sends.push(track(d.rec.client, r.pick(targets), body, out))
          await sleep(r.range(10, 40))
        }
        return sends
      })())
    }
  }

  get acked (): number { let n = 0; for (const o of this.outs.values()) n += o.filter((x) => x.ok).length; return n }

  /** Wait until `n` more sends are acknowledged: the load runs (again). */
  async flowing (n: number, what: string): Promise<void> {
    const target = this.acked + n
    await until(() => this.acked >= target, 30_000, () => `${what}: ${n} more acknowledged sends (${this.acked}/${target})`)
  }

  /** Stop sending at once (after a failure). */
  halt (): void { this.running = false }

  /** Stop sending; wait for every send to end (acknowledged, or failed). */
  async stop (ms: number): Promise<number> {
    this.running = false
    const sends = (await Promise.all(this.loops)).flat()
    await within(Promise.all(sends), ms, () => `the last sends: ${sends.length - [...this.outs.values()].reduce((a, o) => a + o.length, 0)} of ${sends.length} still waiting`)
    return sends.length
  }

  /**
   * Where the archive holds a device's message after one it sent later, in the
   * same conversation: "conv device: #later (seq s) before #earlier (seq t)".
   * The send order is the `#i` each body starts with.
   */
  async archiveOrderBreaks (dataDir: string): Promise<string[]> {
    const db = await Database.open(path.join(dataDir, 'warbler.db'), { readonly: true })
    try {
      return orderBreaks(await db.all<{ conv: string, seq: number, body: string }>('SELECT conv, seq, body FROM messages WHERE cid IS NOT NULL ORDER BY conv, seq'))
    } finally {
      await db.close()
    }
  }

  /** Every acknowledged send: in the archive once, as acknowledged; every device of every member saw every conversation whole, in order. */
  async verify (dataDir: string, what: string): Promise<string> {
    const all = [...this.outs.values()].flat()
    assert.deepEqual(all.filter((o) => !o.ok).map((o) => (o.ok ? '' : `${o.body.slice(0, 40)}: ${o.error.code} ${o.error.message}`)), [], `${what}: no send failed`)
    const acked = all.filter((o): o is Extract<Outcome, { ok: true }> => o.ok)
    const lastSeq = new Map<string, number>()
    for (const o of acked) lastSeq.set(o.ack.conv, Math.max(lastSeq.get(o.ack.conv) ?? 0, o.ack.seq))
    assert.deepEqual([...lastSeq.keys()].sort(), [...this.members.keys()].sort(), `${what}: every conversation had traffic`)

    for (const d of this.devices) {
      const mine = [...this.members].filter(([, users]) => users.includes(d.user)).map(([conv]) => conv)
      const complete = (): boolean => mine.every((conv) => d.rec.messages.filter((m) => m.conv === conv).length >= (lastSeq.get(conv) ?? 0))
      await until(complete, 20_000, () => `${d.user}-${d.name} to see ${mine.map((c) => `${c}: ${d.rec.messages.filter((m) => m.conv === c).length}/${lastSeq.get(c) ?? 0}`).join(', ')}`)
      await sleep(100) // anything extra (a duplicate) would show up now
      for (const conv of mine) {
        assertComplete(d.rec.messages, conv, lastSeq.get(conv) ?? 0, `${what}: ${d.user}-${d.name} in ${conv}`)
        assertAllArrived(acked.filter((o) => o.ack.conv === conv), d.rec.messages, `${what}: ${d.user}-${d.name}`)
      }
      const strange = d.rec.messages.filter((m) => !mine.includes(m.conv))
      assert.deepEqual(strange, [], `${what}: ${d.user}-${d.name} got nothing from other conversations`)
    }

    const db = await Database.open(path.join(dataDir, 'warbler.db'), { readonly: true })
    try {
      const rows = await db.all<{ conv: string, seq: number, id: string, sender: string, cid: string | null, body: string }>(
        'SELECT conv, seq, id, sender, cid, body FROM messages ORDER BY conv, seq')
      const byConv = new Map<string, typeof rows>()
      for (const r of rows) byConv.set(r.conv, [...(byConv.get(r.conv) ?? []), r])
      for (const [conv, last] of lastSeq) {
        assert.deepEqual((byConv.get(conv) ?? []).map((r) => r.seq), Array.from({ length: last }, (_, i) => i + 1), `${what}: ${conv} archived as seq 1..${last}`)
      }
      const chat = rows.filter((r) => r.cid !== null)
      assert.equal(chat.length, acked.length, `${what}: the archive holds each acknowledged send once, and nothing else`)
      const byCid = new Map(chat.map((r) => [`${r.sender}\u0000${r.cid ?? ''}`, r]))
      for (const o of acked) {
        const sender = o.body.split('-')[0] as string
        const r = byCid.get(`${sender}\u0000${o.ack.cid}`)
        assert.ok(r !== undefined, `${what}: ${o.ack.cid} of ${sender} archived`)
        assert.deepEqual([r.conv, r.seq, r.id, JSON.parse(r.body)], [o.ack.conv, o.ack.seq, o.ack.id, o.body], `${what}: ${o.ack.cid} archived as acknowledged`)
      }
    } finally {
      await db.close()
    }
    const seen = this.devices.reduce((a, d) => a + d.rec.messages.length, 0)
    return `${acked.length} sends acknowledged and archived once, ${seen} deliveries to ${this.devices.length} devices, ` +
      `reconnects ${this.devices.map((d) => d.rec.states.filter((s) => s === 'reconnecting').length).join('/')}`
  }
}

export async function setupDataDir (extraUsers: Array<{ name: string, password: string, service?: boolean }> = []): Promise<string> {
  const dataDir = tempDir('warbler-chaos-')
  for (const name of ['alice', 'bob', 'carol', 'dave']) await addUser(dataDir, { name, password: PW })
  for (const u of extraUsers) await addUser(dataDir, u)
  return dataDir
}

/** Rows in seq order per conversation: where a device's `#i` goes down. */
function orderBreaks (rows: Array<{ conv: string, seq: number, body: string }>): string[] {
  const last = new Map<string, { i: number, seq: number }>()
  const breaks: string[] = []
  for (const r of rows) {
    const m = /^(\S+) #(\d+)/.exec(JSON.parse(r.body) as string)
    if (m === null) continue
    const key = `${r.conv} ${m[1] as string}`
    const i = Number(m[2])
    const prev = last.get(key)
    if (prev !== undefined && prev.i > i) breaks.push(`${key}: #${prev.i} (seq ${prev.seq}) before #${i} (seq ${r.seq})`)
    if (prev === undefined || prev.i < i) last.set(key, { i, seq: r.seq })
  }
  return breaks
}
