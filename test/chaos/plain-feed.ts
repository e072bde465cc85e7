/**
 * The plain MQTT side of the chaos tests: devices that know nothing of the
 * chat protocol. Receivers are mqtt.js clients with persistent sessions
 * (clean: false, fixed client ids; with MQTT 5 a Session Expiry Interval of
 * an hour), each subscribed at QoS 1 to the feed, reconnecting after every
 * cut; publishers send one numbered sequence each, at QoS 1, a few in flight.
 * All of them speak one protocol per run: WARBLER_CHAOS_PROTOCOL (4 for
 * MQTT 3.1.1, 5 for MQTT 5) when set, else chosen by the seed (odd: 5), so a
 * printed seed replays the same protocol; the protocol is printed with it.
 *
 * A publisher takes a fresh client for each connection, so that mqtt.js never
 * resends a message whose PUBACK was lost: it stays "not acknowledged" (it may
 * or may not have arrived), and the receivers' checks stay exact. At the end:
 * every acknowledged message reached every receiver at least once; each
 * receiver saw each publisher's sequence in order, a message seen again only
 * as a re-delivery flagged DUP; nothing arrived that was not sent.
 */
import assert from 'node:assert/strict'
import mqtt, { type MqttClient } from 'mqtt'
import { TcpProxy } from '../helpers/proxy.js'
import type { Rng } from '../helpers/rng.js'
import { sleep, until, within } from '../sdk/support.js'

/** The account of the plain devices (client ids `plain-...` are bound to it). */
export const PLAIN_USER = 'plain'
/** The ACL rule that lets it use the feed's topics. */
export const PLAIN_ACL = 'readwrite plain/#'
const FEED = 'plain/feed'
/** Messages a publisher keeps without PUBACK at most. */
const WINDOW = 4

interface Got { pub: number, n: number, dup: boolean }

/** What a receiver can get wrong: a message missing or out of order, a repeat without DUP, one never sent. */
export type PlainFault = 'missing' | 'order' | 'undup' | 'unsent'
/** The plain devices' MQTT protocol for a run (see above); a bad WARBLER_CHAOS_PROTOCOL is an error naming it. */
function plainProtocol (seed: number, env = process.env.WARBLER_CHAOS_PROTOCOL): 4 | 5 {
  if (env === undefined || env === '') return seed % 2 === 1 ? 5 : 4
  if (env === '4' || env === '5') return Number(env) as 4 | 5
  throw new Error(`WARBLER_CHAOS_PROTOCOL must be 4 (MQTT 3.1.1) or 5 (MQTT 5), not ${JSON.stringify(env)}`)
}

interface Receiver { id: string, client: MqttClient, proxy: TcpProxy, got: Got[], connects: number }

interface Publisher { id: string, proxy: TcpProxy, sent: number, acked: Set<number>, connects: number, loop: Promise<void> | null, phases: Map<number, string> }

export class PlainFeed {
  readonly receivers: Receiver[] = []
  readonly publishers: Publisher[] = []
  private running = false
  /** What the test is doing now (killing what), recorded with each message so that a failure says when it was sent. */
  phase = 'sent before the first kill'

  /** The MQTT protocol of every plain device in this run. */
  readonly protocolVersion: 4 | 5

  constructor (private readonly rng: Rng, private readonly password: string, private readonly counts = { receivers: 8, publishers: 2 }) {
    this.protocolVersion = plainProtocol(rng.seed)
    console.log(`# chaos plain devices: MQTT ${this.protocolVersion === 5 ? '5' : '3.1.1'} (protocolVersion ${this.protocolVersion}; WARBLER_CHAOS_PROTOCOL=4|5 to choose)`)
  }

  /** A persistent session outlives its connection: with MQTT 5 only with a Session Expiry Interval. */
  private get sessionKept (): { properties?: { sessionExpiryInterval: number } } {
    return this.protocolVersion === 5 ? { properties: { sessionExpiryInterval: 3600 } } : {}
  }

  /** Connect and subscribe every receiver (its session then lives on the broker); the publishers connect at start(). */
  async connect (mqttPort: number, defer: (fn: () => unknown) => void): Promise<void> {
    for (let i = 0; i < this.counts.receivers; i++) {
      const proxy = await TcpProxy.start(mqttPort)
      defer(() => proxy.close())
      const id = `${PLAIN_USER}-r${i}`
      const client = mqtt.connect(proxy.url, {
        clientId: id, clean: false, protocolVersion: this.protocolVersion, ...this.sessionKept, username: PLAIN_USER, password: this.password,
        reconnectPeriod: 100, connectTimeout: 2000, keepalive: 5
      })
      defer(() => client.endAsync(true))
      const r: Receiver = { id, client, proxy, got: [], connects: 0 }
      client.on('connect', () => { r.connects++ })
      client.on('error', () => { /* a refused or cut connection: mqtt.js reconnects */ })
      client.on('message', (topic, payload, packet) => {
        const m = /^p(\d+) (\d+)$/.exec(payload.toString())
        // Anything else is recorded as not sent (publisher -1).
        r.got.push(m === null || topic !== `${FEED}/p${m[1] as string}` ? { pub: -1, n: -1, dup: packet.dup } : { pub: Number(m[1]), n: Number(m[2]), dup: packet.dup })
      })
      await within(new Promise((resolve) => client.once('connect', resolve)), 10_000, `${id} to connect`)
      await client.subscribeAsync(`${FEED}/+`, { qos: 1 })
      this.receivers.push(r)
    }
    for (let j = 0; j < this.counts.publishers; j++) {
      const proxy = await TcpProxy.start(mqttPort)
      defer(() => proxy.close())
      this.publishers.push({ id: `${PLAIN_USER}-p${j}`, proxy, sent: 0, acked: new Set(), connects: 0, loop: null, phases: new Map() })
    }
  }

