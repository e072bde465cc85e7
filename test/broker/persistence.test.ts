/**
 * Session persistence with a real redis-server: what survives a broker
 * restart with --redis (subscriptions, offline queues, retained messages),
 * what does not without it, a Redis restart under a running broker, and a
 * start with Redis unreachable.
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { type TestContext, test } from 'node:test'
import { Redis } from 'ioredis'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { freePort } from '../helpers/ports.js'
import { startRedis } from '../helpers/redis.js'
import { collect, connect, nextMessage, spawnNode, startNode, tempDir } from '../helpers/test-node.js'

interface Received { topic: string, payload: string }

/** Cleanups run last-registered first (t.after runs in registration order), so nodes close before their Redis stops. */
function stack (t: TestContext): (fn: () => unknown) => void {
  const fns: Array<() => unknown> = []
  t.after(async () => { for (const fn of fns.reverse()) await fn() })
  return (fn) => { fns.push(fn) }
}

/** Connect with the message listener attached before CONNACK, so nothing queued for the session is missed. */
async function connectRecording (url: string, opts: IClientOptions): Promise<{ client: MqttClient, got: Received[], sessionPresent: boolean }> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...opts })
  const got: Received[] = []
  client.on('message', (topic, payload) => { got.push({ topic, payload: payload.toString() }) })
  const sessionPresent = await new Promise<boolean>((resolve, reject) => {
    client.once('connect', (ack) => resolve(ack.sessionPresent))
    client.once('error', reject)
  })
  return { client, got, sessionPresent }
}

async function until (what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** Length of a session's offline queue as aedes-persistence-redis stores it. */
async function queuedInRedis (url: string, clientId: string): Promise<number> {
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 })
  try {
    await r.connect()
    return await r.llen(`outgoing:${encodeURIComponent(clientId)}`)
  } finally {
    r.disconnect()
  }
}

