/**
 * Chaos under load: SDK apps (Warbler.connect, six devices of four users,
 * direct chats and two groups) send through fault-injecting TCP proxies while
 * the pieces under them are killed with SIGKILL at random moments:
 * - the broker process with its embedded message service (restarted on the
 *   same data dir, on new ports; the proxies are pointed at it), with a slow
 *   consumer (a raw subscriber that stops reading) frozen during the load;
 * - with Redis (`--redis`): Redis itself (restarted on its port and AOF), and
 *   the broker;
 * - with the message service as its own process (`--bridge off` and
 *   `warbler bridge`): the bridge.
 * At the end, every acknowledged send (the SDK's send resolved) is in the
 * archive once, with the acknowledged seq and id, every conversation's seqs
 * run 1..n without a gap, and every device of every member saw each
 * conversation whole, once, in order, as 'message' events.
 *
 *   node test/run.mjs chaos                              # CI: 2 cycles per scenario
 *   WARBLER_CHAOS_CYCLES=20 node test/run.mjs chaos      # the long run
 *   WARBLER_CHAOS_SEED=1234 node test/run.mjs chaos      # the same schedule again
 *
 * The seed (printed first) fixes the schedule: how long the load runs before
 * each kill, how long the piece stays down, the traffic pattern. The moments
 * themselves fall where the machine's timing puts them.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import path from 'node:path'
import { test, type TestContext } from 'node:test'
import { Database } from '../../shared/sqlite.js'
import { directConversation } from '../../sdk/src/protocol.js'
import { TcpProxy } from '../helpers/proxy.js'
import { rawConnect } from '../helpers/raw.js'
import { type RedisServer, startRedis } from '../helpers/redis.js'
import { intFrom, Rng, seedFrom } from '../helpers/rng.js'
import { addUser, CLI, type SpawnedNode, spawnNode, tempDir } from '../helpers/test-node.js'
import { assertAllArrived, assertComplete, lifo, type Outcome, PW, type Recorded, recorded, sleep, track, until, within } from '../sdk/support.js'

const SEED = seedFrom('WARBLER_CHAOS_SEED')
const CYCLES = intFrom('WARBLER_CHAOS_CYCLES', 2)
/** Sends each device keeps unacknowledged at most; sends per device at most. */
const WINDOW = 8
const MAX_SENDS = 20_000
const BRIDGE_PW = 'bridge-password-123'
/** Unsent bytes past which the broker cuts a subscriber. */
const SLOW_CONSUMER_BYTES = 262_144

console.log(`# chaos seed ${SEED}, ${CYCLES} cycles: replay with WARBLER_CHAOS_SEED=${SEED} WARBLER_CHAOS_CYCLES=${CYCLES} node test/run.mjs chaos`)

type Target = { to: string } | { conv: string }

interface Device { user: string, name: string, rec: Recorded, proxy: TcpProxy }

/** A `warbler bridge` process on the data dir, logged in as the service account. */
interface Bridge { child: ChildProcess, stop: (signal?: NodeJS.Signals) => Promise<number | null>, stderr: () => string }

