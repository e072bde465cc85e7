/**
 * The fuzzer: a seeded, reproducible stream of hostile input against a real
 * broker process (`warbler start`, embedded message service, users, no --dev),
 * while a sentinel pair of SDK apps chats through it.
 *
 *   node test/run.mjs fuzz                                  # CI: a few thousand cases
 *   WARBLER_FUZZ_CASES=100000 node test/run.mjs fuzz        # the long run
 *   WARBLER_FUZZ_SEED=1234 node test/run.mjs fuzz           # replay a run
 *   WARBLER_FUZZ_SEED=1234 WARBLER_FUZZ_ONLY=17,342 node test/run.mjs fuzz   # replay some cases
 *   (WARBLER_FUZZ_CONCURRENCY: cases in flight, 24; WARBLER_FUZZ_LOGIN_RATE: see LOGIN_RATE)
 *
 * The seed is printed first. Cases are described in cases.ts: half at the
 * MQTT level (fresh connections, mutated packet streams), half at the
 * application level (envelopes on `wb/u/mallory/out` of authenticated
 * connections). Throughout and at the end:
 * - the sentinels (alice and bob) get every message exactly once, in order,
 *   every send is acknowledged, and neither ever loses its connection;
 * - the broker process keeps serving, and stops cleanly on SIGTERM;
 * - every case's connection is closed: by the server where it must be;
 * - no fuzz connection receives anything outside its own user's topics;
 * - every answer of the message service is a documented one, never
 *   `internal`, and where a case's answer is certain it is that one;
 * - refusals are counted (the refusal metrics grow at least by the cases
 *   that must be refused, and every protocol error the broker reports is
 *   one it counts, or a plain disconnect);
 * - the heap stays bounded and comes back down after a forced GC;
 * - the archive holds the sentinels' messages and nothing else.
 */
import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { classifyClientError } from '../../broker/hooks/create-hooks.js'
import { Database } from '../../shared/sqlite.js'
import { directConversation, ErrorCodes, type ServerFrame } from '../../sdk/src/protocol.js'
import { intFrom, Rng, seedFrom } from '../helpers/rng.js'
import { addUser, spawnNode, type SpawnedNode, tempDir, withStore } from '../helpers/test-node.js'
import { assertAllArrived, assertComplete, type Outcome as SendOutcome, PW, type Recorded, recorded, sleep, track, until, within } from '../sdk/support.js'
import { type AppCase, type FuzzCase, type FuzzContext, makeCase, type MqttCase } from './cases.js'

const SEED = seedFrom('WARBLER_FUZZ_SEED')
const CASES = intFrom('WARBLER_FUZZ_CASES', 5000)
const ONLY = (process.env.WARBLER_FUZZ_ONLY ?? '').split(',').filter((s) => s.trim() !== '').map(Number)
/** Cases in flight at once. */
const CONCURRENCY = intFrom('WARBLER_FUZZ_CONCURRENCY', 24, 1, 1000)
/**
 * CONNECTs per second whose secret the broker may check with scrypt (a
 * mangled token, a password). Each takes tens of ms of libuv's thread pool,
 * which SQLite shares: unpaced, they delay the archive by seconds (a known
 * weakness, pinned by a todo test in regressions.test.ts).
 */
