// The local bus between the workers of one node (broker/local-bus.ts): a
// message between clients on different workers arrives exactly once and in
// order without touching Redis pub/sub; with two nodes on one Redis each
// subscriber of both gets it once; a killed worker does not stop traffic
// between the others and gets it again once restarted; a hung worker holds
// publishers for about a second at most; the socket directory is private
// (0700) and removed at stop.
import assert from 'node:assert/strict'
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs'
import { test } from 'node:test'
import type { MqttClient } from 'mqtt'
import { lifo } from '../sdk/support.js'
import { startRedis } from '../helpers/redis.js'
import { addUser, connect, spawnNode, type SpawnedNode, tempDir } from '../helpers/test-node.js'
import { alive, workerPids } from '../helpers/cluster-procs.js'

async function until (what: string, check: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function busDir (node: SpawnedNode): string {
  const line = node.stderr().split('\n').find((l) => l.includes('"local bus between the workers"'))
  assert.ok(line !== undefined, 'the primary logs where the local bus is')
  return (JSON.parse(line) as { dir: string }).dir
}

/** `warbler_routing_copies_{kind}_total{path="..."}` on the node's /metrics (summed over its workers). */
async function copies (node: SpawnedNode, kind: 'sent' | 'received' | 'dropped', path: 'local' | 'redis'): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${node.ports.http}/metrics`)).text()
  const m = new RegExp(`^warbler_routing_copies_${kind}_total\\{path="${path}"\\} (\\d+)$`, 'm').exec(text)
  return m === null ? 0 : Number(m[1])
}

/**
 * Which worker each client lands on, from the per-worker $SYS trees
 * (`$SYS/broker/node/{node}/{worker}/clients/connected`) an admin reads.
 */
class Placement {
  readonly counts = new Map<string, number>()
  /** Clients this test has connected and not ended, the admin included. */
  private expected = 1
  private constructor (readonly admin: MqttClient, private readonly brokers: number) {
    admin.on('message', (topic, payload) => {
      const m = /^\$SYS\/broker\/node\/([^/]+\/\d+)\/clients\/connected$/.exec(topic)
      if (m !== null) this.counts.set(m[1] as string, Number(payload.toString()))
    })
  }

  static async open (url: string, brokers: number): Promise<Placement> {
    const admin = await connect(url, { username: 'root', password: 'root-pw-12', clientId: 'root-sys' })
    const p = new Placement(admin, brokers)
    await admin.subscribeAsync('$SYS/broker/node/+/+/clients/connected')
    return p
  }

  private total (): number { let n = 0; for (const v of this.counts.values()) n += v; return n }

  /** Where the admin is, once every broker reported. */
  async adminAt (): Promise<string> {
    await this.settled()
    return [...this.counts].find(([, v]) => v > 0)?.[0] as string
  }

  /** Every broker reported, and the figures count the clients this test has. */
  private async settled (): Promise<void> {
    await until('$SYS figures of every worker', () => this.counts.size === this.brokers && this.total() === this.expected)
  }

  /** Connect one client and tell which `{node}/{worker}` took it. */
  async place (open: () => Promise<MqttClient>): Promise<{ client: MqttClient, where: string }> {
    await this.settled()
    const before = new Map(this.counts)
    const client = await open()
    this.expected++
    let where = ''
    await until('the new client counted on $SYS', () => {
      if (this.total() !== this.expected) return false
      for (const [k, v] of this.counts) if (v > (before.get(k) ?? 0)) where = k
      return where !== ''
    })
    return { client, where }
  }

  /** End a client this test placed. */
  end (client: MqttClient): void {
    client.end(true)
    this.expected--
  }
}

async function recorder (url: string, clientId: string): Promise<{ client: MqttClient, got: string[] }> {
  const client = await connect(url, { clientId })
  const got: string[] = []
  client.on('message', (_topic, payload) => { got.push(payload.toString()) })
  return { client, got }
}

async function adminDir (): Promise<string> {
  const dataDir = tempDir()
  await addUser(dataDir, { name: 'root', password: 'root-pw-12', admin: true })
  return dataDir
}

const ARGS = ['--dev', '--bridge', 'off', '--publish-rate', '0', '--host', '127.0.0.1', '--sys-interval', '1']

test('--workers 2: 1,000 messages from one publisher reach a subscriber on the other worker once each, in order, on the local bus; the socket dir is 0700 and removed at stop', async (t) => {
  const defer = lifo(t)
  const redis = await startRedis()
  defer(() => redis.stop())
  const node = await spawnNode([...ARGS, '--workers', '2', '--redis', redis.url, '--node-name', 'n1'], { dataDir: await adminDir() })
  defer(async () => { await node.stop('SIGTERM'); rmSync(busDir(node), { recursive: true, force: true }) })
  const pids = workerPids(node.stderr())
  defer(() => { for (const pid of pids.values()) if (alive(pid)) process.kill(pid, 'SIGKILL') })
  const dir = busDir(node)
  assert.equal(statSync(dir).mode & 0o777, 0o700, 'only this user reaches the sockets')
  assert.deepEqual(readdirSync(dir).sort(), ['0.sock', '1.sock'])

  const url = `mqtt://127.0.0.1:${node.ports.mqtt}`
  const place = await Placement.open(url, 2)
  defer(() => place.admin.end(true))
  const { client: sub, where: subAt } = await place.place(async () => (await recorder(url, 'sub')).client)
  const got: string[] = []
  sub.on('message', (_topic, payload) => { got.push(payload.toString()) })
  defer(() => sub.end(true))
  await sub.subscribeAsync('room/#', { qos: 1 })
  let pub: MqttClient | null = null
  for (let i = 0; i < 6 && pub === null; i++) {
    const p = await place.place(() => connect(url, { clientId: `pub-${i}` }))
    if (p.where !== subAt) pub = p.client
    else place.end(p.client)
  }
  assert.ok(pub !== null, 'a publisher on the other worker')
  const publisher = pub
  defer(() => publisher.end(true))

  // Copies a worker sent before its sibling listened (its first $SYS figures) count as dropped; none after.
  const droppedBefore = await copies(node, 'dropped', 'local')
  const n = 1000
  const sent = Array.from({ length: n }, (_, i) => `m${i}`)
  await Promise.all(sent.map((m) => publisher.publishAsync('room/x', m, { qos: 1 })))
  // A last message on the same path: nothing of the first 1,000 may come after it.
  await publisher.publishAsync('room/x', 'end', { qos: 1 })
  await until('the last message', () => got.includes('end'))
  assert.deepEqual(got, [...sent, 'end'], 'each message once, in the order sent')
  assert.ok(await copies(node, 'sent', 'local') >= n + 1, 'the copies went on the local bus')
  assert.ok(await copies(node, 'received', 'local') >= n + 1)
  assert.equal(await copies(node, 'sent', 'redis'), 0, 'no other node: nothing goes to Redis pub/sub')
  assert.equal(await copies(node, 'dropped', 'local'), droppedBefore)
  // The same figures per worker in $SYS.
  const sys = new Map<string, number>()
  place.admin.on('message', (topic, payload) => {
    const m = /^\$SYS\/broker\/node\/n1\/(\d)\/warbler\/routing\/(local|redis)\/(sent|received|dropped)$/.exec(topic)
    if (m !== null) sys.set(`${m[1] as string}/${m[2] as string}/${m[3] as string}`, Number(payload.toString()))
  })
  await place.admin.subscribeAsync('$SYS/broker/node/n1/+/warbler/routing/#')
  await until('$SYS routing figures of both workers', () => (sys.get('0/local/sent') ?? 0) + (sys.get('1/local/sent') ?? 0) >= n + 1 && (sys.get('0/local/received') ?? 0) + (sys.get('1/local/received') ?? 0) >= n + 1)
  assert.equal((sys.get('0/redis/sent') ?? -1) + (sys.get('1/redis/sent') ?? -1), 0)

  assert.equal(await node.stop('SIGTERM'), 0)
  assert.equal(existsSync(dir), false, 'the socket directory is removed at stop')
})