async function untilAsync (what: string, check: () => Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!await check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

async function publishAll (url: string, msgs: Array<[string, string, { retain?: boolean }?]>): Promise<void> {
  const pub = await connect(url)
  for (const [topic, payload, o] of msgs) await pub.publishAsync(topic, payload, { qos: 1, retain: o?.retain === true })
  await pub.endAsync()
}

test('with --redis a persistent session, its queue and retained messages survive a broker restart', async (t) => {
  const defer = stack(t)
  const redis = await startRedis()
  defer(() => redis.stop())
  const dataDir = tempDir()
  const args = ['--dev', '--redis', redis.url]
  const node1 = await startNode(args, { dataDir })
  defer(() => node1.close())

  const s1 = await connectRecording(node1.mqttUrl, { clientId: 'dur-sub', clean: false })
  assert.equal(s1.sessionPresent, false)
  await s1.client.subscribeAsync('room/a', { qos: 1 })
  await s1.client.endAsync()

  await publishAll(node1.mqttUrl, [['room/a', 'offline-1'], ['room/news', 'headline', { retain: true }]])
  // (The PUBACK came once Redis held it: puback-after-publish.ts.)
  await untilAsync('offline-1 in Redis', async () => await queuedInRedis(redis.url, 'dur-sub') === 1)
  await node1.close()

  // A new node on the same Redis (new data dir too: the session lives in Redis only).
  const node2 = await startNode(args)
  defer(() => node2.close())
  await publishAll(node2.mqttUrl, [['room/a', 'offline-2']])
  await untilAsync('offline-2 in Redis', async () => await queuedInRedis(redis.url, 'dur-sub') === 2)

  const s2 = await connectRecording(node2.mqttUrl, { clientId: 'dur-sub', clean: false })
  defer(() => s2.client.end(true))
  assert.equal(s2.sessionPresent, true)
  await until('both queued messages', () => s2.got.length >= 2)
  assert.deepEqual(s2.got, [{ topic: 'room/a', payload: 'offline-1' }, { topic: 'room/a', payload: 'offline-2' }])

  // The subscription itself survived: a live message arrives without re-subscribing.
  const live = nextMessage(s2.client, (topic) => topic === 'room/a')
  await publishAll(node2.mqttUrl, [['room/a', 'live']])
  assert.equal((await live).payload.toString(), 'live')

  // The retained message survived.
  const reader = await connect(node2.mqttUrl)
  defer(() => reader.end(true))
  const retained = nextMessage(reader)
  await reader.subscribeAsync('room/news', { qos: 1 })
  assert.equal((await retained).payload.toString(), 'headline')
})

test('without --redis (memory) sessions, queues and retained messages do not survive a restart (documented)', async (t) => {
  const defer = stack(t)
  const node1 = await startNode(['--dev'])
  defer(() => node1.close())
  const s1 = await connectRecording(node1.mqttUrl, { clientId: 'mem-sub', clean: false })
  await s1.client.subscribeAsync('room/a', { qos: 1 })
  await s1.client.endAsync()
  await publishAll(node1.mqttUrl, [['room/a', 'lost'], ['room/news', 'lost-retained', { retain: true }]])
  // Within one run the memory persistence does keep the session.
  const again = await connectRecording(node1.mqttUrl, { clientId: 'mem-sub', clean: false })
  assert.equal(again.sessionPresent, true)
  await until('the queued message', () => again.got.length >= 1)
  await again.client.endAsync()
  await publishAll(node1.mqttUrl, [['room/a', 'lost-2']])
  await node1.close()

  const node2 = await startNode(['--dev'])
  defer(() => node2.close())
  const s2 = await connectRecording(node2.mqttUrl, { clientId: 'mem-sub', clean: false })
  defer(() => s2.client.end(true))
  assert.equal(s2.sessionPresent, false)
  const reader = await connect(node2.mqttUrl)
  defer(() => reader.end(true))
  await reader.subscribeAsync('room/news', { qos: 1 })
  assert.deepEqual([...s2.got, ...await collect(reader, 300)], [])
})

test('Redis restarted (and killed) under a running broker: no crash, messages keep flowing, sessions still stored', async (t) => {
  const defer = stack(t)
  const redis = await startRedis()
  defer(() => redis.stop())
  const node = await startNode(['--dev', '--redis', redis.url])
  defer(() => node.close())
  const sub = await connectRecording(node.mqttUrl, { clientId: 'r-sub', clean: false })
  defer(() => sub.client.end(true))
  await sub.client.subscribeAsync('room/r', { qos: 1 })
  const pub = await connect(node.mqttUrl)
  defer(() => pub.end(true))
  await pub.publishAsync('room/r', 'before', { qos: 1 })

  await redis.restart()
  await pub.publishAsync('room/r', 'after-restart', { qos: 1 })
  // Delivery to a QoS 1 subscriber goes through Redis: this waits until the broker is reconnected.
  await until('the message after the restart', () => sub.got.length >= 2, 10_000)

  // A publish issued while Redis is being killed waits for it and still goes through.
  const killing = redis.restart({ kill: true })
  const during = pub.publishAsync('room/r', 'during-kill', { qos: 1 })
  await killing
  await during
  await pub.publishAsync('room/r', 'after-kill', { qos: 1 })
  await until('all four messages', () => sub.got.length >= 4, 15_000)
  assert.deepEqual(sub.got.map((m) => m.payload), ['before', 'after-restart', 'during-kill', 'after-kill'])

  // Persistent sessions still work end to end: go offline, get a queued message back.
  await sub.client.endAsync()
  await pub.publishAsync('room/r', 'queued', { qos: 1 })
  const back = await connectRecording(node.mqttUrl, { clientId: 'r-sub', clean: false })
  defer(() => back.client.end(true))
  await until('the queued message', () => back.got.length >= 1)
  assert.equal(back.got[0]?.payload, 'queued')
  assert.ok(node.broker.connectedClients >= 2)
})

test('start fails within a few seconds, naming redis, when Redis is unreachable or does not answer', async (t) => {
  const defer = stack(t)
  const nothing = await freePort()
  // A server that accepts connections and never answers.
  const mute = net.createServer((s) => { s.on('error', () => {}) })
  await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', () => resolve()))
  defer(() => { mute.close() })
  const mutePort = (mute.address() as net.AddressInfo).port

  const started = Date.now()
  await Promise.all([
    assert.rejects(startNode(['--dev', '--redis', `redis://127.0.0.1:${nothing}`]), /cannot connect to redis at redis:\/\/127\.0\.0\.1:\d+/),
    assert.rejects(startNode(['--dev', '--redis', `redis://:s3cret@127.0.0.1:${mutePort}`]), (err: Error) => {
      assert.match(err.message, /redis/)
      assert.ok(!err.message.includes('s3cret'), 'the password is not in the message')
      return true
    }),
    // The CLI prints one clear line and exits 1 (spawnNode rejects with its stderr).
    assert.rejects(spawnNode(['--dev', '--redis', `redis://127.0.0.1:${nothing}`], { timeoutMs: 10_000 }),
      /exited with 1 before ready; stderr:[^]*\nwarbler: cannot connect to redis at redis:\/\/127\.0\.0\.1:\d+\/?: .*ECONNREFUSED/)
  ])
  assert.ok(Date.now() - started < 9000, `took ${Date.now() - started} ms`)
})

/** Connect a raw MQTT 3.1.1 session and resolve to the first packet the server sends. */
async function firstPacket (port: number, clientId: string): Promise<Packet> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  const parser = mqttPacket.parser({ protocolVersion: 4 })
  try {
    return await new Promise<Packet>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no packet within 3 s')), 3000)
      parser.once('packet', (p: Packet) => { clearTimeout(timer); resolve(p) })
      socket.on('data', (d: Buffer) => { parser.parse(d) })
      socket.once('connect', () => {
        socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: false, keepalive: 30 }))
      })
    })
  } finally {
    socket.destroy()
  }
}

