/**
 * Graceful shutdown (close() and SIGTERM): clients get their wills while the
 * other clients are still connected, the persistence is flushed (with Redis
 * the sessions, queued messages and wills published at shutdown are there for
 * the next start), the process exits 0, and close() is idempotent.
 */
import assert from 'node:assert/strict'
import { test, type TestContext } from 'node:test'
import { Redis } from 'ioredis'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { startRedis } from '../helpers/redis.js'
import { connect, spawnNode, startNode } from '../helpers/test-node.js'

function stack (t: TestContext): (fn: () => unknown) => void {
  const fns: Array<() => unknown> = []
  t.after(async () => { for (const fn of fns.reverse()) await fn() })
  return (fn) => { fns.push(fn) }
}

/** Everything a client sees, in order: messages and the close of its connection. */
function record (client: MqttClient): string[] {
  const events: string[] = []
  client.on('message', (topic, payload) => { events.push(`${topic} ${payload.toString()}`) })
  client.on('close', () => { events.push('close') })
  return events
}

async function connectRecording (url: string, opts: IClientOptions): Promise<{ client: MqttClient, events: string[] }> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...opts })
  const events = record(client)
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve())
    client.once('error', reject)
  })
  return { client, events }
}

async function until (what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

const will = (payload: string, qos: 0 | 1 = 1): IClientOptions['will'] => ({ topic: 'presence/gone', payload: Buffer.from(payload), qos, retain: false })

test('on SIGTERM connected subscribers receive the wills before their own connection closes; exit 0', async (t) => {
  const defer = stack(t)
  const node = await spawnNode(['--dev'])
  defer(() => node.stop('SIGKILL'))
  const url = `mqtt://127.0.0.1:${node.ports.mqtt}`
  const tcpSub = await connect(url)
  defer(() => tcpSub.end(true))
  const tcpEvents = record(tcpSub)
  await tcpSub.subscribeAsync('presence/#', { qos: 1 })
  const wsSub = await connect(`ws://127.0.0.1:${node.ports.ws}/mqtt`)
  defer(() => wsSub.end(true))
  const wsEvents = record(wsSub)
  await wsSub.subscribeAsync('presence/#', { qos: 0 })
  const holders: MqttClient[] = []
  for (const name of ['a', 'b', 'c']) {
    const h = await connect(url, { clientId: `holder-${name}`, will: will(`${name} gone`, name === 'c' ? 0 : 1) })
    holders.push(h)
    defer(() => h.end(true))
  }
  // A client that says goodbye with DISCONNECT has no will published.
  const polite = await connect(url, { clientId: 'polite', will: will('polite gone') })
  await polite.endAsync()

  assert.equal(await node.stop('SIGTERM'), 0)
  for (const events of [tcpEvents, wsEvents]) {
    await until('the close', () => events.includes('close'))
    const wills = events.slice(0, events.indexOf('close')).sort()
    assert.deepEqual(wills, ['presence/gone a gone', 'presence/gone b gone', 'presence/gone c gone'])
  }
})

test('close() is idempotent: concurrent and repeated calls resolve, wills published once', async (t) => {
  const defer = stack(t)
  const node = await startNode(['--dev'])
  defer(() => node.close())
  const sub = await connectRecording(node.mqttUrl, { clientId: 'watcher' })
  defer(() => sub.client.end(true))
  await sub.client.subscribeAsync('presence/#', { qos: 1 })
  const holder = await connect(node.mqttUrl, { clientId: 'holder', will: will('holder gone') })
  defer(() => holder.end(true))
  await Promise.all([node.close(), node.close()])
  await node.close()
  await until('the close', () => sub.events.includes('close'))
  assert.deepEqual(sub.events, ['presence/gone holder gone', 'close'])
  // Nothing listens any more.
  await assert.rejects(connect(node.mqttUrl, { connectTimeout: 1000 }))
})

test('with --redis, after SIGTERM Redis holds the persistent session, its queue and the will; the next start delivers them', async (t) => {
  const defer = stack(t)
  const redis = await startRedis()
  defer(() => redis.stop())
  const args = ['--dev', '--redis', redis.url]
  const node1 = await spawnNode(args)
  defer(() => node1.stop('SIGKILL'))
  const url1 = `mqtt://127.0.0.1:${node1.ports.mqtt}`
  const sub = await connect(url1, { clientId: 'durable', clean: false })
  await sub.subscribeAsync('presence/#', { qos: 1 })
  await sub.endAsync()
  const holder = await connect(url1, { clientId: 'holder', will: will('holder gone') })
  defer(() => holder.end(true))
  const pub = await connect(url1)
  await pub.publishAsync('presence/note', 'queued', { qos: 1 })
  await pub.endAsync()

  assert.equal(await node1.stop('SIGTERM'), 0)

  // Straight from Redis: the session and both queued messages (the last one is the will).
  const r = new Redis(redis.url)
  defer(() => r.disconnect())
  assert.ok((await r.smembers('clients')).includes('durable'))
  assert.equal(await r.llen('outgoing:durable'), 2)
  assert.deepEqual(await r.lrange('will', 0, -1), [], 'the will was published, not left for a later broker')

  const node2 = await startNode(args)
  defer(() => node2.close())
  const back = await connectRecording(node2.mqttUrl, { clientId: 'durable', clean: false })
  defer(() => back.client.end(true))
  await until('both messages', () => back.events.length >= 2)
  assert.deepEqual(back.events, ['presence/note queued', 'presence/gone holder gone'])
})

test('SIGTERM with Redis down still exits 0 within a few seconds', async (t) => {
  const defer = stack(t)
  const redis = await startRedis()
  defer(() => redis.stop())
  const node = await spawnNode(['--dev', '--redis', redis.url])
  defer(() => node.stop('SIGKILL'))
  const c = await connect(`mqtt://127.0.0.1:${node.ports.mqtt}`, { clientId: 'idle' })
  defer(() => c.end(true))
  await redis.stop()
  const t0 = Date.now()
  assert.equal(await node.stop('SIGTERM'), 0)
  assert.ok(Date.now() - t0 < 8000, `took ${Date.now() - t0} ms`)
  assert.match(node.stderr(), /redis connection lost/)
})
