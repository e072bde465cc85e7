/**
 * Slow consumers and fast publishers: a subscriber that stops reading is cut
 * off (QoS 0 dropped, QoS 1 disconnected, drainTimeout) without stalling the
 * others; a publisher that floods QoS 1 is slowed by TCP through the PUBACK
 * gate (maxInflight) with bounded memory; the gate never leaks slots.
 *
 * Everything is bounded in count and time and runs on loopback.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import v8 from 'node:v8'
import vm from 'node:vm'
import mqtt, { type MqttClient } from 'mqtt'
import mqttPacket from 'mqtt-packet'
import { connectedClients } from '../../broker/aedes-internals.js'
import { connect, nextMessage, startNode, type TestNode } from '../helpers/test-node.js'
import { publishBytes, type RawClient, rawConnect } from '../helpers/raw.js'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function until (cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

/** Whether aedes holds a connected client with this id. */
function isConnected (node: TestNode, clientId: string): boolean {
  return connectedClients(node.broker)[clientId] !== undefined
}

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

/** The gate figures from /metrics. */
async function gateMetrics (node: TestNode): Promise<{ inflight: number, waiting: number }> {
  const text = await (await fetch(`${node.httpUrl}/metrics`)).text()
  const read = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
  return { inflight: read('warbler_publish_inflight'), waiting: read('warbler_publish_waiting') }
}

/** A raw subscriber; `reading: false` pauses its socket right after the SUBACK. */
async function rawSubscriber (port: number, clientId: string, topic: string, qos: 0 | 1, opts: { clean?: boolean, reading?: boolean } = {}): Promise<RawClient> {
  const c = await rawConnect(port, { clientId, clean: opts.clean ?? true })
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos }] })
  await c.next((p) => p.cmd === 'suback')
  if (opts.reading === false) c.socket.pause()
  return c
}

/**
 * Publish `payload` to `topic` from `pub` while `fast` (reading, QoS 1)
 * keeps up: at most `window` messages unreceived by `fast` at any time, so
 * `fast` itself never builds a backlog. Stops when `done()` holds (then
 * `extra` more) or at the count/time bound. Returns the number sent.
 */
async function publishPaced (pub: MqttClient, fast: { received: () => number }, topic: string, payload: Buffer, done: () => boolean, opts: { window: number, extra: number, max: number, ms: number }): Promise<number> {
  let sent = 0
  let after = -1
  const deadline = Date.now() + opts.ms
  while (sent < opts.max && Date.now() < deadline) {
    while (sent - fast.received() >= opts.window && Date.now() < deadline) await sleep(1)
    pub.publish(topic, Buffer.concat([Buffer.from(`${sent}:`), payload]), { qos: 1 })
    sent++
    if (after < 0 && done()) after = sent
    if (after >= 0 && sent >= after + opts.extra) break
  }
  return sent
}

function counting (client: MqttClient): { received: () => number, messages: string[] } {
  const messages: string[] = []
  client.on('message', (_t, p) => { messages.push(p.subarray(0, p.indexOf(0x3a)).toString()) })
  return { received: () => messages.length, messages }
}

test('a QoS 0 subscriber that stops reading gets nothing past slowConsumerBytes, is cut after drainTimeout, and stalls nobody', async (t) => {
  const node = await startNode(['--dev', '--publish-rate', '0', '--slow-consumer-bytes', String(256 * 1024), '--drain-timeout', '1'])
  t.after(() => node.close())
  const port = node.ports.mqtt as number
  const stuck = await rawSubscriber(port, 'stuck', 'fan/0', 0, { reading: false })
  t.after(() => stuck.destroy())
  const fast = await connect(node.mqttUrl, { clientId: 'fast' })
  const pub = await connect(node.mqttUrl, { clientId: 'pub' })
  t.after(() => { fast.end(true); pub.end(true) })
  await fast.subscribeAsync('fan/0', { qos: 1 })
  const got = counting(fast)

  // Enough 16 KiB messages to fill the kernel's socket buffers of `stuck`
  // and then its 256 KiB in the broker; then some more.
  const sent = await publishPaced(pub, got, 'fan/0', Buffer.alloc(16 * 1024, 0x61), () => node.stats.publishDropped > 0,
    { window: 4, extra: 50, max: 3000, ms: 15_000 })
  assert.ok(node.stats.publishDropped > 0, `QoS 0 to the stuck subscriber was dropped (sent ${sent})`)
  await until(() => got.received() >= sent, 5000, 'the fast subscriber')
  assert.deepEqual(got.messages, Array.from({ length: sent }, (_, i) => String(i)))
  // The stuck subscriber is still connected until drainTimeout (1 s) passes.
  await until(() => !isConnected(node, 'stuck'), 5000, 'the stuck subscriber to be cut')
  assert.equal(node.stats.refusals.slow_consumer, 1)

  // And everyone else carries on.
  const next = nextMessage(fast)
  await pub.publishAsync('fan/0', 'after', { qos: 1 })
  assert.equal((await next).payload.toString(), 'after')
})

