// `warbler start --workers N`: one ready line from the primary, chat across
// workers with one message service (worker 0), per-worker $SYS, /readyz and
// aggregated /metrics on the primary's HTTP port, a dead worker restarted
// (the service's too), SIGTERM stops everything with exit code 0.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { test } from 'node:test'
import type { MqttClient } from 'mqtt'
import { ChatClient } from '../helpers/chat-client.js'
import { assertAllArrived, type Outcome, recorded, sleep, track, within } from '../sdk/support.js'
import { startRedis } from '../helpers/redis.js'
import { addUser, CLI, connect, spawnNode, tempDir } from '../helpers/test-node.js'
import { alive, workerPids } from '../helpers/cluster-procs.js'

type Defer = (fn: () => unknown) => void
function stack (t: { after: (fn: () => Promise<void>) => void }): Defer {
  const fns: Array<() => unknown> = []
  t.after(async () => { for (const fn of fns.reverse()) await fn() })
  return (fn) => { fns.push(fn) }
}

async function until (what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

test('--workers 2 without --redis is a config error naming the field', async () => {
  const child = spawn(process.execPath, [CLI, 'start', '--workers', '2', '--data-dir', tempDir(), '--mqtt-port', '0', '--ws-port', '0', '--http-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stderr.on('data', (d: Buffer) => { err += d.toString() })
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  assert.equal(code, 2)
  assert.match(err, /invalid setting workers: 2 workers need redis/)
})

// eslint-disable-next-line max-lines-per-function -- one scenario, its steps read in order top to bottom
test('a 2-worker node: one ready line, chat across workers with one seq authority, $SYS per worker, /metrics summed, dead workers restarted, SIGTERM exits 0', async (t) => {
  const defer = stack(t)
  const redis = await startRedis()
  defer(() => redis.stop())
  const dataDir = tempDir()
  for (const u of [{ name: 'alice', password: 'alice-pw-1' }, { name: 'bob', password: 'bob-pw-12' }, { name: 'root', password: 'root-pw-12', admin: true }]) await addUser(dataDir, u)
  const node = await spawnNode(['--workers', '2', '--redis', redis.url, '--host', '127.0.0.1', '--node-name', 'n1', '--sys-interval', '1'], { dataDir })
  defer(() => node.stop('SIGKILL'))
  const pids = workerPids(node.stderr())
  defer(() => { for (const pid of pids.values()) if (alive(pid)) process.kill(pid, 'SIGKILL') })

  // Exactly one line on stdout, from the primary, once every worker listens.
  assert.deepEqual(node.stdout().trim().split('\n').length, 1)
  assert.deepEqual(Object.keys(node.ports), ['mqtt', 'ws', 'http'])
  assert.equal(pids.size, 2)
  const http = `http://127.0.0.1:${node.ports.http}`
  assert.equal((await fetch(`${http}/readyz`)).status, 200)
  const url = `mqtt://127.0.0.1:${node.ports.mqtt}`

  // Connections are handed to the workers in turn: with 4 chat devices and an
  // admin, both workers hold clients; each publishes its own $SYS subtree.
  const admin: MqttClient = await connect(url, { username: 'root', password: 'root-pw-12', clientId: 'root-sys' })
  defer(() => admin.end(true))
  const perWorker = new Map<string, number>()
  admin.on('message', (topic, payload) => {
    const m = /^\$SYS\/broker\/node\/n1\/(\d+)\/clients\/connected$/.exec(topic)
    if (m !== null) perWorker.set(m[1] as string, Number(payload.toString()))
  })
  await admin.subscribeAsync('$SYS/broker/#')
  const clients: ChatClient[] = []
  defer(async () => { for (const c of clients) await c.close().catch(() => {}) })
  const a1 = await ChatClient.connect(url, 'alice', 'alice-pw-1', { device: 'a1' })
  const b1 = await ChatClient.connect(url, 'bob', 'bob-pw-12', { device: 'b1' })
  const a2 = await ChatClient.connect(url, 'alice', 'alice-pw-1', { device: 'a2' })
  const b2 = await ChatClient.connect(url, 'bob', 'bob-pw-12', { device: 'b2' })
  clients.push(a1, b1, a2, b2)
  await until('both workers report their clients on $SYS', () => (perWorker.get('0') ?? 0) > 0 && (perWorker.get('1') ?? 0) > 0 && (perWorker.get('0') ?? 0) + (perWorker.get('1') ?? 0) === 5)

  // Sends from devices on both workers: one service numbers them, every device of both users gets each once.
  const acks = []
  for (let i = 0; i < 6; i++) acks.push(await (i % 2 === 0 ? a1 : a2).sendOk({ to: 'bob' }, { text: `m${i}` }))
  assert.deepEqual(acks.map((a) => a.seq), [1, 2, 3, 4, 5, 6])
  for (const c of [a1, a2, b1, b2]) {
    await c.until(() => c.messages.length >= 6, 5000, 'six messages')
    assert.deepEqual(c.messages.map((m) => m.seq), [1, 2, 3, 4, 5, 6], `${c.clientId} gets each message once, in order`)
  }

  // /metrics on the primary: the workers' figures summed, plus the primary's own.
  const metrics = await (await fetch(`${http}/metrics`)).text()
  assert.match(metrics, /^warbler_clients_connected 5$/m)
  assert.match(metrics, /^warbler_cluster_workers 2$/m)
  assert.match(metrics, /^warbler_cluster_workers_ready 2$/m)
  assert.match(metrics, /^warbler_cluster_worker_restarts_total 0$/m)
  // The message service's admin API is forwarded to worker 0 (it wants an admin token).
  assert.equal((await fetch(`${http}/api/v1/users/alice/unread`)).status, 401)

  // Kill worker 1: it is restarted and logged; its clients reconnect to a worker and chat goes on.
  const restarted = async (index: number): Promise<void> => {
    const pid = pids.get(index) as number
    const before = node.stderr().length
    process.kill(pid, 'SIGKILL')
    await until(`worker ${index} restarted`, () => {
      const now = workerPids(node.stderr()).get(index)
      return now !== undefined && now !== pid && node.stderr().slice(before).includes('"msg":"worker ready"')
    })
    assert.match(node.stderr().slice(before), new RegExp(`"msg":"worker exited; restarting it","worker":${index},"pid":${pid},"code":null,"signal":"SIGKILL"`))
    pids.set(index, workerPids(node.stderr()).get(index) as number)
  }
  await restarted(1)
  const a3 = await ChatClient.connect(url, 'alice', 'alice-pw-1', { device: 'a3' })
  clients.push(a3)
  const ack7 = await a3.sendOk({ to: 'bob' }, { text: 'after worker 1' })
  assert.equal(ack7.seq, 7)

  // Kill worker 0, the message service, while SDK devices on both workers keep
  // sending: sends on their way to it are lost with it, unacknowledged, and the
  // SDK sends them again (no answer within requestTimeout, or reconnect). Every
  // send is acknowledged, and bob gets each once, in order.
  const senders = [0, 1, 2].map((i) => recorded({ url, username: 'alice', password: 'alice-pw-1', device: `sdk${i}` }))
  const bob = recorded({ url, username: 'bob', password: 'bob-pw-12', device: 'sdk' })
  for (const r of [...senders, bob]) {
    await r.client.connect()
    defer(() => r.client.close())
  }
  const outcomes: Outcome[] = []
  let sending = true
  const loops = senders.map(async (r, i) => {
    for (let n = 0; n < 200 && sending; n++) {
      await track(r.client, { to: 'bob' }, `sdk${i} ${n}`, outcomes)
      await sleep(10)
    }
  })
  await until('sends before the kill', () => outcomes.length >= 15)
  await restarted(0)
  const at = outcomes.length
  await until('sends after the restart', () => outcomes.length >= at + 30, 15_000)
  sending = false
  await within(Promise.all(loops), 15_000, () => `every send acknowledged (${outcomes.length} so far)`)
  assert.deepEqual(outcomes.filter((o) => !o.ok), [], 'no send failed')
  const last = Math.max(...outcomes.map((o) => o.ok ? o.ack.seq : 0))
  await until('bob has every message', () => bob.messages.some((m) => m.seq === last), 10_000)
  assertAllArrived(outcomes, bob.messages, 'bob')
  const conv = (outcomes[0] as { ack: { conv: string } }).ack.conv
  const seqs = bob.messages.filter((m) => m.conv === conv).map((m) => m.seq)
  assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => (seqs[0] as number) + i), 'bob sees each seq once, in order, with no gap')
  assert.match(await (await fetch(`${http}/metrics`)).text(), /^warbler_cluster_worker_restarts_total 2$/m)
  assert.equal((await fetch(`${http}/readyz`)).status, 200)

  // SIGTERM to the primary: every worker stops, exit code 0.
  assert.equal(await node.stop('SIGTERM'), 0)
  for (const pid of pids.values()) assert.equal(alive(pid), false, `worker ${pid} is gone`)
})
