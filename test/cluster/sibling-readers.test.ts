// `warbler start --workers 2 --redis`: the message service (worker 0) learns
// from worker 1 which of its delivery topics worker 1's clients read
// (broker/sibling-readers.ts), publishes only there and sends worker 1 only
// what its clients read: a feed-only reader on worker 1 gets every message,
// also one committed right after its SUBACK, no delivery reaches worker 1
// for a topic nobody reads there, and after worker 0 is killed and restarted
// it rebuilds the set from worker 1 (whose client never subscribed again).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { MqttClient } from 'mqtt'
import { ChatClient } from '../helpers/chat-client.js'
import { startRedis } from '../helpers/redis.js'
import { addUser, connect, spawnNode, tempDir } from '../helpers/test-node.js'
import { alive, killWorkerAndWait, workerPids } from '../helpers/cluster-procs.js'

async function until (what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

test('worker 1 tells the service which topics its clients read: feed-only readers get every frame, also right after SUBACK; nothing unread crosses; the set is rebuilt after worker 0 restarts', async (t) => {
  const ends: Array<() => unknown> = []
  t.after(async () => { for (const fn of ends.reverse()) await fn() })
  const redis = await startRedis()
  ends.push(() => redis.stop())
  const dataDir = tempDir()
  for (const u of [{ name: 'alice', password: 'alice-pw-1' }, { name: 'bob', password: 'bob-pw-12' }, { name: 'root', password: 'root-pw-12', admin: true }]) await addUser(dataDir, u)
  const node = await spawnNode(['--workers', '2', '--redis', redis.url, '--host', '127.0.0.1', '--node-name', 'n1', '--sys-interval', '1'], { dataDir })
  ends.push(() => node.stop('SIGKILL'))
  const pids = workerPids(node.stderr())
  ends.push(() => { for (const pid of pids.values()) if (alive(pid)) process.kill(pid, 'SIGKILL') })
  const url = `mqtt://127.0.0.1:${node.ports.mqtt}`
  const http = `http://127.0.0.1:${node.ports.http}`
  const unread = async (): Promise<number> => {
    const m = /^warbler_routing_unread_deliveries_total (\d+)$/m.exec(await (await fetch(`${http}/metrics`)).text())
    assert.ok(m !== null, 'the node reports warbler_routing_unread_deliveries_total')
    return Number(m[1])
  }

  // Where each connection lands, from each worker's $SYS count of its clients.
  const admin: MqttClient = await connect(url, { username: 'root', password: 'root-pw-12', clientId: 'root-sys' })
  ends.push(() => admin.end(true))
  const perWorker = new Map<string, number>()
  admin.on('message', (topic, payload) => {
    const m = /^\$SYS\/broker\/node\/n1\/(\d+)\/clients\/connected$/.exec(topic)
    if (m !== null) perWorker.set(m[1] as string, Number(payload.toString()))
    const u = /^\$SYS\/broker\/node\/n1\/(\d+)\/warbler\/routing\/local\/unread$/.exec(topic)
    if (u !== null) unreadSys.set(u[1] as string, Number(payload.toString()))
  })
  const unreadSys = new Map<string, number>()
  await admin.subscribeAsync(['$SYS/broker/node/n1/+/clients/connected', '$SYS/broker/node/n1/+/warbler/routing/local/unread'])
  const total = (): number => (perWorker.get('0') ?? 0) + (perWorker.get('1') ?? 0)
  let expected = 1
  const clients: ChatClient[] = []
  ends.push(async () => { for (const c of clients) await c.close().catch(() => {}) })
  /** Connect a feed reader; resolves with it and the worker it is on. */
  const place = async (user: string, password: string, device: string): Promise<{ c: ChatClient, worker: number }> => {
    await until('$SYS counts settled', () => total() === expected)
    const before = new Map(perWorker)
    const c = await ChatClient.connect(url, user, password, { device, feed: true })
    clients.push(c)
    expected++
    await until(`$SYS counts ${device}`, () => total() === expected)
    const worker = [...perWorker.entries()].find(([w, n]) => n > (before.get(w) ?? 0))?.[0]
    return { c, worker: Number(worker) }
  }
  await until('both workers report on $SYS', () => perWorker.has('0') && perWorker.has('1'))
  let bob: ChatClient | null = null
  for (let i = 0; bob === null; i++) {
    assert.ok(i < 6, 'a connection lands on worker 1')
    const p = await place('bob', 'bob-pw-12', `b${i}`)
    // One on worker 0 stays: it reads bob's feed there, which worker 1 does not need to hear of.
    if (p.worker === 1) bob = p.c
  }
  let alice = (await place('alice', 'alice-pw-1', 'a0')).c

  // Every message reaches bob's feed on worker 1; no delivery crosses to worker 1 for a topic nobody reads there.
  const u0 = await unread()
  const sent: string[] = []
  for (let i = 0; i < 30; i++) sent.push((await alice.sendOk({ to: 'bob' }, { text: `m${i}` })).id)
  const b = bob
  await b.until(() => sent.every((id) => b.messages.some((m) => m.id === id)), 10_000, 'thirty messages on the feed')
  assert.equal(b.publishes.get('wb/u/bob/inbox'), undefined)
  assert.equal(await unread(), u0, 'no delivery came to worker 1 for a topic its clients do not read')

  // Subscribed again: a message committed as soon as the SUBACK is in arrives.
  for (let i = 0; i < 10; i++) {
    await b.mqtt.unsubscribeAsync('wb/u/bob/feed')
    await b.mqtt.subscribeAsync('wb/u/bob/feed', { qos: 1 })
    const ack = await alice.sendOk({ to: 'bob' }, { text: `after suback ${i}` })
    await b.until(() => b.messages.some((m) => m.id === ack.id), 5000, `message ${i} after its SUBACK`)
  }
  assert.equal(await unread(), u0)

  // Kill worker 0 (the service): restarted, it learns again what worker 1's clients read; bob does not subscribe again.
  pids.set(0, await killWorkerAndWait(() => node.stderr(), 0))
  await alice.close()
  alice = await ChatClient.connect(url, 'alice', 'alice-pw-1', { device: 'a1', feed: true })
  clients.push(alice)
  const a = alice
  const u1 = await unread()
  const after: string[] = []
  for (let i = 0; i < 20; i++) after.push((await a.sendOk({ to: 'bob' }, { text: `after restart ${i}` })).id)
  await b.until(() => after.every((id) => b.messages.some((m) => m.id === id)), 10_000, 'twenty messages after the restart')
  assert.equal(await unread(), u1, 'the restarted service worker knows again what worker 1 reads')
  // The same figure per worker on $SYS.
  await until('worker 1 reports its unread deliveries on $SYS', () => unreadSys.has('1'))
  assert.ok(Number.isInteger(unreadSys.get('1')))
  assert.doesNotMatch(node.stderr(), /did not confirm a subscription in time/)
  assert.equal(await node.stop('SIGTERM'), 0)
})