test('a persistent session reconnecting while its messages flow gets CONNACK as the first packet (MQTT-3.2.0-1)', async (t) => {
  // aedes restores the subscriptions before it writes CONNACK; a message routed
  // in between used to go out first, and mqtt.js then never saw the CONNACK.
  const defer = stack(t)
  const redis = await startRedis()
  defer(() => redis.stop())
  const node = await startNode(['--dev', '--redis', redis.url, '--publish-rate', '0'])
  defer(() => node.close())
  const s = await connect(node.mqttUrl, { clientId: 'flow-sub', clean: false })
  await s.subscribeAsync('room/flow', { qos: 1 })
  await s.endAsync()

  const pub = await connect(node.mqttUrl)
  defer(() => pub.end(true))
  let publishing = true
  const flow = (async () => {
    for (let i = 0; publishing; i++) await pub.publishAsync('room/flow', String(i), { qos: 1 })
  })()
  defer(async () => { publishing = false; await flow })
  for (let i = 0; i < 25; i++) {
    const p = await firstPacket(node.ports.mqtt as number, 'flow-sub')
    assert.equal(p.cmd, 'connack', `reconnect ${i}: first packet was ${p.cmd}`)
  }
  // And an mqtt.js client (the SDK's base) connects while the flow goes on.
  const again = await connectRecording(node.mqttUrl, { clientId: 'flow-sub', clean: false, connectTimeout: 3000 })
  defer(() => again.client.end(true))
  await until('live messages', () => again.got.length > 0)
})

test('a connected persistent session gets every QoS 1 message live while QoS 0 traffic overtakes it', async (t) => {
  // aedes' dedupe dropped a QoS 1 message (left queued until the next
  // reconnect) when a later QoS 0 message, routed without the Redis round
  // trip, reached the client first (delivery.ts).
  const defer = stack(t)
  const redis = await startRedis()
  defer(() => redis.stop())
  const node = await startNode(['--dev', '--redis', redis.url, '--publish-rate', '0'])
  defer(() => node.close())
  const sub = await connectRecording(node.mqttUrl, { clientId: 'mixed-sub', clean: false })
  defer(() => sub.client.end(true))
  // Overlapping subscriptions: each message must still arrive once.
  await sub.client.subscribeAsync({ 'mix/#': { qos: 1 }, 'mix/+': { qos: 1 } })
  const p1 = await connect(node.mqttUrl)
  defer(() => p1.end(true))
  const p0 = await connect(node.mqttUrl)
  defer(() => p0.end(true))
  const n = 200
  await Promise.all([
    (async () => { for (let i = 0; i < n; i++) await p1.publishAsync('mix/chat', String(i), { qos: 1 }) })(),
    (async () => {
      for (let i = 0; i < n; i++) {
        p0.publish('mix/typing', String(i), { qos: 0 })
        await new Promise((resolve) => setImmediate(resolve))
      }
    })()
  ])
  const chat = (): string[] => sub.got.filter((m) => m.topic === 'mix/chat').map((m) => m.payload)
  await until('every QoS 1 message', () => chat().length >= n)
  await until('every QoS 0 message', () => sub.got.length >= 2 * n)
  await new Promise((resolve) => setTimeout(resolve, 200))
  assert.deepEqual(chat(), Array.from({ length: n }, (_, i) => String(i)), 'each once, in order')
  assert.equal(sub.got.length, 2 * n, 'no duplicates from the overlapping subscriptions')
})