test('a QoS 1 subscriber that stops reading is disconnected at slowConsumerBytes; its persistent session keeps the messages', async (t) => {
  const node = await startNode(['--dev', '--publish-rate', '0', '--slow-consumer-bytes', String(256 * 1024), '--offline-queue', '5000'])
  t.after(() => node.close())
  const port = node.ports.mqtt as number
  const stuck = await rawSubscriber(port, 'stuck', 'fan/1', 1, { clean: false, reading: false })
  t.after(() => stuck.destroy())
  const fast = await connect(node.mqttUrl, { clientId: 'fast' })
  const pub = await connect(node.mqttUrl, { clientId: 'pub' })
  t.after(() => { fast.end(true); pub.end(true) })
  await fast.subscribeAsync('fan/1', { qos: 1 })
  const got = counting(fast)

  const sent = await publishPaced(pub, got, 'fan/1', Buffer.alloc(16 * 1024, 0x62), () => node.stats.refusals.slow_consumer > 0,
    { window: 4, extra: 20, max: 3000, ms: 15_000 })
  assert.equal(node.stats.refusals.slow_consumer, 1, `sent ${sent}`)
  await until(() => got.received() >= sent, 5000, 'the fast subscriber')
  assert.deepEqual(got.messages, Array.from({ length: sent }, (_, i) => String(i)))
  assert.ok(!isConnected(node, 'stuck'))
  stuck.destroy()

  // Back, reading this time: it gets every message it never acknowledged.
  const back = mqtt.connect(node.mqttUrl, { clientId: 'stuck', clean: false, reconnectPeriod: 0, protocolVersion: 4 })
  t.after(() => back.end(true))
  const again = counting(back)
  await until(() => again.received() >= sent, 10_000, 'the queued messages')
  assert.deepEqual([...new Set(again.messages)].map(Number).sort((a, b) => a - b), Array.from({ length: sent }, (_, i) => i))
  assert.equal(node.stats.refusals.slow_consumer, 1)
})