test('two nodes on one Redis, 2 workers each: a message reaches every subscriber of both nodes exactly once', async (t) => {
  const defer = lifo(t)
  const redis = await startRedis()
  defer(() => redis.stop())
  const dataDir = await adminDir()
  const nodes: SpawnedNode[] = []
  for (const name of ['na', 'nb']) {
    const node = await spawnNode([...ARGS, '--workers', '2', '--redis', redis.url, '--node-name', name], { dataDir: name === 'na' ? dataDir : tempDir() })
    nodes.push(node)
    const pids = workerPids(node.stderr())
    defer(async () => { await node.stop('SIGTERM'); rmSync(busDir(node), { recursive: true, force: true }) })
    defer(() => { for (const pid of pids.values()) if (alive(pid)) process.kill(pid, 'SIGKILL') })
  }
  const [a, b] = nodes as [SpawnedNode, SpawnedNode]
  const urlOf = (node: SpawnedNode): string => `mqtt://127.0.0.1:${node.ports.mqtt}`
  const place = await Placement.open(urlOf(a), 4)
  defer(() => place.admin.end(true))

  // Subscribers until every worker of both nodes holds one.
  const subs: Array<{ client: MqttClient, got: string[], where: string }> = []
  const held = new Set<string>()
  for (let i = 0; i < 16 && held.size < 4; i++) {
    const node = i % 2 === 0 ? a : b
    let rec: { client: MqttClient, got: string[] } | null = null
    const { where } = await place.place(async () => { rec = await recorder(urlOf(node), `sub-${i}`); return rec.client })
    const r = rec as unknown as { client: MqttClient, got: string[] }
    defer(() => r.client.end(true))
    await r.client.subscribeAsync('room/#', { qos: 1 })
    subs.push({ ...r, where })
    held.add(where)
  }
  assert.deepEqual([...held].sort(), ['na/0', 'na/1', 'nb/0', 'nb/1'], 'a subscriber on every worker of both nodes')
  // The brokers greet each other on Redis: once node b is known, node a sends it copies.
  const pub = await connect(urlOf(a), { clientId: 'pub-a' })
  defer(() => pub.end(true))
  const n = 50
  const sent = Array.from({ length: n }, (_, i) => `m${i}`)
  for (const m of sent) await pub.publishAsync('room/x', m, { qos: 1 })
  await until('every subscriber has every message', () => subs.every((s) => s.got.filter((m) => m.startsWith('m')).length >= n))
  // A fence through Redis from the other node: a duplicate through Redis would have come by then.
  const fence = await connect(urlOf(b), { clientId: 'fence-b' })
  defer(() => fence.end(true))
  await fence.publishAsync('room/fence', 'fence', { qos: 1 })
  await until('the fence everywhere', () => subs.every((s) => s.got.includes('fence')))
  for (const s of subs) assert.deepEqual(s.got.filter((m) => m.startsWith('m')), sent, `${s.where}: each message once, in order`)
  assert.ok(await copies(a, 'sent', 'local') >= n, 'node a: its workers share on the local bus')
  assert.ok(await copies(a, 'sent', 'redis') >= n, 'node a: copies to the other node through Redis')
  assert.ok(await copies(b, 'received', 'redis') >= n, 'node b: copies from the other node')

  // A primary killed outright: its workers, which exit with it, remove the socket directory.
  const dirB = busDir(b)
  assert.equal(existsSync(dirB), true)
  await b.stop('SIGKILL')
  await until('the socket directory of the killed node removed', () => !existsSync(dirB))
})

