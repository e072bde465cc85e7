// Several nodes, each in its own network namespace (its own addresses and
// ports, as separate machines would have), on one Redis, behind a real
// HAProxy in TCP mode with health checks on /readyz. SDK devices chat through
// the balancer; users and tokens changed on one node are in force on another
// within a second; one node (a 2-worker cluster) is killed with SIGKILL; its
// devices reconnect to the other nodes, and no acknowledged message is lost:
// each is in the archive and reached its recipient once, in order.
//
// Needs root, `ip netns` and veth (iproute2), and haproxy. Where the kernel or
// sandbox refuses them the test fails saying so (it does not skip). It uses
// only the 10.213.X.0/24 addresses it puts on the veth pairs it creates, and
// removes the namespaces (and with them the veth pairs) and every process it
// started afterwards, also on failure. It runs twice: the devices and the
// login checks with MQTT 3.1.1, then with MQTT 5.
import assert from 'node:assert/strict'
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { copyFileSync, readdirSync, rmSync } from 'node:fs'
import path from 'node:path'
import { test, type TestContext } from 'node:test'
import { startHaproxy } from '../helpers/haproxy.js'
import { freePort, waitForPort } from '../helpers/ports.js'
import { loginAnswers } from '../helpers/login-poll.js'
import { addUser, CLI, connackCode, tempDir } from '../helpers/test-node.js'
import { assertAllArrived, type Outcome, recorded, type Recorded, sleep, track, until, within } from '../sdk/support.js'
import { alive } from '../helpers/cluster-procs.js'

const PREFIX = 'wbt'
const PW = 'password-123'

function sh (cmd: string, args: string[]): { ok: boolean, out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 })
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error !== undefined ? String(r.error) : ''}`.trim() }
}

function must (cmd: string, args: string[]): void {
  const r = sh(cmd, args)
  if (!r.ok) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.out}`)
}

/** Namespaces left by an earlier run of this test that died (its pid is in the name). */
function removeStale (): void {
  for (const line of sh('ip', ['netns', 'list']).out.split('\n')) {
    const m = new RegExp(`^(${PREFIX}(\\d+)-\\d)\\b`).exec(line)
    if (m !== null && !alive(Number(m[2]))) sh('ip', ['netns', 'del', m[1] as string])
  }
}

interface Ns { name: string, host: string, gateway: string }

/** A namespace joined to this one by a veth pair: 10.213.X.2 inside, 10.213.X.1 here. */
function makeNamespace (i: number, octet: number): Ns {
  const name = `${PREFIX}${process.pid}-${i}`
  const outside = `wb${process.pid % 100000}x${i}`
  const inside = `wb${process.pid % 100000}y${i}`
  const gateway = `10.213.${octet}.1`
  const host = `10.213.${octet}.2`
  must('ip', ['netns', 'add', name])
  must('ip', ['link', 'add', outside, 'type', 'veth', 'peer', 'name', inside])
  must('ip', ['link', 'set', inside, 'netns', name])
  must('ip', ['addr', 'add', `${gateway}/24`, 'dev', outside])
  must('ip', ['link', 'set', outside, 'up'])
  must('ip', ['netns', 'exec', name, 'ip', 'addr', 'add', `${host}/24`, 'dev', inside])
  must('ip', ['netns', 'exec', name, 'ip', 'link', 'set', inside, 'up'])
  must('ip', ['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up'])
  must('ip', ['netns', 'exec', name, 'ip', 'route', 'add', 'default', 'via', gateway])
  return { name, host, gateway }
}

interface Node { ns: Ns, child: ChildProcess, pid: number, out: () => string, err: () => string, exited: Promise<void> }