// eslint-disable-next-line max-lines-per-function -- one scenario, its steps read in order top to bottom
test('a QoS 1 flood is slowed by TCP through the PUBACK gate: at most maxInflight routed at once, bounded memory', async (t) => {
  const maxInflight = 32
  const node = await startNode(['--dev', '--publish-rate', '0', '--max-inflight', String(maxInflight)])
  t.after(() => node.close())
  const port = node.ports.mqtt as number
  // Reading subscribers (one of them slow: it reads 10 ms of every 50).
  const subs: RawClient[] = []
  t.after(() => { for (const s of subs) s.destroy() })
  let bytesIn = 0
  for (let i = 0; i < 4; i++) {
    const s = await rawSubscriber(port, `sub-${i}`, 'flood/t', 1)
    s.socket.removeAllListeners('data')
    s.socket.on('data', (d: Buffer) => { bytesIn += d.length })
    subs.push(s)
  }
  const slow = subs[3] as RawClient
  const slowTimer = setInterval(() => { slow.socket.pause(); setTimeout(() => slow.socket.resume(), 40) }, 50)
  t.after(() => clearInterval(slowTimer))

  gc()
  const heapBefore = process.memoryUsage().heapUsed
  let heapPeak = heapBefore
  let liveHeapPeak = heapBefore
  let inflightPeak = 0
  let samplingDone = false
  const sampler = (async () => {
    for (let i = 0; !samplingDone; i++) {
      heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed)
      if (i % 20 === 19) {
        // What is really held (not garbage awaiting collection), mid-flood.
        gc()
        liveHeapPeak = Math.max(liveHeapPeak, process.memoryUsage().heapUsed)
      }
      inflightPeak = Math.max(inflightPeak, Number((await node.sys())['warbler/publish/inflight']))
      await sleep(25)
    }
  })()

  // Raw publishers writing QoS 1 publishes as fast as their sockets take them.
  const pubs: RawClient[] = []
  t.after(() => { for (const p of pubs) p.destroy() })
  for (let i = 0; i < 4; i++) {
    const p = await rawConnect(port, { clientId: `pub-${i}` })
    p.socket.removeAllListeners('data')
    p.socket.resume() // read (and drop) the PUBACKs
    pubs.push(p)
  }
  const packet = publishBytes('flood/t', Buffer.alloc(256, 0x63), 1, 1)
  const idAt = packet.length - 256 - 2
  let falseWrites = 0
  let maxWritable = 0
  let bytesOut = 0
  let sent = 0
  const deadline = Date.now() + 4000
  await Promise.all(pubs.map(async (p) => {
    let id = 1
    let n = 0
    while (n < 200_000 && Date.now() < deadline) {
      const buf = Buffer.from(packet)
      buf.writeUInt16BE(id, idAt)
      id = id === 65535 ? 1 : id + 1
      n++
      sent++
      bytesOut += buf.length
      if (!p.socket.write(buf)) {
        falseWrites++
        maxWritable = Math.max(maxWritable, p.socket.writableLength)
        await new Promise<void>((resolve) => {
          const timer = setTimeout(done, 100)
          function done (): void { clearTimeout(timer); p.socket.off('drain', done); resolve() }
          p.socket.once('drain', done)
        })
      } else if (n % 64 === 0) {
        await new Promise((resolve) => setImmediate(resolve))
      }
    }
  }))
  samplingDone = true
  await sampler

  const growthMB = (heapPeak - heapBefore) / 1024 / 1024
  const liveGrowthMB = (liveHeapPeak - heapBefore) / 1024 / 1024
  t.diagnostic(`sent ${sent} publishes (${(bytesOut / 1e6).toFixed(1)} MB), broker read ${(node.stats.bytesReceived / 1e6).toFixed(1)} MB, routed ${node.stats.messagesReceived}, delivered ${(bytesIn / 1e6).toFixed(1)} MB; backpressure waits ${node.stats.backpressureWaits}; peak inflight ${inflightPeak}; heap growth ${growthMB.toFixed(1)} MB (live, after GC: ${liveGrowthMB.toFixed(1)} MB); publisher write() false ${falseWrites} times, max writableLength ${maxWritable}`)
  assert.ok(node.stats.backpressureWaits > 0, 'publishes waited for a routing slot')
  assert.ok(inflightPeak <= maxInflight, `peak inflight ${inflightPeak} <= ${maxInflight}`)
  assert.ok(inflightPeak > 0)
  assert.ok(liveGrowthMB < 150, `live heap growth ${liveGrowthMB.toFixed(1)} MB`)
  assert.ok(growthMB < 400, `heap growth with garbage ${growthMB.toFixed(1)} MB`)
  // TCP pushed back on the publishers: their writes were refused and what
  // they wrote is mostly still in socket buffers, not in the broker's heap.
  assert.ok(falseWrites > 0, 'socket.write returned false on the publishers')
  assert.ok(maxWritable >= 16 * 1024, `publisher writableLength reached ${maxWritable}`)
  assert.ok(bytesOut - node.stats.bytesReceived > 1024 * 1024, 'the broker left unread data in the publishers\' connections')
  assert.equal(node.stats.refusals.slow_consumer, 0)

  // Publishers vanish mid-flight: the gate empties, and memory comes back.
  for (const p of pubs) p.destroy()
  await until(async () => { const g = await gateMetrics(node); return g.inflight === 0 && g.waiting === 0 }, 10_000, 'the gate to empty')
  gc()
  const retainedMB = (process.memoryUsage().heapUsed - heapBefore) / 1024 / 1024
  t.diagnostic(`heap after the publishers left and a GC: ${retainedMB.toFixed(1)} MB above the start`)
  assert.ok(retainedMB < 50, `retained heap ${retainedMB.toFixed(1)} MB`)

  const c = await connect(node.mqttUrl, { clientId: 'after' })
  t.after(() => c.end(true))
  await c.subscribeAsync('after/t', { qos: 1 })
  const next = nextMessage(c)
  await c.publishAsync('after/t', 'ok', { qos: 1 })
  assert.equal((await next).payload.toString(), 'ok')
})