  /** New connections go to this broker port. */
  retarget (mqttPort: number): void { for (const x of [...this.receivers, ...this.publishers]) x.proxy.retarget(mqttPort) }

  get acked (): number { return this.publishers.reduce((a, p) => a + p.acked.size, 0) }

  start (): void {
    this.running = true
    this.publishers.forEach((p, j) => { p.loop = this.publish(p, j, this.rng.fork(100 + j)) })
  }

  /** One publisher: connect, publish until the connection ends, connect again with a fresh client. */
  private async publish (p: Publisher, j: number, r: Rng): Promise<void> {
    while (this.running) {
      const client = mqtt.connect(p.proxy.url, {
        clientId: p.id, clean: true, protocolVersion: this.protocolVersion, username: PLAIN_USER, password: this.password,
        reconnectPeriod: 0, connectTimeout: 2000, keepalive: 5
      })
      client.on('error', () => { /* ends in close */ })
      const up = await new Promise<boolean>((resolve) => {
        client.once('connect', () => resolve(true))
        client.once('close', () => resolve(false))
      })
      if (up) p.connects++
      let inflight = 0
      while (up && this.running && client.connected) {
        if (inflight >= WINDOW) { await sleep(5); continue }
        const n = ++p.sent
        p.phases.set(n, this.phase)
        inflight++
        client.publish(`${FEED}/p${j}`, `p${j} ${n}`, { qos: 1 }, (err) => {
          inflight--
          if (err === undefined || err === null) p.acked.add(n)
        })
        await sleep(r.range(5, 20))
      }
      await client.endAsync(true)
      if (this.running && !up) await sleep(50)
    }
  }

  /** Stop publishing; wait for the publishers to end their connections. */
  async stop (ms: number): Promise<void> {
    this.running = false
    await within(Promise.all(this.publishers.map(async (p) => { await p.loop })), ms, 'the plain publishers to stop')
  }

  /** Failures for one receiver: acknowledged messages missing, order breaks, unflagged duplicates, messages never sent. */
  private faults (r: Receiver): Array<{ kind: PlainFault, text: string }> {
    const out: Array<{ kind: PlainFault, text: string }> = []
    for (const p of this.publishers) {
      const j = this.publishers.indexOf(p)
      const seen = new Set<number>()
      let max = 0
      for (const g of r.got.filter((x) => x.pub === j)) {
        if (g.n < 1 || g.n > p.sent) out.push({ kind: 'unsent', text: `${r.id}: p${j} ${g.n} was never sent` })
        else if (seen.has(g.n)) { if (!g.dup) out.push({ kind: 'undup', text: `${r.id}: p${j} ${g.n} again, not flagged DUP` }) } else if (g.n < max) out.push({ kind: 'order', text: `${r.id}: p${j} ${g.n} (${p.phases.get(g.n) ?? ''}) after ${max} (${p.phases.get(max) ?? ''})` })
        seen.add(g.n)
        max = Math.max(max, g.n)
      }
      const missing = [...p.acked].filter((n) => !seen.has(n)).sort((a, b) => a - b)
      if (missing.length > 0) out.push({ kind: 'missing', text: `${r.id}: ${missing.length} acknowledged messages of p${j} missing: ${missing.slice(0, 20).map((n) => `${n} (${p.phases.get(n) ?? ''})`).join(' ')}` })
    }
    const strange = r.got.filter((g) => g.pub < 0 || g.pub >= this.publishers.length)
    if (strange.length > 0) out.push({ kind: 'unsent', text: `${r.id}: ${strange.length} messages from no publisher` })
    return out
  }

  /** Wait until every receiver has every acknowledged message, then check what each saw (the faults of these kinds). */
  async verify (what: string, kinds: readonly PlainFault[] = ['missing', 'order', 'undup', 'unsent'], ms = 10_000): Promise<string> {
    const missing = (r: Receiver): number => this.publishers.reduce((a, p, j) => {
      const have = new Set(r.got.filter((g) => g.pub === j).map((g) => g.n))
      return a + [...p.acked].filter((n) => !have.has(n)).length
    }, 0)
    await until(() => this.receivers.every((r) => missing(r) === 0), ms, () => `the plain receivers to get every acknowledged message (missing ${this.receivers.map(missing).join('/')})`).catch(() => { /* the check below says what is missing */ })
    await sleep(200) // anything extra (a duplicate, a late one) would show up now
    assert.deepEqual(this.receivers.flatMap((r) => this.faults(r).filter((f) => kinds.includes(f.kind)).map((f) => f.text)), [], `${what}: plain MQTT receivers`)
    const sent = this.publishers.reduce((a, p) => a + p.sent, 0)
    const got = this.receivers.reduce((a, r) => a + r.got.length, 0)
    const dups = this.receivers.reduce((a, r) => a + r.got.filter((g) => g.dup).length, 0)
    return `plain: ${sent} published, ${this.acked} acknowledged, ${got} deliveries to ${this.receivers.length} receivers (${dups} flagged DUP), ` +
      `connects ${this.receivers.map((r) => r.connects).join('/')}, publisher connects ${this.publishers.map((p) => p.connects).join('/')}`
  }
}