const LOGIN_RATE = intFrom('WARBLER_FUZZ_LOGIN_RATE', 10, 1, 100_000)
/** Authenticated connections the application-level cases publish on. */
const APP_CONNS = 6
const MAX_PAYLOAD = 65_536
const MAX_PACKET = 131_072
/** Stop early after this many failures (each names its case). */
const MAX_FAILURES = 25
/** Sentinel sends, per user, at most; one every SENTINEL_EVERY ms while the fuzzer runs. */
const SENTINEL_MAX = 20_000
const SENTINEL_EVERY = 20
/** Heap bounds (MB): the most ever in use, and what a forced GC at the end may leave above the start. */
const HEAP_PEAK_MB = 400
const HEAP_GROWTH_MB = 64
/** What the broker may report for a client that is not a refusal: a peer that went away, or a keepalive. */
const NOT_A_REFUSAL = /ECONNRESET|EPIPE|ERR_STREAM_|write after end|socket has been ended|keep alive timeout|connection closed|client disconnected/i
/** Logins refused by the authenticator (broker/auth.ts), which counts each with its own reason. */
const COUNTED_AT_LOGIN = /^(a zero-length client id needs clean session|too many connections|too many new connections|a password needs a user name|anonymous access is off|too many failed logins|bad user name or password|client id must be)/

const GC_HOOK = fileURLToPath(new URL('./gc-hook.js', import.meta.url))
const USER = 'mallory'

type Metrics = Map<string, number>

async function scrape (node: SpawnedNode): Promise<Metrics> {
  const text = await (await fetch(`http://127.0.0.1:${node.ports.http ?? 0}/metrics`)).text()
  const m: Metrics = new Map()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const i = line.lastIndexOf(' ')
    m.set(line.slice(0, i), Number(line.slice(i + 1)))
  }
  return m
}
const metric = (m: Metrics, key: string): number => m.get(key) ?? 0
const refusals = (m: Metrics, reason: string): number => metric(m, `warbler_refusals_total{reason="${reason}"}`)
const serviceRefusals = (m: Metrics, code: string): number => metric(m, `warbler_service_refusals_total{code="${code}"}`)
const heapMb = (m: Metrics): number => metric(m, 'warbler_nodejs_heap_size_used_bytes') / 2 ** 20

async function gcHeapMb (node: SpawnedNode): Promise<number> {
  node.child.kill('SIGUSR2')
  await sleep(300)
  return heapMb(await scrape(node))
}

const hex = (b: Buffer): string => b.length > 160 ? `${b.subarray(0, 160).toString('hex')}... (${b.length} bytes)` : b.toString('hex')

/** Resolves true once the socket is closed, false after `ms`. */
function closedWithin (socket: net.Socket, ms: number): Promise<boolean> {
  if (socket.destroyed && socket.readyState === 'closed') return Promise.resolve(true)
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    socket.once('close', () => { clearTimeout(timer); resolve(true) })
  })
}

/** One of the fuzzing user's authenticated connections, for application-level cases. */
class AppConn {
  private mid = 0
  private readonly pubacks = new Map<number, () => void>()
  closed = false

  private constructor (readonly socket: net.Socket, readonly clientId: string) {}