async function startBridge (mqttPort: number, dataDir: string): Promise<Bridge> {
  const child = spawn(process.execPath, [CLI, 'bridge', '--mqtt', `mqtt://127.0.0.1:${mqttPort}`, '--username', 'bridge', '--data-dir', dataDir], {
    env: { ...process.env, WARBLER_BRIDGE_PASSWORD: BRIDGE_PW },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  let err = ''
  child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { err += d.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line from warbler bridge; stderr:\n${err}`)), 15_000)
    child.stdout?.on('data', () => { if (/^warbler bridge ready /m.test(out)) { clearTimeout(timer); resolve() } })
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`warbler bridge exited with ${String(code)} before ready; stderr:\n${err}`)) })
  })
  return {
    child,
    stderr: () => err,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return await exited
    }
  }
}

async function metric (node: SpawnedNode, key: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${node.ports.http ?? 0}/metrics`)).text()
  const line = text.split('\n').find((l) => l.startsWith(key + ' '))
  return line === undefined ? 0 : Number(line.slice(key.length + 1))
}

/**
 * The chat world: four users with six devices, each behind its own proxy, two
 * groups, and the load they generate (sends to direct chats and groups, every
 * fifth one a 4 KB body that does not compress).
 */
class World {
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

async function setupDataDir (extraUsers: Array<{ name: string, password: string, service?: boolean }> = []): Promise<string> {
  const dataDir = tempDir('warbler-chaos-')
  for (const name of ['alice', 'bob', 'carol', 'dave']) await addUser(dataDir, { name, password: PW })
  for (const u of extraUsers) await addUser(dataDir, u)
  return dataDir
}

const BROKER_ARGS = ['--publish-rate', '0', '--slow-consumer-bytes', String(SLOW_CONSUMER_BYTES), '--drain-timeout', '2', '--log-level', 'error']

/**
 * A subscriber to bob's inbox that stops reading: the broker must cut it
 * (counted as slow_consumer) while everyone else's traffic goes on.
 */
async function freezeConsumer (node: SpawnedNode, t: TestContext, load: World): Promise<void> {
  const frozen = await rawConnect(node.ports.mqtt as number, { clientId: 'bob-frozen', username: 'bob', password: PW })
  t.after(() => frozen.destroy())
  frozen.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'wb/u/bob/inbox', qos: 1 }] })
  await frozen.next((p) => p.cmd === 'suback')
  frozen.socket.pause()
  const before = load.acked
  // Bigger bodies meanwhile, so that the kernel's socket buffers (megabytes on loopback) fill in seconds.
  load.big = 24_000
  // The frozen client cannot tell it was cut (it reads nothing, not even the FIN): the broker's count says.
  const deadline = Date.now() + 30_000
  let cut = 0
  while (cut === 0 && Date.now() < deadline) {
    await sleep(200)
    cut = await metric(node, 'warbler_refusals_total{reason="slow_consumer"}')
  }
  load.big = 0
  assert.ok(cut >= 1, 'the frozen subscriber is cut, counted as slow_consumer')
  assert.ok(load.acked > before, 'sends went on while the subscriber was frozen')
}

test('chaos: the broker and its embedded message service killed with SIGKILL under SDK load, a slow consumer frozen meanwhile', { timeout: 60_000 + CYCLES * 15_000 }, async (t) => {
  const started = Date.now()
  const rng = new Rng(SEED).fork(1)
  const defer = lifo(t)
  const dataDir = await setupDataDir()
  defer(() => rmSync(dataDir, { recursive: true, force: true }))
  const nodes: SpawnedNode[] = []
  defer(async () => { for (const n of nodes) await n.stop('SIGKILL') })
  const startBroker = async (): Promise<SpawnedNode> => {
    const n = await spawnNode(BROKER_ARGS, { dataDir })
    nodes.push(n)
    return n
  }
  let node = await startBroker()
  const world = new World(rng)
  defer(() => world.halt())
  await world.connect(node.ports.mqtt as number, defer)
  world.start()
  await freezeConsumer(node, t, world)

  const kills: string[] = []
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    await world.flowing(30, `before kill ${cycle + 1}`)
    const runMs = rng.range(0, 2000)
    await sleep(runMs)
    const acked = world.acked
    assert.equal(await node.stop('SIGKILL'), null, 'killed by the signal')
    const downMs = rng.range(0, 1000)
    await sleep(downMs)
    node = await startBroker()
    // Now and then the new broker dies again just after it came up (while devices reconnect and sync).
    if (rng.bool(0.25)) {
      await sleep(rng.range(0, 300))
      assert.equal(await node.stop('SIGKILL'), null)
      node = await startBroker()
      kills.push(`after ${runMs} ms (${acked} acked), down ${downMs} ms, killed again right after restart`)
    } else {
      kills.push(`after ${runMs} ms (${acked} acked), down ${downMs} ms`)
    }
    world.retarget(node.ports.mqtt as number)
  }
  await world.flowing(30, 'after the last restart')
  const sent = await world.stop(40_000)
  const summary = await world.verify(dataDir, 'embedded')
  assert.equal(await node.stop('SIGTERM'), 0, 'a clean stop at the end')
  t.diagnostic(`seed ${SEED}: ${sent} sends; ${CYCLES} SIGKILLs of the broker: ${kills.join('; ')}; ${summary}; ${Date.now() - started} ms`)
})

