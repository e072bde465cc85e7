// `warbler start --workers 2 --redis URL --service-process on`: the message
// service in a process of its own (worker 0), on the local bus with the two
// connection workers and listening on no client port. Chat, presence, the
// forwarded admin API, /readyz, /metrics and $SYS go on as with the service
// in worker 0; the service process killed is restarted and chat goes on;
// bad settings are refused naming the field.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { test } from 'node:test'
import type { MqttClient } from 'mqtt'
import { ChatClient } from '../helpers/chat-client.js'
import { startRedis } from '../helpers/redis.js'
import { addUser, CLI, connect, spawnNode, tempDir } from '../helpers/test-node.js'
import { alive, killWorkerAndWait, workerPids } from '../helpers/cluster-procs.js'

async function until (what: string, check: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

async function refused (args: string[]): Promise<{ code: number | null, err: string }> {
  const child = spawn(process.execPath, [CLI, 'start', '--data-dir', tempDir(), '--mqtt-port', '0', '--ws-port', '0', '--http-port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let err = ''
  child.stderr.on('data', (d: Buffer) => { err += d.toString() })
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  return { code, err }
}

test('--service-process: a value not in auto|on|off, on without redis, on with bridge off are config errors naming the field', async () => {
  const bad = await refused(['--service-process', 'maybe'])
  assert.equal(bad.code, 2)
  assert.match(bad.err, /invalid setting serviceProcess/)
  const noRedis = await refused(['--service-process', 'on'])
  assert.equal(noRedis.code, 2)
  assert.match(noRedis.err, /invalid setting serviceProcess: on needs redis/)
  const bridgeOff = await refused(['--service-process', 'on', '--bridge', 'off', '--redis', 'redis://127.0.0.1:1'])
  assert.equal(bridgeOff.code, 2)
  assert.match(bridgeOff.err, /invalid setting serviceProcess: on needs bridge embedded \(it is off\)/)
})

test('the service in its own process: no client lands on it, chat and presence across both connection workers, admin API, /readyz, /metrics, restarted after SIGKILL', async (t) => {
  const ends: Array<() => unknown> = []
  t.after(async () => { for (const fn of ends.reverse()) await fn() })
  const redis = await startRedis()
  ends.push(() => redis.stop())
  const dataDir = tempDir()
  for (const u of [{ name: 'alice', password: 'alice-pw-1' }, { name: 'bob', password: 'bob-pw-12' }, { name: 'root', password: 'root-pw-12', admin: true }]) await addUser(dataDir, u)
  const node = await spawnNode(['--workers', '2', '--redis', redis.url, '--service-process', 'on', '--host', '127.0.0.1', '--node-name', 'n1', '--sys-interval', '1'], { dataDir })
  ends.push(() => node.stop('SIGKILL'))
  const pids = workerPids(node.stderr())
  ends.push(() => { for (const pid of pids.values()) if (alive(pid)) process.kill(pid, 'SIGKILL') })
  assert.deepEqual([...pids.keys()].sort(), [0, 1, 2], 'the service process and two connection workers')
  await until('the started line, with the shape', () => /"msg":"started".*"workers":2,"serviceProcess":"on"/.test(node.stderr()))
  const url = `mqtt://127.0.0.1:${node.ports.mqtt}`
  const http = `http://127.0.0.1:${node.ports.http}`
  assert.equal((await fetch(`${http}/readyz`)).status, 200)

  const admin: MqttClient = await connect(url, { username: 'root', password: 'root-pw-12', clientId: 'root-sys' })
  ends.push(() => admin.end(true))
  const perWorker = new Map<string, number>()
  admin.on('message', (topic, payload) => {
    const m = /^\$SYS\/broker\/node\/n1\/(\d+)\/clients\/connected$/.exec(topic)
    if (m !== null) perWorker.set(m[1] as string, Number(payload.toString()))
  })
  await admin.subscribeAsync('$SYS/broker/node/n1/+/clients/connected')
  const clients: ChatClient[] = []
  ends.push(async () => { for (const c of clients) await c.close().catch(() => {}) })
  for (const [user, pw, device] of [['alice', 'alice-pw-1', 'a1'], ['bob', 'bob-pw-12', 'b1'], ['alice', 'alice-pw-1', 'a2'], ['bob', 'bob-pw-12', 'b2']] as const) {
    clients.push(await ChatClient.connect(url, user, pw, { device, feed: device.endsWith('1') }))
  }
  const [a1, b1, a2, b2] = clients as [ChatClient, ChatClient, ChatClient, ChatClient]
  const sum = (): number => [...perWorker.values()].reduce((x, y) => x + y, 0)
  await until('every worker reports its clients on $SYS', () => perWorker.size === 3 && sum() === 5)
  assert.equal(perWorker.get('0'), 0, 'no client lands on the service process')
  assert.ok((perWorker.get('1') ?? 0) > 0 && (perWorker.get('2') ?? 0) > 0, 'both connection workers hold clients')

  // Chat from both workers, one numbering; every device (feed or inbox) gets each message once, in order.
  const acks = []
  for (let i = 0; i < 6; i++) acks.push(await (i % 2 === 0 ? a1 : a2).sendOk({ to: 'bob' }, { text: `m${i}` }))
  assert.deepEqual(acks.map((a) => a.seq), [1, 2, 3, 4, 5, 6])
  for (const c of clients) {
    await c.until(() => c.messages.length >= 6, 5000, 'six messages')
    assert.deepEqual(c.messages.map((m) => m.seq), [1, 2, 3, 4, 5, 6], `${c.clientId} gets each message once, in order`)
  }
  // Presence from the connection workers' notices.
  assert.equal((await b1.req<{ users: Array<{ online: boolean }> }>('presence', { users: ['alice'] })).users[0]?.online, true)

  const metrics = await (await fetch(`${http}/metrics`)).text()
  assert.match(metrics, /^warbler_clients_connected 5$/m)
  assert.match(metrics, /^warbler_cluster_workers 2$/m)
  assert.match(metrics, /^warbler_cluster_workers_ready 2$/m)
  assert.match(metrics, /^warbler_cluster_service_process 1$/m)
  assert.match(metrics, /^warbler_messages_stored_total 6$/m)
  // The admin API is forwarded to the service process (it wants an admin token).
  assert.equal((await fetch(`${http}/api/v1/users/alice/unread`)).status, 401)

  // The service process killed: restarted; sends go on, numbered after the others.
  pids.set(0, await killWorkerAndWait(() => node.stderr(), 0))
  const ack = await a1.sendOk({ to: 'bob' }, { text: 'after the restart' })
  assert.equal(ack.seq, 7)
  await b2.until(() => b2.messages.some((m) => m.seq === 7), 5000, 'the message after the restart')
  await b1.until(() => b1.messages.some((m) => m.seq === 7), 5000, 'the message after the restart')
  assert.equal((await fetch(`${http}/readyz`)).status, 200)

  assert.equal(await node.stop('SIGTERM'), 0)
  for (const pid of pids.values()) assert.equal(alive(pid), false, `worker ${pid} is gone`)
})