test('persistence errors are logged, never crash the process, and the broker recovers', async (t) => {
  const defer = stack(t)
  const redis = await startRedis()
  defer(() => redis.stop())
  const node = await startNode(['--dev', '--redis', redis.url])
  defer(() => node.close())
  // aedes emits 'error' on the broker where no client can be told: a listener is registered.
  assert.doesNotThrow(() => node.broker.emit('error', new Error('a test error')))

  const sub = await connectRecording(node.mqttUrl, { clientId: 'oom-sub', clean: false })
  defer(() => sub.client.end(true))
  await sub.client.subscribeAsync('room/oom', { qos: 1 })
  const admin = new Redis(redis.url)
  defer(() => admin.disconnect())
  // Redis now refuses every write (OOM), so queueing QoS 1 messages fails.
  await admin.config('SET', 'maxmemory-policy', 'noeviction')
  await admin.config('SET', 'maxmemory', '1')
  const pub = mqtt.connect(node.mqttUrl, { reconnectPeriod: 0, protocolVersion: 4 })
  defer(() => pub.end(true))
  pub.on('error', () => {})
  await new Promise((resolve) => pub.once('connect', resolve))
  pub.publish('room/oom', 'refused', { qos: 1 })
  pub.publish('room/oom', 'refused-retained', { qos: 0, retain: true })
  await new Promise((resolve) => setTimeout(resolve, 300))

  await admin.config('SET', 'maxmemory', '0')
  const pub2 = await connect(node.mqttUrl)
  defer(() => pub2.end(true))
  await pub2.publishAsync('room/oom', 'after', { qos: 1 })
  await until('the message after recovery', () => sub.got.some((m) => m.payload === 'after'))
})

test('with --redis a QoS 1 PUBACK waits until the message is queued in Redis: a broker killed before that owes the publisher nothing', async (t) => {
  const defer = stack(t)
  const redis = await startRedis()
  defer(() => redis.stop())
  const args = ['--dev', '--redis', redis.url]
  const node = await spawnNode(args)
  defer(() => node.stop('SIGKILL'))
  const url = `mqtt://127.0.0.1:${node.ports.mqtt}`
  const sub = await connect(url, { clientId: 'owed-sub', clean: false })
  await sub.subscribeAsync('room/owed', { qos: 1 })
  await sub.endAsync()

  const pub = await connect(url, { clientId: 'owed-pub', reconnectPeriod: 0 })
  defer(() => pub.end(true))
  await pub.publishAsync('room/owed', 'first', { qos: 1 })
  assert.equal(await queuedInRedis(redis.url, 'owed-sub'), 1, 'acknowledged, so already queued')

  // Redis stops answering: the next message cannot be queued, so it must not
  // be acknowledged (aedes alone acknowledges first and queues after).
  process.kill(redis.pid, 'SIGSTOP')
  defer(() => { process.kill(redis.pid, 'SIGCONT') })
  let acked = false
  void pub.publishAsync('room/owed', 'second', { qos: 1 }).then(() => { acked = true }, () => {})
  // The PUBLISH has reached the broker once the broker has asked Redis to
  // queue it; from then on an early PUBACK would already be on its way.
  await new Promise((resolve) => setTimeout(resolve, 300))
  assert.equal(acked, false, 'PUBACK before the message was queued')
  // Killed now, the broker never acknowledged it: nothing is owed.
  assert.equal(await node.stop('SIGKILL'), null)
  process.kill(redis.pid, 'SIGCONT')
  assert.equal(acked, false)
  // (Redis may still queue it, from the command in its socket: a publisher
  // that sends it again makes a duplicate, which QoS 1 allows; never a loss.)
})