test('--workers 3: a worker killed with SIGKILL does not stop traffic between the other two, and gets it again once restarted', async (t) => {
  const defer = lifo(t)
  const redis = await startRedis()
  defer(() => redis.stop())
  const node = await spawnNode([...ARGS, '--workers', '3', '--redis', redis.url, '--node-name', 'n1'], { dataDir: await adminDir() })
  defer(async () => { await node.stop('SIGTERM'); rmSync(busDir(node), { recursive: true, force: true }) })
  const pids = workerPids(node.stderr())
  defer(() => { for (const pid of workerPids(node.stderr()).values()) if (alive(pid)) process.kill(pid, 'SIGKILL') })
  const url = `mqtt://127.0.0.1:${node.ports.mqtt}`
  const place = await Placement.open(url, 3)
  defer(() => place.admin.end(true))
  const adminAt = await place.adminAt()

  // A subscriber and a publisher on two workers; the admin may share either of theirs, not the victim's.
  const clients = new Map<string, MqttClient>()
  defer(() => { for (const c of clients.values()) c.end(true) })
  for (let i = 0; i < 12 && clients.size < 3; i++) {
    const p = await place.place(() => connect(url, { clientId: `c-${i}` }))
    if (clients.has(p.where)) place.end(p.client)
    else clients.set(p.where, p.client)
  }
  assert.equal(clients.size, 3, 'a client on every worker')
  const others = [...clients.keys()].filter((w) => w !== adminAt).sort()
  const victim = others[0] as string
  const [pubAt, subAt] = [...clients.keys()].filter((w) => w !== victim) as [string, string]
  const pub = clients.get(pubAt) as MqttClient
  const sub = clients.get(subAt) as MqttClient
  const got: string[] = []
  sub.on('message', (_topic, payload) => { got.push(payload.toString()) })
  await sub.subscribeAsync('room/#', { qos: 1 })

  // Publish one message after another throughout.
  const sent: string[] = []
  let publishing = true
  const loop = (async () => {
    for (let i = 0; publishing; i++) {
      await pub.publishAsync('room/x', `m${i}`, { qos: 1 })
      sent.push(`m${i}`)
    }
  })()
  await until('traffic flows', () => got.length >= 50)

  const index = Number(victim.split('/')[1])
  const old = pids.get(index) as number
  const before = node.stderr().length
  process.kill(old, 'SIGKILL')
  await until('the victim restarted', () => {
    const now = workerPids(node.stderr()).get(index)
    return now !== undefined && now !== old && node.stderr().slice(before).includes('"msg":"worker ready"')
  })
  // The survivors' traffic went on: everything sent so far has arrived, in order.
  const mark = sent.length
  await until('the survivors still exchange messages', () => got.length >= mark + 20)

  // A subscriber on the restarted worker gets the publisher's messages again.
  place.end(clients.get(victim) as MqttClient)
  clients.delete(victim)
  let fresh: { client: MqttClient, got: string[] } | null = null
  for (let i = 0; i < 12 && fresh === null; i++) {
    let rec: { client: MqttClient, got: string[] } | null = null
    const p = await place.place(async () => { rec = await recorder(url, `new-${i}`); return rec.client })
    const r = rec as unknown as { client: MqttClient, got: string[] }
    if (p.where === victim) fresh = r
    else place.end(r.client)
  }
  assert.ok(fresh !== null, 'a client on the restarted worker')
  const again = fresh
  defer(() => again.client.end(true))
  await again.client.subscribeAsync('room/#', { qos: 1 })
  await until('the restarted worker gets messages again', () => again.got.length >= 20)
  publishing = false
  await loop
  await until('the last message', () => got.length === sent.length)
  assert.deepEqual(got, sent, 'the survivors: each message once, in order, through the outage')
  const fromNew = again.got.map((m) => Number(m.slice(1)))
  assert.deepEqual(fromNew, fromNew.slice().sort((x, y) => x - y), 'in order on the restarted worker')
  assert.equal(new Set(fromNew).size, fromNew.length, 'once each on the restarted worker')

  // Each survivor logged the outage once, and its end with what was dropped meanwhile.
  const log = node.stderr().slice(before).split('\n')
  assert.equal(log.filter((l) => l.includes('"msg":"local bus to a worker lost') && l.includes(`"to":${index}`)).length, 2)
  assert.ok(log.some((l) => l.includes('"msg":"local bus to a worker is back"') && l.includes(`"to":${index}`)))
  assert.ok(await copies(node, 'dropped', 'local') > 0, 'copies for the dead worker were dropped and counted')
})

