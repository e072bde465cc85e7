/**
 * Malformed input: each bad connection is closed on its own, counted where
 * the broker can know, while a healthy publisher and subscriber keep talking
 * through the same broker, and the process never crashes.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { MqttClient } from 'mqtt'
import mqttPacket from 'mqtt-packet'
import { connect, startNode, type TestNode } from '../helpers/test-node.js'
import { connectPacket, publishBytes, type RawClient, rawConnect, rawSocket, remainingLength } from '../helpers/raw.js'

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Resolves true if the connection is closed within ms. */
async function closedWithin (c: RawClient, ms = 3000): Promise<boolean> {
  return await Promise.race([c.closed.then(() => true), sleep(ms).then(() => false)])
}

/** A publisher sending QoS 1 messages every few ms to a subscriber, for as long as the test runs. */
async function healthyTraffic (node: TestNode): Promise<{ stop: () => Promise<{ sent: number, received: string[] }>, pub: MqttClient, sub: MqttClient }> {
  const sub = await connect(node.mqttUrl, { clientId: 'healthy-sub' })
  const pub = await connect(node.mqttUrl, { clientId: 'healthy-pub' })
  await sub.subscribeAsync('healthy/t', { qos: 1 })
  const received: string[] = []
  sub.on('message', (_t, p) => { received.push(p.toString()) })
  let sent = 0
  let running = true
  const loop = (async () => {
    while (running && sent < 5000) {
      await pub.publishAsync('healthy/t', `h${sent}`, { qos: 1 })
      sent++
      await sleep(2)
    }
  })()
  return {
    pub,
    sub,
    stop: async () => {
      running = false
      await loop
      const deadline = Date.now() + 3000
      while (received.length < sent && Date.now() < deadline) await sleep(10)
      return { sent, received }
    }
  }
}

// eslint-disable-next-line max-lines-per-function -- one scenario, its steps read in order top to bottom
test('malformed packets close only their own connection; a healthy pair keeps talking; counted', async (t) => {
  // No publish rate limit: the healthy publisher sends faster than the default.
  const node = await startNode(['--dev', '--publish-rate', '0'])
  t.after(() => node.close())
  const port = node.ports.mqtt as number
  const healthy = await healthyTraffic(node)
  t.after(() => { healthy.pub.end(true); healthy.sub.end(true) })
  const opened: RawClient[] = []
  t.after(() => { for (const c of opened) c.destroy() })
  const open = async (connected: boolean, clientId?: string): Promise<RawClient> => {
    const c = connected ? await rawConnect(port, { clientId: clientId ?? `bad-${opened.length}` }) : await rawSocket(port)
    opened.push(c)
    return c
  }
  const malformed = (): number => node.stats.refusals.malformed_packet

  await t.test('garbage bytes', async () => {
    const before = malformed()
    const c = await open(false)
    c.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))
    assert.ok(await closedWithin(c))
    assert.equal(malformed(), before + 1)
  })

  await t.test('random bytes of every packet type, a few hundred connections', async () => {
    // A fixed pseudo-random sequence, so a failure is reproducible.
    let seed = 12345
    const rnd = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff }
    const batch: Array<Promise<boolean>> = []
    for (let i = 0; i < 300; i++) {
      const c = await open(i % 2 === 0, `fuzz-${i}`)
      const bytes = Buffer.from(Array.from({ length: 2 + Math.floor(rnd() * 60) }, () => Math.floor(rnd() * 256)))
      c.send(bytes)
      c.socket.end()
      batch.push(closedWithin(c, 5000))
    }
    assert.ok((await Promise.all(batch)).every(Boolean))
  })

  await t.test('a bad protocol name', async () => {
    const before = malformed()
    const c = await open(false)
    const good = mqttPacket.generate(connectPacket({ clientId: 'badproto' }))
    const i = good.indexOf('MQTT')
    good.write('MQXX', i)
    c.send(good)
    assert.ok(await closedWithin(c))
    assert.equal(c.received.filter((p) => p.cmd === 'connack').length, 0)
    assert.equal(malformed(), before + 1)
  })

  await t.test('a second CONNECT', async () => {
    const before = malformed()
    const c = await open(true, 'twice')
    c.send(connectPacket({ clientId: 'twice' }))
    assert.ok(await closedWithin(c))
    assert.equal(malformed(), before + 1)
  })

  await t.test('a PUBLISH before CONNECT', async () => {
    const before = malformed()
    const c = await open(false)
    c.send(publishBytes('healthy/t', 'sneaky', 1))
    assert.ok(await closedWithin(c))
    assert.equal(malformed(), before + 1)
  })

  await t.test('a remaining length of 5 bytes', async () => {
    const before = malformed()
    const c = await open(true)
    c.send(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]))
    assert.ok(await closedWithin(c))
    assert.equal(malformed(), before + 1)
  })

  await t.test('a packet type only a server sends (SUBACK)', async () => {
    const before = malformed()
    const c = await open(true)
    c.send({ cmd: 'suback', messageId: 1, granted: [0] })
    assert.ok(await closedWithin(c))
    assert.equal(malformed(), before + 1)
  })

  await t.test('a truncated packet followed by close', async () => {
    const c = await open(true)
    const p = publishBytes('healthy/t', 'x'.repeat(1000), 1)
    c.send(p.subarray(0, 500))
    c.socket.end()
    assert.ok(await closedWithin(c))
    // And a truncated CONNECT.
    const d = await open(false)
    d.send(mqttPacket.generate(connectPacket({ clientId: 'cut' })).subarray(0, 8))
    d.socket.end()
    assert.ok(await closedWithin(d))
  })

  await t.test('a wildcard in a PUBLISH topic', async () => {
    const before = malformed()
    for (const topic of ['healthy/#', 'healthy/+', '+']) {
      const c = await open(true)
      c.send(publishBytes(topic, 'wild', 1))
      assert.ok(await closedWithin(c), topic)
    }
    assert.equal(malformed(), before + 3)
  })

  await t.test('an invalid UTF-8 topic, a topic with U+0000, and an invalid UTF-8 filter', async () => {
    const before = malformed()
    // PUBLISH QoS 0, topic "healthy/" + 0xff 0xfe (never valid UTF-8), payload "x".
    const topic = Buffer.concat([Buffer.from('healthy/'), Buffer.from([0xff, 0xfe])])
    const body = Buffer.concat([Buffer.from([0, topic.length]), topic, Buffer.from('x')])
    const c = await open(true)
    c.send(Buffer.concat([Buffer.from([0x30]), remainingLength(body.length), body]))
    assert.ok(await closedWithin(c))

    const nul = await open(true)
    nul.send(publishBytes('healthy/\u0000', 'nul', 0))
    assert.ok(await closedWithin(nul))

    // SUBSCRIBE id 1, filter 0xc3 0x28 (a broken two-byte sequence), QoS 0.
    const filter = Buffer.from([0xc3, 0x28])
    const sbody = Buffer.concat([Buffer.from([0, 1, 0, filter.length]), filter, Buffer.from([0])])
    const s = await open(true)
    s.send(Buffer.concat([Buffer.from([0x82]), remainingLength(sbody.length), sbody]))
    assert.ok(await closedWithin(s))
    assert.equal(malformed(), before + 3)
  })

  const { sent, received } = await healthy.stop()
  assert.ok(sent > 10, `the healthy publisher kept going (${sent})`)
  assert.deepEqual(received, Array.from({ length: sent }, (_, i) => `h${i}`))
  assert.ok(healthy.pub.connected && healthy.sub.connected)
  assert.ok(!received.some((m) => /sneaky|wild|nul/.test(m)))
})