/** `warbler start` inside a namespace (`ip netns exec` execs node: the pid is the node's). */
async function startNodeIn (ns: Ns, dataDir: string, redisUrl: string, args: string[]): Promise<Node> {
  const child = spawn('ip', ['netns', 'exec', ns.name, process.execPath, CLI, 'start',
    '--host', ns.host, '--mqtt-port', '1883', '--ws-port', '8083', '--http-port', '8080',
    '--data-dir', dataDir, '--redis', redisUrl, '--node-name', ns.name,
    // Every client comes through HAProxy's one address.
    '--conn-rate', '0', '--login-failures', '1000000', '--publish-rate', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { err += d.toString() })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const node: Node = { ns, child, pid: child.pid ?? -1, out: () => out, err: () => err, exited }
  await within(new Promise<void>((resolve, reject) => {
    const check = (): void => { if (/^warbler ready \{.*\}$/m.test(out)) resolve() }
    child.stdout?.on('data', check)
    void exited.then(() => reject(new Error(`node in ${ns.name} exited before ready:\n${err}`)))
  }), 20_000, () => `node in ${ns.name} ready; stderr:\n${err}`)
  return node
}

async function connectedClients (ns: Ns): Promise<number> {
  const text = await (await fetch(`http://${ns.host}:8080/metrics`, { signal: AbortSignal.timeout(2000) })).text()
  return Number(/^warbler_clients_connected (\d+)$/m.exec(text)?.[1] ?? NaN)
}

/** `warbler user|token ...` on a node's data dir (the CLI needs no namespace: it only opens the file); its stdout. */
function warbler (dataDir: string, args: string[], input = ''): string {
  const r = spawnSync(process.execPath, [CLI, ...args, '--data-dir', dataDir], { input, encoding: 'utf8', timeout: 30_000 })
  assert.equal(r.status, 0, `warbler ${args.join(' ')}: exit ${String(r.status)}, stderr: ${r.stderr}`)
  return r.stdout
}

/**
 * Users and tokens are shared through Redis: a user added on A logs in on B,
 * a device token revoked on B is refused on A, and after a password change
 * on B the old password is refused on A, each within a second (measured).
 */
async function sharedIdentity (a: { ns: Ns, dir: string }, b: { ns: Ns, dir: string }, protocolVersion: 4 | 5): Promise<number[]> {
  const at = (x: { ns: Ns }): string => `mqtt://${x.ns.host}:1883`
  // Bad user name or password: CONNACK 4 in MQTT 3.1.1, reason code 0x86 in MQTT 5.
  const refused = protocolVersion === 5 ? 0x86 : 4
  const PW2 = 'password-456'
  warbler(a.dir, ['user', 'add', 'grace', '--password-stdin'], `${PW}\n`)
  const added = await loginAnswers({ url: at(b), username: 'grace', password: PW, protocolVersion }, 0, 1000)
  const created = warbler(a.dir, ['token', 'create', 'grace', '--device', 'sensor'])
  const token = /token: (\S+)/.exec(created)?.[1] as string
  await loginAnswers({ url: at(b), username: 'grace', password: token, protocolVersion }, 0, 1000)
  warbler(b.dir, ['token', 'revoke', /id: (\S+)/.exec(created)?.[1] as string])
  const revoked = await loginAnswers({ url: at(a), username: 'grace', password: token, protocolVersion }, refused, 1000)
  warbler(b.dir, ['user', 'passwd', 'grace', '--password-stdin'], `${PW2}\n`)
  const changed = await loginAnswers({ url: at(a), username: 'grace', password: PW, protocolVersion }, refused, 1000)
  assert.equal(await connackCode(at(a), { username: 'grace', password: PW2, clientId: 'grace', protocolVersion }), 0, 'the new password is good on A')
  const took = [added, revoked, changed]
  for (const ms of took) assert.ok(ms <= 1000, `in force on the other node within a second (${took.join('/')} ms)`)
  return took
}

for (const v of [4, 5] as const) {
  test(`MQTT ${v === 5 ? '5' : '3.1.1'}: three nodes in network namespaces behind HAProxy: a node killed with SIGKILL, its devices reconnect to the others, no acknowledged message is lost`, { timeout: 80_000 }, async (t) => { await threeNodes(t, v) })
}

// eslint-disable-next-line max-lines-per-function -- one scenario, its steps read in order top to bottom
async function threeNodes (t: TestContext, protocolVersion: 4 | 5): Promise<void> {
  const undo: Array<() => unknown> = []
  t.after(async () => {
    for (const fn of undo.reverse()) {
      try { await fn() } catch { /* keep cleaning */ }
    }
  })

  assert.equal(process.getuid?.(), 0, 'this test creates network namespaces and veth pairs: it must run as root')
  for (const bin of ['ip', 'haproxy', 'redis-server']) assert.ok(sh('sh', ['-c', `command -v ${bin}`]).ok, `${bin} is needed (apt-get install iproute2 haproxy redis-server)`)
  removeStale()
  // Can this kernel and sandbox make namespaces and veth pairs at all? Fail clearly if not.
  const probe = `${PREFIX}${process.pid}-0`
  const made = sh('ip', ['netns', 'add', probe])
  if (made.ok) sh('ip', ['netns', 'del', probe])
  assert.ok(made.ok, `network namespaces are refused here (ip netns add: ${made.out}); the multi-node test cannot run in this sandbox`)

  // Three namespaces on 10.213.X.0/24 subnets picked per run.
  const base = 10 + (process.pid % 60) * 4
  const spaces: Ns[] = []
  for (let i = 1; i <= 3; i++) {
    try {
      spaces.push(makeNamespace(i, base + i))
    } catch (err) {
      assert.fail(`could not build namespace ${i} with a veth pair (is veth available?): ${(err as Error).message}`)
    } finally {
      const name = `${PREFIX}${process.pid}-${i}`
      undo.push(() => { sh('ip', ['netns', 'del', name]) })
    }
  }
  const [n1, n2, n3] = spaces as [Ns, Ns, Ns]

  // One Redis, on this side of the veth pairs (bound to loopback and the three
  // gateway addresses only: protected mode, which refuses every non-loopback
  // client without a password, is off).
  const redisDir = tempDir('warbler-netns-redis-')
  undo.push(() => rmSync(redisDir, { recursive: true, force: true }))
  const redisPort = await freePort()
  const redis = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', n1.gateway, n2.gateway, n3.gateway,
    '--protected-mode', 'no', '--dir', redisDir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--daemonize', 'no', '--loglevel', 'warning'], { stdio: 'ignore' })
  undo.push(() => { if (redis.exitCode === null) redis.kill('SIGKILL') })
  await waitForPort(redisPort)

  // The same users in every node's data dir: made once, the database copied (users, hashes, JWT key).
  const users = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank']
  const dirs = [1, 2, 3].map(() => tempDir('warbler-netns-data-'))
  undo.push(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }) })
  for (const name of users) await addUser(dirs[0] as string, { name, password: PW })
  for (const d of dirs.slice(1)) for (const f of readdirSync(dirs[0] as string)) copyFileSync(path.join(dirs[0] as string, f), path.join(d, f))

  // Node 1 runs the message service (the archive is its data dir); nodes 2 and 3 do not.
  // Node 2 is a 2-worker cluster: the one killed.
  const nodes: Node[] = []
  undo.push(async () => {
    for (const n of nodes) {
      for (const m of n.err().matchAll(/"msg":"worker started","worker":\d+,"pid":(\d+)/g)) {
        const pid = Number(m[1])
        if (alive(pid)) process.kill(pid, 'SIGKILL')
      }
      if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill('SIGKILL')
      await n.exited
    }
  })
  const redisAt = (ns: Ns): string => `redis://${ns.gateway}:${redisPort}`
  const started = await Promise.all([
    startNodeIn(n1, dirs[0] as string, redisAt(n1), ['--bridge', 'embedded', '--workers', '1']),
    startNodeIn(n2, dirs[1] as string, redisAt(n2), ['--bridge', 'off', '--workers', '2']),
    startNodeIn(n3, dirs[2] as string, redisAt(n3), ['--bridge', 'off', '--workers', '1'])
  ])
  nodes.push(...started)
  const [node1, node2] = started

  // Users are shared through Redis (node 2, two workers, authenticates on either).
  const took = await sharedIdentity({ ns: n1, dir: dirs[0] as string }, { ns: n2, dir: dirs[1] as string }, protocolVersion)

  // HAProxy in front, TCP mode, checking /readyz on each node's HTTP port.
  const lbPort = await freePort()
  const hap = startHaproxy([
    'global', '  maxconn 2000',
    'defaults', '  mode tcp', '  timeout connect 1s', '  timeout client 60s', '  timeout server 60s', '  retries 3', '  option redispatch',
    'frontend mqtt', `  bind 127.0.0.1:${lbPort}`, '  default_backend nodes',
    'backend nodes', '  balance roundrobin', '  option httpchk', '  http-check send meth GET uri /readyz',
    '  default-server check port 8080 inter 250 fall 2 rise 2',
    ...spaces.map((ns, i) => `  server n${i + 1} ${ns.host}:1883`), ''
  ].join('\n'))
  undo.push(hap.stop)
  await waitForPort(lbPort)
  const url = `mqtt://127.0.0.1:${lbPort}`

  // Six devices through the balancer (round-robin: two per node), each
  // sending to the next user in a ring, every send acknowledged before the next.
  const devices: Recorded[] = users.map((u) => recorded({ url, username: u, password: PW, device: 'lb', waitOnFirstConnect: true, protocolVersion }))
  undo.push(async () => { for (const d of devices) await d.client.close().catch(() => {}) })
  for (const d of devices) await within(d.client.connect(), 10_000, 'connect through HAProxy')
  const perNode = await Promise.all(spaces.map(connectedClients))
  assert.equal(perNode.reduce((a, b) => a + b, 0), 6, `every device is counted by one node (${perNode.join('/')})`)
  assert.ok((perNode[1] as number) > 0, `HAProxy gave node 2 some devices (${perNode.join('/')}; haproxy stderr: ${hap.log()})`)

  const outcomes: Outcome[][] = users.map(() => [])
  let sending = true
  const loops = devices.map(async (d, i) => {
    for (let n = 0; n < 400 && sending; n++) {
      await track(d.client, { to: users[(i + 1) % users.length] as string }, `${users[i] as string} ${n}`, outcomes[i] as Outcome[])
      await sleep(15)
    }
  })
  const total = (): number => outcomes.reduce((s, o) => s + o.length, 0)
  await until(() => total() >= 60, 10_000, 'sends before the kill')

  // SIGKILL node 2 (its primary; node:cluster takes its workers with it).
  process.kill(node2.pid, 'SIGKILL')
  await node2.exited
  const workers = [...node2.err().matchAll(/"msg":"worker started","worker":\d+,"pid":(\d+)/g)].map((m) => Number(m[1]))
  assert.equal(workers.length, 2)
  await until(() => workers.every((pid) => !alive(pid)), 5000, 'node 2\'s workers gone with their primary')
  const atKill = total()

  // Its devices come back through HAProxy to nodes 1 and 3 and keep sending.
  await until(() => total() >= atKill + 120, 30_000, () => `sends after the kill (${total() - atKill} so far)`)
  sending = false
  await within(Promise.all(loops), 20_000, () => `every send acknowledged (${total()})`)
  const reconnected = devices.filter((d) => d.states.includes('reconnecting')).length
  assert.equal(reconnected, perNode[1], 'the devices of node 2, and only they, reconnected')
  const after = await Promise.all([n1, n3].map(connectedClients))
  assert.equal(after[0] as number + (after[1] as number), 6, `all six devices on nodes 1 and 3 (${after.join(', ')})`)

  // No acknowledged message lost: each recipient got every acknowledged message
  // once, in order without a gap, and the archive (node 1) holds each.
  for (let i = 0; i < users.length; i++) {
    const acked = outcomes[i] as Outcome[]
    assert.deepEqual(acked.filter((o) => !o.ok), [], `no send of ${users[i] as string} failed`)
    const to = devices[(i + 1) % users.length] as Recorded
    const last = Math.max(...acked.map((o) => o.ok ? o.ack.seq : 0))
    await until(() => to.messages.some((m) => m.from === users[i] && m.seq === last), 10_000, `${users[(i + 1) % users.length] as string} gets every message of ${users[i] as string}`)
    assertAllArrived(acked, to.messages, users[(i + 1) % users.length] as string)
    const conv = (acked[0] as { ack: { conv: string } }).ack.conv
    const seqs = to.messages.filter((m) => m.conv === conv).map((m) => m.seq)
    assert.deepEqual(seqs, Array.from({ length: last }, (_, k) => k + 1), `${conv}: seq 1..${last}, once each, in order`)
    const archived: number[] = []
    for (let after = 0, pages = 0; pages < 20; pages++) {
      const page = await (devices[i] as Recorded).client.history(conv, { after, limit: 200 })
      archived.push(...page.messages.map((m) => m.seq))
      if (page.messages.length === 0) break
      after = archived[archived.length - 1] as number
    }
    assert.deepEqual(archived, Array.from({ length: last }, (_, k) => k + 1), `${conv}: the archive holds all ${last} messages`)
  }
  assert.match(node1.err(), /"msg":"started"/)
  t.diagnostic(`user added, token revoked, password changed: in force on the other node after ${took.join(', ')} ms`)
  t.diagnostic(`sent ${total()} messages; ${atKill} before the kill; devices per node before: ${perNode.join('/')}, after: ${after.join('/')} (nodes 1 and 3)`)
}