test('--workers 2, the other worker hung (SIGSTOP): publishers wait for it at most about 1 s, then copies for it are dropped, counted and logged once; it gets messages again once it runs', async (t) => {
  const defer = lifo(t)
  const redis = await startRedis()
  defer(() => redis.stop())
  const node = await spawnNode([...ARGS, '--workers', '2', '--redis', redis.url, '--node-name', 'n1'], { dataDir: await adminDir() })
  defer(async () => { await node.stop('SIGTERM'); rmSync(busDir(node), { recursive: true, force: true }) })
  const pids = workerPids(node.stderr())
  defer(() => { for (const pid of pids.values()) { if (alive(pid)) { process.kill(pid, 'SIGCONT'); process.kill(pid, 'SIGKILL') } } })
  const url = `mqtt://127.0.0.1:${node.ports.mqtt}`
  const place = await Placement.open(url, 2)
  defer(() => place.admin.end(true))
  const near = await place.place(() => connect(url, { clientId: 'near' }))
  let far: { client: MqttClient, where: string } | null = null
  for (let i = 0; i < 6 && far === null; i++) {
    const p = await place.place(() => connect(url, { clientId: `far-${i}` }))
    if (p.where !== near.where) far = p
    else place.end(p.client)
  }
  assert.ok(far !== null, 'a client on the other worker')
  const farClient = far.client
  defer(() => { near.client.end(true); farClient.end(true) })
  const gotNear: string[] = []
  const gotFar: string[] = []
  near.client.on('message', (_topic, payload) => { gotNear.push(payload.toString().slice(0, 12)) })
  farClient.on('message', (_topic, payload) => { gotFar.push(payload.toString().slice(0, 12)) })
  await near.client.subscribeAsync('room/#', { qos: 1 })
  await farClient.subscribeAsync('room/#', { qos: 1 })
  await near.client.publishAsync('room/x', 'before', { qos: 1 })
  await until('both workers deliver', () => gotNear.includes('before') && gotFar.includes('before'))

  // 3 MB for the hung worker: more than the 1 MiB a sibling may have waiting.
  const hung = pids.get(Number(far.where.split('/')[1])) as number
  const before = node.stderr().length
  process.kill(hung, 'SIGSTOP')
  const n = 1500
  const body = 'x'.repeat(2000)
  const t0 = Date.now()
  await Promise.all(Array.from({ length: n }, (_, i) => near.client.publishAsync('room/x', `hung ${i} ${body}`, { qos: 1 })))
  const took = Date.now() - t0
  assert.ok(took < 5000, `${n} publishes took ${took} ms with a worker hung (publishers are released after 1 s)`)
  await until('the near worker delivers to its own client meanwhile', () => gotNear.length === n + 1)
  await until('the outage logged', () => node.stderr().slice(before).includes('"msg":"a worker does not take messages on the local bus'))
  assert.ok(await copies(node, 'dropped', 'local') > 0, 'copies for the hung worker were dropped and counted')

  process.kill(hung, 'SIGCONT')
  const deadline = Date.now() + 15_000
  for (let i = 0; !gotFar.some((m) => m.startsWith('after')); i++) {
    if (Date.now() > deadline) assert.fail('nothing reached the worker after it ran again')
    await near.client.publishAsync('room/x', `after ${i}`, { qos: 1 })
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  await until('the end of the outage logged', () => node.stderr().slice(before).includes('"msg":"a worker takes messages on the local bus again"'))
  assert.equal(node.stderr().slice(before).split('\n').filter((l) => l.includes('"msg":"a worker does not take messages on the local bus')).length, 1, 'logged once')
})