test('gate slots are never leaked: publishers disconnecting mid-flight, QoS 2 retransmissions, a client that stops reading', async (t) => {
  const node = await startNode(['--dev', '--publish-rate', '0', '--max-inflight', '16', '--slow-consumer-bytes', String(64 * 1024), '--drain-timeout', '2'])
  t.after(() => node.close())
  const port = node.ports.mqtt as number
  const opened: RawClient[] = []
  t.after(() => { for (const c of opened) c.destroy() })
  // Subscribers: two reading, one that never reads (QoS 1, so it gets cut).
  for (let i = 0; i < 2; i++) {
    const s = await rawSubscriber(port, `reader-${i}`, 'leak/#', 1)
    s.socket.removeAllListeners('data')
    s.socket.resume()
    opened.push(s)
  }
  opened.push(await rawSubscriber(port, 'sleeper', 'leak/#', 1, { reading: false }))

  // 40 publishers, each one write of 300 QoS 1 and 20 QoS 2 publishes (some
  // QoS 2 ids repeated, some flagged DUP), destroyed after 0-30 ms.
  let seed = 7
  const rnd = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff }
  await Promise.all(Array.from({ length: 40 }, async (_, i) => {
    const p = await rawConnect(port, { clientId: `burst-${i}` })
    opened.push(p)
    const parts: Buffer[] = []
    for (let k = 0; k < 300; k++) parts.push(publishBytes(`leak/${i}`, Buffer.alloc(200, 0x64), 1, k + 1))
    for (let k = 0; k < 20; k++) {
      parts.push(mqttPacket.generate({ cmd: 'publish', topic: `leak/${i}`, payload: Buffer.from('two'), qos: 2, messageId: 1000 + (k % 5), dup: k >= 10, retain: false }))
    }
    p.socket.write(Buffer.concat(parts))
    await sleep(Math.floor(rnd() * 30))
    p.destroy()
  }))
  await until(async () => { const g = await gateMetrics(node); return g.inflight === 0 && g.waiting === 0 }, 10_000, 'the gate to empty after the bursts')
  assert.ok(node.stats.backpressureWaits > 0)

  // A connected client retransmitting QoS 2 publishes (same ids, no PUBREL,
  // with and without DUP) many times more than maxInflight: aedes answers
  // the repeats from its store without routing them; no slot may stay held.
  const q2 = await rawConnect(port, { clientId: 'qos2' })
  opened.push(q2)
  const parts: Buffer[] = []
  for (let k = 0; k < 200; k++) {
    parts.push(mqttPacket.generate({ cmd: 'publish', topic: 'leak/q2', payload: Buffer.from('again'), qos: 2, messageId: 1 + (k % 3), dup: k % 2 === 1, retain: false }))
  }
  q2.send(Buffer.concat(parts))
  await until(() => q2.received.filter((p) => p.cmd === 'pubrec').length >= 200, 10_000, '200 PUBRECs')
  const g = await gateMetrics(node)
  assert.deepEqual(g, { inflight: 0, waiting: 0 })
  assert.ok(!q2.isClosed())

  // The gate still admits: a fresh publisher's messages flow.
  const c = await connect(node.mqttUrl, { clientId: 'after' })
  t.after(() => c.end(true))
  await c.subscribeAsync('after/t', { qos: 1 })
  const next = nextMessage(c)
  await c.publishAsync('after/t', 'ok', { qos: 1 })
  assert.equal((await next).payload.toString(), 'ok')
})
