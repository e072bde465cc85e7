/**
 * The message service as its own process: a broker started with
 * `--bridge off` and `warbler bridge` spawned from the real CLI, logging in
 * as a service account. The whole chat contract runs against it, plus what
 * only this arrangement has: sends queued while the bridge is away, and the
 * refusals to start (wrong account, a broker that runs its embedded service,
 * a second bridge on the same data dir, a bad password), and an SDK device
 * whose sends are lost on their way to the service.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import type { AckFrame, MessageFrame } from '../../sdk/src/protocol.js'
import { ChatClient } from '../helpers/chat-client.js'
import { CLI, startNode, tempDir, type TestNode, type UserSpec } from '../helpers/test-node.js'
import { Database } from '../../shared/sqlite.js'
import { DB_FILE } from '../../shared/data-dir.js'
import { recorded, until, within } from '../sdk/support.js'
import { answersContract } from './contract-answers.js'
import { chatContract, type Start } from './contract.js'
import { mqtt5Contract } from './contract-mqtt5.js'

const BRIDGE_PW = 'bridge-password-123'
const PW = 'password-123'

interface BridgeProcess {
  child: ChildProcess
  stderr: () => string
  /** SIGTERM (or `signal`), then the exit code. */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>
}

function spawnBridgeProcess (mqttUrl: string, dataDir: string, opts: { username?: string, password?: string, args?: string[] } = {}): { child: ChildProcess, out: () => string, err: () => string, exited: Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, 'bridge', '--mqtt', mqttUrl, '--username', opts.username ?? 'bridge', '--data-dir', dataDir, ...(opts.args ?? [])], {
    env: { ...process.env, WARBLER_BRIDGE_PASSWORD: opts.password ?? BRIDGE_PW },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  let err = ''
  child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { err += d.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { child, out: () => out, err: () => err, exited }
}

/** Spawn `warbler bridge` and wait for its ready line. */
async function startBridge (mqttUrl: string, dataDir: string, opts: { args?: string[] } = {}): Promise<BridgeProcess> {
  const p = spawnBridgeProcess(mqttUrl, dataDir, opts)
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line from warbler bridge; stderr:\n${p.err()}`)), 15000)
    p.child.stdout?.on('data', () => {
      if (/^warbler bridge ready \{.*\}$/m.test(p.out())) { clearTimeout(timer); resolve() }
    })
    void p.exited.then((code) => { clearTimeout(timer); reject(new Error(`warbler bridge exited with ${String(code)} before ready; stderr:\n${p.err()}`)) })
  })
  return {
    child: p.child,
    stderr: p.err,
    stop: async (signal = 'SIGTERM') => {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill(signal)
      return await p.exited
    }
  }
}

/** Run `warbler bridge` expecting it to refuse: its exit code and stderr. */
async function refusedBridge (mqttUrl: string, dataDir: string, opts: { username?: string, password?: string } = {}): Promise<{ code: number | null, stderr: string, stdout: string }> {
  const p = spawnBridgeProcess(mqttUrl, dataDir, opts)
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 15000)
  const code = await p.exited
  clearTimeout(timer)
  return { code, stderr: p.err(), stdout: p.out() }
}

/** Cleanups run last-in, first-out after the test. */
function cleanups (t: { after: (fn: () => Promise<void>) => void }): (fn: () => Promise<unknown>) => void {
  const stack: Array<() => Promise<unknown>> = []
  t.after(async () => { for (const fn of stack.reverse()) await fn() })
  return (fn) => { stack.push(fn) }
}

const bridgeUser: UserSpec = { name: 'bridge', password: BRIDGE_PW, service: true }

/** A broker with --bridge off in a temp dir, and `warbler bridge` on the same data dir. */
async function separate (users: UserSpec[], extra: string[] = []): Promise<{ node: TestNode, bridge: BridgeProcess, restart: () => Promise<void>, close: () => Promise<void> }> {
  const dataDir = tempDir()
  const node = await startNode(['--bridge', 'off', '--publish-rate', '0', ...extra], { dataDir, users: [...users, bridgeUser] })
  const state = { bridge: await startBridge(node.mqttUrl, dataDir).catch(async (err: unknown) => { await node.close(); throw err }) }
  return {
    node,
    get bridge () { return state.bridge },
    restart: async () => { state.bridge = await startBridge(node.mqttUrl, dataDir) },
    close: async () => {
      const code = await state.bridge.stop()
      await node.close()
      rmSync(dataDir, { recursive: true, force: true })
      assert.equal(code, 0, `warbler bridge exits 0 on SIGTERM; stderr:\n${state.bridge.stderr()}`)
    }
  }
}

const start: Start = async (users) => {
  const s = await separate(users)
  // `warbler bridge` logs to its stderr, one JSON object a line.
  return { mqttUrl: s.node.mqttUrl, dataDir: s.node.dataDir, logLines: () => s.bridge.stderr().split('\n').filter((l) => l !== ''), close: s.close }
}

chatContract('standalone', start)
answersContract('standalone', start)
mqtt5Contract('standalone', start)

const people = ['alice', 'bob'].map((name) => ({ name, password: PW }))

/** `separate(people)`, closed after the test, and chat clients on its broker that are closed before it. */
async function withPeople (t: { after: (fn: () => Promise<void>) => void }): Promise<{ s: Awaited<ReturnType<typeof separate>>, connect: (user: string, opts?: { device?: string }) => Promise<ChatClient> }> {
  const s = await separate(people)
  const clients: ChatClient[] = []
  t.after(async () => {
    for (const c of clients) await c.close().catch(() => {})
    await s.close()
  })
  return {
    s,
    connect: async (user, opts = {}) => {
      const c = await ChatClient.connect(s.node.mqttUrl, user, PW, opts)
      clients.push(c)
      return c
    }
  }
}

test('standalone: what users send while the bridge is stopped is handled, once, when it is back', async (t) => {
  const { s, connect } = await withPeople(t)
  const alice = await connect('alice')
  const bob = await connect('bob')
  await alice.sendOk({ to: 'bob' }, 'before')
  assert.equal(await s.bridge.stop(), 0)
  assert.ok(!existsSync(path.join(s.node.dataDir, 'warbler-service.pid')), 'the pid file is removed at exit')
  // The broker keeps the service's persistent session and queues these for it.
  for (let i = 1; i <= 5; i++) await alice.publishRaw(JSON.stringify({ t: 'msg', cid: `away-${i}`, to: 'bob', body: `away ${i}` }))
  await alice.publishRaw(JSON.stringify({ t: 'msg', cid: 'away-1', to: 'bob', body: 'away 1' })) // a retry
  await new Promise((resolve) => setTimeout(resolve, 100))
  assert.equal(alice.frames.filter((f) => f.frame.t === 'ack').length, 1, 'nothing is acknowledged while no service runs')
  await s.restart()
  const acks = await alice.until(() => {
    const a = alice.frames.filter((f) => f.frame.t === 'ack').map((f) => f.frame as AckFrame)
    return a.length >= 7 ? a : undefined
  }, 5000, 'acks of the queued sends')
  assert.deepEqual(acks.slice(1).map((a) => [a.cid, a.seq]), [['away-1', 2], ['away-2', 3], ['away-3', 4], ['away-4', 5], ['away-5', 6], ['away-1', 2]])
  const got = await bob.until(() => bob.messages.length >= 6 ? bob.messages : undefined)
  assert.deepEqual(got.map((m: MessageFrame) => m.body), ['before', 'away 1', 'away 2', 'away 3', 'away 4', 'away 5'])
  const hist = await bob.req('history', { conv: 'd:alice:bob' })
  assert.deepEqual(hist.messages.map((m: MessageFrame) => m.seq), [1, 2, 3, 4, 5, 6])
})

test('standalone: a bridge started while users are connected knows they are online; one that stops counting them right', async (t) => {
  const { s, connect } = await withPeople(t)
  const alice = await connect('alice')
  const bob = await connect('bob', { device: 'phone' })
  await alice.sendOk({ to: 'bob' }, 'hi')
  assert.equal(await s.bridge.stop(), 0)
  // Bob's second device connects while no service runs: nobody hears its notice.
  const tablet = await connect('bob', { device: 'tablet' })
  await s.restart()
  // The new bridge asked the broker for its connected clients at start.
  const online = async (): Promise<boolean> => (await alice.req<{ users: Array<{ online: boolean }> }>('presence', { users: ['bob'] })).users[0]?.online === true
  let seen = false
  for (let i = 0; i < 50 && !seen; i++) { seen = await online(); if (!seen) await new Promise((resolve) => setTimeout(resolve, 50)) }
  assert.ok(seen, 'bob is online for a bridge that started after his devices connected')
  // Both of his devices count: one leaving keeps him online, the second takes him offline.
  await bob.close()
  await new Promise((resolve) => setTimeout(resolve, 200))
  assert.equal(await online(), true, 'his tablet is still connected')
  await tablet.close()
  let gone = false
  for (let i = 0; i < 50 && !gone; i++) { gone = !await online(); if (!gone) await new Promise((resolve) => setTimeout(resolve, 50)) }
  assert.ok(gone, 'bob is offline once his last device left')
})

test('standalone: the bridge refuses an account that is not a service account, or does not exist, or a wrong password', async (t) => {
  const dataDir = tempDir()
  const defer = cleanups(t)
  const node = await startNode(['--bridge', 'off'], { dataDir, users: [...people, bridgeUser] })
  defer(async () => { await node.close(); rmSync(dataDir, { recursive: true, force: true }) })
  const [notService, missing, badPw] = await Promise.all([
    refusedBridge(node.mqttUrl, dataDir, { username: 'alice', password: PW }),
    refusedBridge(node.mqttUrl, dataDir, { username: 'nobody', password: PW }),
    refusedBridge(node.mqttUrl, dataDir, { password: 'wrong-password' })
  ])
  assert.equal(notService.code, 2)
  assert.match(notService.stderr, /alice is not a service account.*warbler user add NAME --service/)
  assert.equal(missing.code, 2)
  assert.match(missing.stderr, /no user nobody in .*warbler user add nobody --service/)
  assert.equal(badPw.code, 2)
  assert.match(badPw.stderr, /refused the login of bridge/)
  for (const r of [notService, missing, badPw]) assert.equal(r.stdout, '', 'no ready line')
  assert.ok(!existsSync(path.join(dataDir, 'warbler-service.pid')))
  // A broker nobody serves is unchanged: a bridge that is let in serves it.
  const bridge = await startBridge(node.mqttUrl, dataDir)
  const alice = await ChatClient.connect(node.mqttUrl, 'alice', PW)
  defer(async () => assert.equal(await bridge.stop(), 0))
  defer(() => alice.close())
  assert.equal((await alice.sendOk({ to: 'bob' }, 'hi')).seq, 1)
})

test('standalone: the bridge refuses a broker that runs its embedded service, and a second bridge on its data dir', async (t) => {
  // A broker with the embedded service (the default).
  const defer = cleanups(t)
  const embedded = await startNode(['--publish-rate', '0'], { users: [...people, bridgeUser] })
  defer(() => embedded.close())
  const alice = await ChatClient.connect(embedded.mqttUrl, 'alice', PW)
  defer(() => alice.close())
  const r = await refusedBridge(embedded.mqttUrl, embedded.dataDir)
  assert.equal(r.code, 2, r.stderr)
  // The broker refuses the service account's subscriptions while it runs its embedded service.
  assert.match(r.stderr, /refused the subscriptions.*embedded message service.*--bridge off/)
  assert.equal(r.stdout, '')
  // Nothing was handled twice, and the refused bridge left no subscription behind.
  const ack = await alice.sendOk({ to: 'bob' }, 'once')
  assert.equal(ack.seq, 1)
  assert.equal((await alice.req('history', { conv: 'd:alice:bob' })).messages.length, 1)
  assert.equal((await embedded.sys())['$SYS/broker/subscriptions/count'] ?? '0', '0', 'no persistent subscription left by the refused bridge')

  // A second bridge on a data dir a bridge already serves.
  const s = await separate(people)
  defer(() => s.close())
  const second = await refusedBridge(s.node.mqttUrl, s.node.dataDir)
  // The data-dir lock refuses it (exit 3), naming the dir and the pid that holds it.
  assert.equal(second.code, 3, second.stderr)
  assert.match(second.stderr, /in use by the message service.*pid \d+/)
  const bob = await ChatClient.connect(s.node.mqttUrl, 'bob', PW)
  defer(() => bob.close())
  assert.equal((await bob.sendOk({ to: 'alice' }, 'still one service')).seq, 1)
  assert.equal((await bob.req('history', { conv: 'd:alice:bob' })).messages.length, 1)
})

test('standalone: a bad --durability is refused by name before anything starts', async () => {
  const dataDir = tempDir()
  try {
    const p = spawnBridgeProcess('mqtt://127.0.0.1:9', dataDir, { args: ['--durability', 'sometimes'] })
    const timer = setTimeout(() => p.child.kill('SIGKILL'), 15000)
    const code = await p.exited
    clearTimeout(timer)
    assert.equal(code, 2)
    assert.match(p.err(), /--durability must be process or power, got "sometimes"/)
  } finally {
    rmSync(dataDir, { recursive: true, force: true })
  }
})

test('standalone: an SDK device\'s sends lost on their way to the service are archived before the ones it sent after them', async (t) => {
  // A queue bound of 2: of the sends made while the bridge is stopped, the broker
  // acknowledges all, queues two for the service's session and drops the others
  // (offline_queue_full): lost between the device and the service, as with a
  // service killed before it stored what the broker handed it.
  const s = await separate(people, ['--offline-queue', '2'])
  const alice = recorded({ url: s.node.mqttUrl, username: 'alice', password: PW, device: 'phone', requestTimeout: 15_000 })
  t.after(async () => { await alice.client.close(); await s.close() })
  await alice.client.connect()
  await alice.client.send({ to: 'bob' }, 'm0')
  assert.equal(await s.bridge.stop(), 0)
  const refusedBefore = s.node.stats.refusals.offline_queue_full
  const away = [1, 2, 3, 4].map(async (i) => await alice.client.send({ to: 'bob' }, `m${i}`))
  await until(() => s.node.stats.refusals.offline_queue_full >= refusedBefore + 2, 10_000, 'sends dropped past the queue bound')
  await s.restart()
  // Sent at once: the service gets it before the lost ones come again (requestTimeout is 15 s).
  const after = alice.client.send({ to: 'bob' }, 'm5')
  const acks = await within(Promise.all([...away, after]), 10_000, 'the acks, well before requestTimeout')
  assert.deepEqual(acks.map((a) => a.seq), [2, 3, 4, 5, 6])
  const db = await Database.open(path.join(s.node.dataDir, DB_FILE), { readonly: true })
  try {
    const rows = await db.all<{ body: string }>("SELECT body FROM messages WHERE conv = 'd:alice:bob' ORDER BY seq")
    assert.deepEqual(rows.map((r) => JSON.parse(r.body) as string), ['m0', 'm1', 'm2', 'm3', 'm4', 'm5'], 'archived in the order sent')
  } finally {
    await db.close()
  }
  // Sent again by the SDK itself: no failure, no error event.
  assert.deepEqual(alice.statuses.filter((x) => x.status === 'failed'), [])
  assert.deepEqual(alice.errors, [])
})