test('chaos: with Redis, Redis and then the broker killed with SIGKILL under SDK load', { timeout: 60_000 + CYCLES * 15_000 }, async (t) => {
  const started = Date.now()
  const rng = new Rng(SEED).fork(2)
  const defer = lifo(t)
  const redis: RedisServer = await startRedis()
  defer(() => redis.stop())
  const dataDir = await setupDataDir()
  defer(() => rmSync(dataDir, { recursive: true, force: true }))
  const nodes: SpawnedNode[] = []
  defer(async () => { for (const n of nodes) await n.stop('SIGKILL') })
  // One broker process (the cluster of workers is not under test here).
  const startBroker = async (): Promise<SpawnedNode> => {
    const n = await spawnNode([...BROKER_ARGS, '--redis', redis.url], { dataDir, env: { WARBLER_WORKERS: '1' } })
    nodes.push(n)
    return n
  }
  let node = await startBroker()
  const world = new World(rng)
  defer(() => world.halt())
  await world.connect(node.ports.mqtt as number, defer)
  world.start()

  const kills: string[] = []
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    await world.flowing(30, `before kill ${cycle + 1}`)
    const runMs = rng.range(0, 2000)
    await sleep(runMs)
    const acked = world.acked
    if (cycle % 2 === 0) {
      await redis.restart({ kill: true })
      kills.push(`redis after ${runMs} ms (${acked} acked)`)
    } else {
      assert.equal(await node.stop('SIGKILL'), null, 'killed by the signal')
      await sleep(rng.range(0, 1000))
      node = await startBroker()
      world.retarget(node.ports.mqtt as number)
      kills.push(`broker after ${runMs} ms (${acked} acked)`)
    }
  }
  await world.flowing(30, 'after the last kill')
  const sent = await world.stop(40_000)
  const summary = await world.verify(dataDir, 'redis')
  assert.equal(await node.stop('SIGTERM'), 0, 'a clean stop at the end')
  t.diagnostic(`seed ${SEED}: ${sent} sends; SIGKILLs: ${kills.join('; ')}; ${summary}; ${Date.now() - started} ms`)
})

test('chaos: the message service as its own process (warbler bridge) killed with SIGKILL under SDK load', { timeout: 60_000 + CYCLES * 15_000 }, async (t) => {
  const started = Date.now()
  const rng = new Rng(SEED).fork(3)
  const defer = lifo(t)
  const dataDir = await setupDataDir([{ name: 'bridge', password: BRIDGE_PW, service: true }])
  defer(() => rmSync(dataDir, { recursive: true, force: true }))
  const node = await spawnNode([...BROKER_ARGS, '--bridge', 'off'], { dataDir })
  defer(() => node.stop('SIGKILL'))
  const port = node.ports.mqtt as number
  let bridge = await startBridge(port, dataDir)
  defer(() => bridge.stop('SIGKILL'))
  const world = new World(rng)
  defer(() => world.halt())
  await world.connect(port, defer)
  world.start()

  const kills: string[] = []
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    await world.flowing(30, `before kill ${cycle + 1}`)
    const runMs = rng.range(0, 2000)
    await sleep(runMs)
    const acked = world.acked
    assert.equal(await bridge.stop('SIGKILL'), null, 'killed by the signal')
    const downMs = rng.range(0, 1500)
    await sleep(downMs)
    bridge = await startBridge(port, dataDir)
    kills.push(`after ${runMs} ms (${acked} acked), down ${downMs} ms`)
  }
  await world.flowing(30, 'after the last restart')
  const sent = await world.stop(40_000)
  const summary = await world.verify(dataDir, 'bridge')
  assert.equal(await bridge.stop('SIGTERM'), 0, `the bridge stops cleanly; stderr:\n${bridge.stderr()}`)
  assert.equal(await node.stop('SIGTERM'), 0)
  t.diagnostic(`seed ${SEED}: ${sent} sends; ${CYCLES} SIGKILLs of warbler bridge: ${kills.join('; ')}; ${summary}; ${Date.now() - started} ms`)
})