  static async open (port: number, clientId: string, token: string, onFrame: (f: ServerFrame, conn: AppConn) => void): Promise<AppConn> {
    const socket = net.connect({ port, host: '127.0.0.1' })
    socket.setNoDelay(true)
    socket.on('error', () => {})
    const conn = new AppConn(socket, clientId)
    const parser = mqttPacket.parser({ protocolVersion: 4 })
    let ready: (p: Packet) => void = () => {}
    parser.on('packet', (p: Packet) => {
      if (p.cmd === 'puback') {
        conn.pubacks.get(p.messageId as number)?.()
      } else if (p.cmd === 'publish') {
        if (p.qos === 1) socket.write(mqttPacket.generate({ cmd: 'puback', messageId: p.messageId as number }))
        let f: ServerFrame | null = null
        try { f = JSON.parse(p.payload.toString()) as ServerFrame } catch { /* not JSON: not a frame */ }
        if (f !== null) onFrame(f, conn)
      } else {
        ready(p)
      }
    })
    socket.on('data', (d: Buffer) => { parser.parse(d) })
    socket.once('close', () => {
      conn.closed = true
      for (const done of conn.pubacks.values()) done()
    })
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve())
      socket.once('error', reject)
    })
    const next = (): Promise<Packet> => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${clientId}: no answer to CONNECT/SUBSCRIBE`)), 5000)
      ready = (p) => { clearTimeout(timer); resolve(p) }
    })
    let answer = next()
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 60, username: USER, password: Buffer.from(token) }))
    const connack = await answer
    if (connack.cmd !== 'connack' || connack.returnCode !== 0) throw new Error(`${clientId}: login refused`)
    answer = next()
    socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `wb/d/${clientId}`, qos: 1 }] }))
    const suback = await answer
    if (suback.cmd !== 'suback' || suback.granted[0] !== 1) throw new Error(`${clientId}: device topic not granted`)
    return conn
  }

  /** Publish on the user's out topic; for QoS 1 wait for PUBACK. False if it never came (closed or 10 s). */
  async publish (payload: Buffer, qos: 0 | 1): Promise<boolean> {
    if (this.closed) return false
    this.mid = this.mid % 65_000 + 2
    const messageId = this.mid
    const bytes = mqttPacket.generate({ cmd: 'publish', topic: `wb/u/${USER}/out`, payload, qos, dup: false, retain: false, ...(qos === 1 ? { messageId } : {}) })
    if (qos === 0) { this.socket.write(bytes); return true }
    return await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => { this.pubacks.delete(messageId); resolve(false) }, 10_000)
      this.pubacks.set(messageId, () => { clearTimeout(timer); this.pubacks.delete(messageId); resolve(!this.closed) })
      this.socket.write(bytes)
    })
  }

  close (): void { this.socket.destroy() }
}

test(`fuzz: ${ONLY.length > 0 ? `cases ${ONLY.join(',')}` : `${CASES} cases`} of hostile MQTT and envelopes; sentinels unharmed, refusals counted, heap bounded, archive clean`,
  // eslint-disable-next-line max-lines-per-function -- one scenario, its steps read in order top to bottom
  { timeout: 60_000 + CASES * 12 }, async (t) => {
    const started = Date.now()
    const replay = `WARBLER_FUZZ_SEED=${SEED} WARBLER_FUZZ_CASES=${CASES} node test/run.mjs fuzz`
    console.log(`# fuzz seed ${SEED}: replay with ${replay}`)
    t.diagnostic(`seed ${SEED}`)

    const dataDir = tempDir('warbler-fuzz-')
    for (const name of ['alice', 'bob', USER]) await addUser(dataDir, { name, password: PW })
    const { token } = await withStore(dataDir, (s) => s.createDeviceToken(USER, 'fuzz'))
    const node = await spawnNode([
      '--publish-rate', '0', '--conn-rate', '0', '--login-failures', '1000000',
      '--max-payload', String(MAX_PAYLOAD), '--max-packet', String(MAX_PACKET),
      '--acl', 'readwrite fuzz/#', '--log-level', 'debug'
    ], { dataDir, env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --expose-gc --import=${GC_HOOK}`.trim() } })
    const port = node.ports.mqtt as number
    const sentinels: Recorded[] = []
    const conns: AppConn[] = []
    const open = new Set<net.Socket>()
    t.after(async () => {
      for (const s of sentinels) await s.client.close()
      for (const c of conns) c.close()
      for (const s of open) s.destroy()
      await node.stop('SIGKILL')
      rmSync(dataDir, { recursive: true, force: true })
    })

    // What the broker says about each client error: counted as a refusal, or not a refusal at all.
    const uncounted = new Map<string, number>()
    const errorLines: string[] = []
    let partial = ''
    node.child.stderr?.on('data', (d: Buffer) => {
      const lines = (partial + d.toString()).split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) {
        let o: { level?: string, msg?: string, error?: string }
        try { o = JSON.parse(line) as typeof o } catch { continue }
        if (o.level === 'error' && errorLines.length < 50) errorLines.push(line)
        if ((o.msg === 'client error' || o.msg === 'connection error') && typeof o.error === 'string' &&
          classifyClientError(new Error(o.error)) === null && !NOT_A_REFUSAL.test(o.error) && !COUNTED_AT_LOGIN.test(o.error)) {
          uncounted.set(o.error, (uncounted.get(o.error) ?? 0) + 1)
        }
      }
    })

    const failures: string[] = []
    const fail = (i: number, c: FuzzCase | null, what: string): void => {
      if (failures.length >= MAX_FAILURES) return
      const bytes = c === null ? '' : `; bytes ${hex(c.kind === 'app' ? c.payload : Buffer.concat(c.chunks))}`
      failures.push(`case ${i}${c === null ? '' : ` (${c.kind}: ${c.label})`}: ${what}${bytes}`)
    }

    // -- the sentinels ---------------------------------------------------------------
    const conv = directConversation('alice', 'bob')
    const stateLog: string[] = []
    for (const name of ['alice', 'bob']) {
      const r = recorded({ url: `mqtt://127.0.0.1:${port}`, username: name, password: PW, device: 'sentinel', keepalive: 20, requestTimeout: 10_000 })
      sentinels.push(r)
      r.client.on('state', (e) => { stateLog.push(`${((Date.now() - started) / 1000).toFixed(1)} s: ${name} ${e.newState}${e.error !== undefined ? ` (${e.error.message})` : ''}`) })
      await r.client.connect()
    }
    const [alice, bob] = sentinels as [Recorded, Recorded]
    const outs: SendOutcome[][] = [[], []]
    let fuzzing = true
    const sentinelLoop = async (from: Recorded, to: string, out: SendOutcome[]): Promise<Array<Promise<void>>> => {
      const sends: Array<Promise<void>> = []
      for (let i = 0; fuzzing && i < SENTINEL_MAX; i++) {
        if (sends.length - out.length < 64) sends.push(track(from.client, { to }, `${from.client.user} ${i}`, out))
        await sleep(SENTINEL_EVERY)
      }
      return sends
    }
    const loops = [sentinelLoop(alice, 'bob', outs[0] as SendOutcome[]), sentinelLoop(bob, 'alice', outs[1] as SendOutcome[])]

    // -- the fuzzing user's connections for application-level cases --------------------
    const pending = new Map<string, { i: number, c: AppCase, outcomes: readonly string[] }>()
    const refless = new Map<string, number>()
    const expectedRefless = new Map<string, number>()
    let appConnsLost = 0
    const onFrame = (f: ServerFrame, conn: AppConn): void => {
      let outcome: string
      let ref: string | undefined
      if (f.t === 'error') {
        outcome = f.code
        ref = f.ref
        if (!(f.code in ErrorCodes) || typeof f.message !== 'string') fail(-1, null, `undocumented error frame on ${conn.clientId}: ${JSON.stringify(f)}`)
        if (ref === undefined && f.mid === undefined) refless.set(f.code, (refless.get(f.code) ?? 0) + 1)
      } else if (f.t === 'res') {
        outcome = 'res'
        ref = f.id
      } else if (f.t === 'ack') {
        outcome = 'ack'
        ref = f.cid
      } else {
        return
      }
      const p = ref === undefined ? undefined : pending.get(ref)
      if (p !== undefined) {
        pending.delete(ref as string)
        if (!p.outcomes.includes(outcome)) fail(p.i, p.c, `answered ${JSON.stringify(f).slice(0, 300)}, expected ${p.outcomes.join(' or ')}`)
      } else if (outcome === 'internal' || outcome === 'ack') {
        fail(-1, null, `${conn.clientId} got ${JSON.stringify(f).slice(0, 300)}`)
      }
    }
    for (let k = 0; k < APP_CONNS; k++) conns.push(await AppConn.open(port, `${USER}-app${k}`, token, onFrame))

    const ctx: FuzzContext = {
      user: USER,
      token,
      clientIds: Array.from({ length: 16 }, (_, k) => `${USER}-f${k}`),
      maxPacket: MAX_PACKET,
      maxPayload: MAX_PAYLOAD,
      others: ['alice', 'bob'],
      foreignConv: conv
    }
    const before = await scrape(node)
    const heapStart = await gcHeapMb(node)
    let heapPeak = heapStart
    const sampler = setInterval(() => {
      scrape(node).then((m) => { heapPeak = Math.max(heapPeak, heapMb(m)) }, () => {})
    }, 1000)
    t.after(() => clearInterval(sampler))

    // -- the cases --------------------------------------------------------------------------
    const mustClose = { packet_too_large: 0, malformed_packet: 0 }
    let payloadTooLarge = 0
    const tally = new Map<string, number>()

    let nextLoginAt = 0
    const runMqtt = async (i: number, c: MqttCase): Promise<void> => {
      if (c.login) {
        const now = Date.now()
        const at = Math.max(now, nextLoginAt)
        nextLoginAt = at + 1000 / LOGIN_RATE
        if (at > now) await sleep(at - now)
      }
      const socket = net.connect({ port, host: '127.0.0.1', localAddress: `127.0.0.${2 + (i % 250)}` })
      open.add(socket)
      socket.setNoDelay(true)
      socket.on('error', () => {})
      const parser = mqttPacket.parser({ protocolVersion: c.protocolVersion })
      parser.on('packet', (p: Packet) => {
        if (p.cmd !== 'publish') return
        const topic = p.topic
        if (!(topic.startsWith(`wb/u/${USER}/`) || topic.startsWith(`wb/d/${USER}-`) || topic.startsWith('fuzz/'))) {
          fail(i, c, `received a message on ${topic}: ${p.payload.toString().slice(0, 200)}`)
        }
      })
      parser.on('error', () => {})
      socket.on('data', (d: Buffer) => { parser.parse(d) })
      try {
        const connected = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(false), 5000)
          socket.once('connect', () => { clearTimeout(timer); resolve(true) })
          socket.once('close', () => { clearTimeout(timer); resolve(false) })
        })
        if (!connected) { fail(i, c, 'could not connect'); return }
        for (const chunk of c.chunks) {
          if (socket.destroyed) break
          socket.write(chunk)
          await new Promise((resolve) => setImmediate(resolve))
        }
        if (c.serverCloses !== null) {
          mustClose[c.serverCloses]++
          if (!await closedWithin(socket, 5000)) fail(i, c, `the server did not close the connection (${c.serverCloses})`)
        } else {
          socket.end()
          if (!await closedWithin(socket, 5000)) fail(i, c, 'the connection stayed open after the client ended it')
        }
      } finally {
        socket.destroy()
        open.delete(socket)
      }
    }

    const runApp = async (i: number, c: AppCase, w: number): Promise<void> => {
      let conn = conns[w % APP_CONNS] as AppConn
      if (conn.closed) {
        appConnsLost++
        conn = await AppConn.open(port, conn.clientId, token, onFrame)
        conns[w % APP_CONNS] = conn
      }
      const e = c.expect
      if (e !== null && e.ref !== null) pending.set(e.ref, { i, c, outcomes: e.outcomes })
      if (e !== null && e.ref === null) {
        for (const o of e.outcomes) {
          if (o === 'payload_too_large') payloadTooLarge++
          else expectedRefless.set(o, (expectedRefless.get(o) ?? 0) + 1)
        }
      }
      if (!await conn.publish(c.payload, c.qos)) fail(i, c, conn.closed ? 'the connection was closed' : 'no PUBACK within 10 s')
    }

    const indices = ONLY.length > 0 ? ONLY : Array.from({ length: CASES }, (_, i) => i)
    const master = new Rng(SEED)
    let next = 0
    await Promise.all(Array.from({ length: CONCURRENCY }, async (_, w) => {
      while (next < indices.length && failures.length < MAX_FAILURES && node.child.exitCode === null) {
        const i = indices[next++] as number
        const c = makeCase(master.fork(i), ctx, i)
        tally.set(c.kind, (tally.get(c.kind) ?? 0) + 1)
        if (c.kind === 'mqtt') await runMqtt(i, c)
        else await runApp(i, c, w)
      }
    }))
    const fuzzMs = Date.now() - started
    assert.equal(node.child.exitCode, null, `the broker process is still running; stderr tail:\n${node.stderr().slice(-3000)}`)

    // -- settle -------------------------------------------------------------------------------
    fuzzing = false
    const sends = (await Promise.all(loops)).flat()
    await within(Promise.all(sends), 30_000, 'the sentinels\' sends to settle').catch((err: Error) => { failures.push(err.message) })
    await until(() => pending.size === 0, 15_000, () => `answers to ${pending.size} cases, e.g. ${[...pending.values()].slice(0, 3).map((p) => `case ${p.i} (${p.c.label})`).join(', ')}`)
      .catch((err: Error) => { for (const p of [...pending.values()].slice(0, 5)) fail(p.i, p.c, 'no answer'); failures.push(err.message) })
    const inflightDeadline = Date.now() + 15_000
    while (metric(await scrape(node), 'warbler_publish_inflight') > 0 && Date.now() < inflightDeadline) await sleep(100)
    clearInterval(sampler)
    const after = await scrape(node)

    assert.deepEqual(failures, [], `${failures.length} failing cases; replay with ${replay}`)

    // -- the sentinels were never disturbed ------------------------------------------------
    const [aliceOut, bobOut] = outs as [SendOutcome[], SendOutcome[]]
    assert.equal(aliceOut.length + bobOut.length, sends.length, 'every sentinel send settled')
    assert.deepEqual([...aliceOut, ...bobOut].filter((o) => !o.ok), [], 'no sentinel send failed')
    const n = sends.length
    await until(() => alice.messages.length >= n && bob.messages.length >= n, 15_000, () => `sentinels to get ${n} messages (alice ${alice.messages.length}, bob ${bob.messages.length})`)
    await sleep(200)
    for (const [who, r] of [['alice', alice], ['bob', bob]] as const) {
      assertComplete(r.messages, conv, n, who)
      assertAllArrived(aliceOut, r.messages, who)
      assertAllArrived(bobOut, r.messages, who)
      assert.deepEqual(r.states, ['connecting', 'connected'], `${who} never lost its connection: ${stateLog.join('; ')}; ` +
        `the broker's log of it:\n${node.stderr().split('\n').filter((l) => l.includes(`${who}-sentinel`)).slice(-20).join('\n')}`)
      assert.deepEqual(r.errors.map((e) => e.code), [], `${who} saw no errors`)
    }
    assert.ok(n >= 20, `the sentinels kept chatting (${n} messages)`)

    // -- every case: as expected ----------------------------------------------------------------
    for (const [code, want] of expectedRefless) {
      assert.ok((refless.get(code) ?? 0) >= want, `${code}: at least ${want} answers without id (got ${refless.get(code) ?? 0})`)
    }
    assert.equal(serviceRefusals(after, 'internal'), 0, 'the message service never failed on input')
    assert.equal(appConnsLost, 0, 'no application-level case cost the fuzzing user its connection')

    // -- refusals counted --------------------------------------------------------------------------
    const delta = (reason: string): number => refusals(after, reason) - refusals(before, reason)
    assert.ok(delta('packet_too_large') >= mustClose.packet_too_large, `packet_too_large counted: ${delta('packet_too_large')} >= ${mustClose.packet_too_large}`)
    assert.ok(delta('malformed_packet') >= mustClose.malformed_packet, `malformed_packet counted: ${delta('malformed_packet')} >= ${mustClose.malformed_packet}`)
    assert.ok(delta('payload_too_large') >= payloadTooLarge, `payload_too_large counted: ${delta('payload_too_large')} >= ${payloadTooLarge}`)
    for (const code of ['bad_request', 'unknown_type', 'not_found', 'not_member']) {
      assert.ok(serviceRefusals(after, code) - serviceRefusals(before, code) >= (expectedRefless.get(code) ?? 0), `service refusals ${code} counted`)
    }
    assert.deepEqual([...uncounted], [], 'every protocol error the broker reported is counted as a refusal')
    assert.deepEqual(errorLines, [], 'nothing logged at level error')

    // -- the broker still serves, with no connection left behind, and its heap comes back ---------
    for (const c of conns) c.close()
    const settle = Date.now() + 10_000
    let connected = metric(await scrape(node), 'warbler_clients_connected')
    while (connected !== 2 && Date.now() < settle) { await sleep(100); connected = metric(await scrape(node), 'warbler_clients_connected') }
    assert.equal(connected, 2, 'only the sentinels are left connected')
    const late = await alice.client.send({ to: 'bob' }, 'after the fuzz')
    assert.equal(late.seq, n + 1)
    const heapEnd = await gcHeapMb(node)
    for (const s of sentinels) await s.client.close()
    assert.ok(heapPeak < HEAP_PEAK_MB, `heap peak ${heapPeak.toFixed(1)} MB < ${HEAP_PEAK_MB} MB`)
    assert.ok(heapEnd < heapStart + HEAP_GROWTH_MB, `heap after GC ${heapEnd.toFixed(1)} MB < start ${heapStart.toFixed(1)} + ${HEAP_GROWTH_MB} MB`)
    assert.equal(await node.stop('SIGTERM'), 0, 'a clean stop after the fuzz')

    // -- the archive: the sentinels' messages and nothing else ------------------------------------
    const db = await Database.open(path.join(dataDir, 'warbler.db'), { readonly: true })
    try {
      const rows = await db.all<{ conv: string, seq: number, sender: string, cid: string | null }>('SELECT conv, seq, sender, cid FROM messages ORDER BY conv, seq')
      const acked = new Set([...aliceOut, ...bobOut].map((o) => (o.ok ? `${o.ack.seq}` : '')))
      acked.add(String(late.seq))
      assert.deepEqual(rows.filter((r) => r.conv !== conv || !['alice', 'bob'].includes(r.sender)), [], 'only the sentinels\' conversation')
      assert.deepEqual(rows.map((r) => r.seq), Array.from({ length: n + 1 }, (_, k) => k + 1), 'the sentinels\' messages, once each')
      assert.ok(rows.every((r) => acked.has(String(r.seq))))
      const convs = await db.all<{ id: string }>('SELECT id FROM conversations')
      assert.deepEqual(convs.map((c) => c.id), [conv], 'no conversation but the sentinels\'')
    } finally {
      await db.close()
    }

    t.diagnostic(`seed ${SEED}: ${indices.length} cases (${[...tally].map(([k, v]) => `${k} ${v}`).join(', ')}) in ${fuzzMs} ms; ` +
      `refusals: malformed ${delta('malformed_packet')}, too large ${delta('packet_too_large')}, payload ${delta('payload_too_large')}, ` +
      `not authorized ${delta('not_authorized')}, subscribe denied ${delta('subscribe_denied')}, login failed ${delta('login_failed')}, client id ${delta('client_id_rejected')}, ` +
      `service refusals ${['bad_request', 'unknown_type', 'not_found', 'not_member', 'forbidden'].map((c) => `${c} ${serviceRefusals(after, c) - serviceRefusals(before, c)}`).join(', ')}; ` +
      `protocol version ${delta('protocol_version')}; sentinels exchanged ${n} messages; heap ${heapStart.toFixed(1)} -> peak ${heapPeak.toFixed(1)} -> ${heapEnd.toFixed(1)} MB after GC; ${Date.now() - started} ms`)
  })
