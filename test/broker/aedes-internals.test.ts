/**
 * The aedes fields and methods broker/aedes-internals.ts relies on are where
 * it reads them, with the shape it expects, in the installed aedes: a bare
 * aedes on a net server (port 0) with real mqtt.js clients. An aedes
 * upgrade that moves one fails here with the field's name.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import net from 'node:net'
import path from 'node:path'
import { test } from 'node:test'
import { Aedes, type AedesOptions, type AedesPublishPacket, type Client, type PublishPacket } from 'aedes'
import type { MqttClient } from 'mqtt'
import {
  AEDES_VERSION, authenticateError, clientDelivery, type DeliverPacket, setClientDelivery, setDuplicateMarks, clientOfConnection, clientSubscriptions, connackErrorCode,
  connectedClients, connectionParser, incomingStore, isRetainedReplay, keepaliveSeconds, pendingWill,
  protocolLevel, queueSource, routingEmitter, sentDisconnect, cleanStartRequested, outgoingStore, sessionTimers, willPaths, willRemover, wantsProblemInformation, markAnswered, setServerKeepAlive, onPacketRead, type ReadPacket
} from '../../broker/aedes-internals.js'
import { rawSocket } from '../helpers/raw.js'
import { v5Connect } from '../helpers/v5-raw.js'
import { connackCode, connect } from '../helpers/test-node.js'

/** An MQTT 3.1.1 CONNECT with an empty client id and clean session 0, no user name. */
const EMPTY_ID_PERSISTENT_CONNECT = Buffer.from([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x00, 0, 60, 0, 0])

const require = createRequire(import.meta.url)
const installed = (JSON.parse(readFileSync(path.join(path.dirname(require.resolve('aedes')), 'package.json'), 'utf8')) as { version: string }).version

/** Fails naming the aedes field that is not as broker/aedes-internals.ts expects. */
function field (name: string, ok: boolean, got: unknown): void {
  const shown = typeof got === 'function' ? 'a function' : got === undefined ? 'undefined' : JSON.stringify(got) ?? typeof got
  assert.ok(ok, `aedes ${installed} (accessors written for ${AEDES_VERSION}): ${name} is not as broker/aedes-internals.ts reads it; got ${shown}`)
}

interface Bare { broker: Aedes, url: string, close: () => Promise<void> }

async function startBare (t: { after: (fn: () => Promise<void>) => void }, opts: AedesOptions = {}, onClient?: (c: Client) => void): Promise<Bare> {
  const broker = await Aedes.createBroker(opts)
  const server = net.createServer((socket) => { const c = broker.handle(socket); onClient?.(c) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `mqtt://127.0.0.1:${(server.address() as net.AddressInfo).port}`
  const close = async (): Promise<void> => {
    await new Promise<void>((resolve) => { broker.close(() => resolve()) })
    await new Promise<void>((resolve) => { server.close(() => resolve()) })
  }
  t.after(close)
  return { broker, url, close }
}

function endClient (t: { after: (fn: () => Promise<void>) => void }, c: MqttClient): void {
  t.after(async () => { await c.endAsync(true) })
}

/** The aedes Client of a client id, once aedes has made it ready. */
function ready (b: Aedes, clientId: string): Promise<Client> {
  return new Promise((resolve) => {
    const on = (c: Client): void => {
      if (c.id !== clientId) return
      b.off('clientReady', on)
      resolve(c)
    }
    b.on('clientReady', on)
  })
}

test('broker fields: clients, mq, persistence.incomingGetPacket and outgoingStream', async (t) => {
  const { broker: b, url } = await startBare(t)
  const isReady = ready(b, 'one')
  endClient(t, await connect(url, { clientId: 'one' }))
  const one = await isReady

  const clients = connectedClients(b)
  field('Aedes.clients (by client id)', typeof clients === 'object' && clients !== null && clients.one === one, clients === undefined ? undefined : Object.keys(clients))
  const deleteClient = (b as unknown as { deleteClient?: unknown }).deleteClient
  field('Aedes.deleteClient(id)', typeof deleteClient === 'function' && deleteClient.length === 1, deleteClient)

  const mq = routingEmitter(b)
  field('Aedes.mq.on', typeof mq?.on === 'function', mq?.on)
  // The notice login-log.ts listens for: a new client of a broker, its id as the payload.
  const notice = new Promise<{ topic: string, payload: string }>((resolve) => {
    mq.on('$SYS/+/new/clients', (packet, done) => {
      done()
      if (packet.payload.toString() === 'two') resolve({ topic: packet.topic, payload: packet.payload.toString() })
    }, () => {})
  })
  endClient(t, await connect(url, { clientId: 'two' }))
  const seen = await notice
  field('Aedes.mq: $SYS/{broker id}/new/clients', seen.topic === `$SYS/${b.id}/new/clients`, seen.topic)

  const store = incomingStore(b)
  field('Aedes.persistence.incomingGetPacket', typeof store?.incomingGetPacket === 'function', store?.incomingGetPacket)
  const packet: PublishPacket = { cmd: 'publish', topic: 'x', payload: Buffer.alloc(0), qos: 2, retain: false, dup: false, messageId: 7 }
  // authorizePublish counts on a miss rejecting (not stored yet) and a hit resolving.
  const missed = await store.incomingGetPacket(one, packet).then(() => false, () => true)
  field('Aedes.persistence.incomingGetPacket rejects an unknown packet id', missed, missed)
  await (store as unknown as { incomingStorePacket: (c: Client, p: PublishPacket) => Promise<void> }).incomingStorePacket(one, packet)
  const hit = await store.incomingGetPacket(one, packet).then(() => true, () => false)
  field('Aedes.persistence.incomingGetPacket resolves a stored packet id', hit, hit)

  // delivery.ts reads a reconnecting session's queue through outgoingStream: packets with their routing marks.
  const queue = queueSource(b)
  field('Aedes.persistence.outgoingStream', typeof queue?.outgoingStream === 'function', queue?.outgoingStream)
  const p = (b as unknown as { persistence: { outgoingEnqueueCombi: (subs: Array<{ clientId: string }>, packet: object) => Promise<void> } }).persistence
  await p.outgoingEnqueueCombi([{ clientId: 'one' }], { cmd: 'publish', topic: 'q', payload: Buffer.from('x'), qos: 1, retain: false, brokerId: b.id, brokerCounter: 42 })
  const read: Array<{ brokerId?: string | null, brokerCounter?: number }> = []
  for await (const q of queue.outgoingStream(one)) read.push(q)
  field('Aedes.persistence.outgoingStream yields queued packets with brokerId and brokerCounter', read.length === 1 && read[0]?.brokerId === b.id && read[0]?.brokerCounter === 42, read)
})

test('client fields: subscriptions, deliverQoS, deliver0, duplicates, _parser.settings, _keepaliveInterval, version, will, conn.client', async (t) => {
  const { broker: b, url } = await startBare(t)
  const isReady = ready(b, 'fields')
  const subscribed = new Promise<void>((resolve) => { b.once('subscribe', () => resolve()) })
  const mc = await connect(url, {
    clientId: 'fields',
    clean: false,
    keepalive: 7,
    username: 'u',
    password: 'secret',
    will: { topic: 'gone/fields', payload: Buffer.from('bye'), qos: 0, retain: false }
  })
  endClient(t, mc)
  const c = await isReady
  await mc.subscribeAsync('a/+', { qos: 1 })
  await subscribed

  const subs = clientSubscriptions(c)
  field('Client.subscriptions (filter -> { qos })', typeof subs === 'object' && subs !== null && subs['a/+']?.qos === 1, subs)

  const delivery = clientDelivery(c)
  field('Client.deliverQoS', typeof delivery.deliverQoS === 'function', delivery.deliverQoS)
  field('Client.deliver0', typeof delivery.deliver0 === 'function', delivery.deliver0)
  const duplicates = (c as unknown as { duplicates?: unknown }).duplicates
  field('Client.duplicates (broker id -> counter)', typeof duplicates === 'object' && duplicates !== null, duplicates)

  const parser = connectionParser(c)
  field('Client._parser', typeof parser === 'object' && parser !== null, parser === undefined ? undefined : typeof parser)
  // The parsed CONNECT is what auth.ts trims: it holds the password until then.
  const settings = parser?.settings as (Record<string, unknown> | undefined)
  field('Client._parser.settings.protocolVersion', settings?.protocolVersion === 4, settings?.protocolVersion)
  field('Client._parser.settings (the CONNECT packet, password included)', Buffer.isBuffer(settings?.password), settings === undefined ? undefined : Object.keys(settings))

  field('Client._keepaliveInterval (keepalive * 1500 + 1)', keepaliveSeconds(c) === 7, (c as unknown as { _keepaliveInterval?: number })._keepaliveInterval)
  field('Client.version', protocolLevel(c) === 4, protocolLevel(c))
  const will = pendingWill(c) as { topic?: string } | null
  field('Client.will', will?.topic === 'gone/fields', will)
  field('Client.conn.client (the connection names its Client)', clientOfConnection(c.conn) === c, typeof clientOfConnection(c.conn))
  field('Client._disconnected (false while connected)', !sentDisconnect(c), (c as unknown as { _disconnected?: boolean })._disconnected)
})

test('Client._parser emits every packet read: the PUBACK for a delivered QoS 1 message, and MQTT 5 Receive Maximum is Client.receiveMaximum', async (t) => {
  const { broker: b, url } = await startBare(t)
  const isReady = ready(b, 'acks')
  const mc = await connect(url, { clientId: 'acks', protocolVersion: 5, properties: { receiveMaximum: 4 } })
  endClient(t, mc)
  const c = await isReady
  field('Client.receiveMaximum (the CONNECT\'s Receive Maximum)', c.receiveMaximum === 4, c.receiveMaximum)
  const read: ReadPacket[] = []
  onPacketRead(c, (p) => { read.push(p) })
  await mc.subscribeAsync('acks/x', { qos: 1 })
  const got = new Promise<number | undefined>((resolve) => { mc.once('message', (_t, _p, packet) => { resolve(packet.messageId) }) })
  b.publish({ cmd: 'publish', topic: 'acks/x', payload: Buffer.from('x'), qos: 1, retain: false, dup: false }, () => {})
  const id = await got
  for (let i = 0; i < 500 && !read.some((p) => p.cmd === 'puback'); i++) await new Promise((resolve) => setTimeout(resolve, 10))
  const ack = read.find((p) => p.cmd === 'puback')
  field('Client._parser.on(\'packet\') (the PUBACK of a delivered message)', ack !== undefined && ack.messageId === id, read.map((p) => p.cmd))
})

test('Client._disconnected tells a DISCONNECT from a lost connection', async (t) => {
  const { broker: b, url } = await startBare(t)
  const gone = (id: string): Promise<Client> => new Promise((resolve) => {
    const on = (c: Client): void => {
      if (c.id !== id) return
      b.off('clientDisconnect', on)
      resolve(c)
    }
    b.on('clientDisconnect', on)
  })
  const polite = await connect(url, { clientId: 'polite' })
  const politeGone = gone('polite')
  await polite.endAsync()
  field('Client._disconnected (true after DISCONNECT)', sentDisconnect(await politeGone), false)

  const lost = await connect(url, { clientId: 'lost' })
  const lostGone = gone('lost')
  lost.stream.destroy()
  field('Client._disconnected (false when the connection is lost)', !sentDisconnect(await lostGone), true)
  await lost.endAsync(true)
})

test('a retained message sent for a new subscription has brokerId null; a live one does not', async (t) => {
  const forwarded: AedesPublishPacket[] = []
  const { broker: b, url } = await startBare(t, {
    authorizeForward: (_client, packet) => { forwarded.push(packet); return packet }
  })
  await new Promise<void>((resolve) => {
    b.publish({ cmd: 'publish', topic: 'r/kept', payload: Buffer.from('old'), qos: 0, retain: true, dup: false }, () => resolve())
  })
  const mc = await connect(url, { clientId: 'replay' })
  endClient(t, mc)
  const retained = new Promise<void>((resolve) => { mc.once('message', () => resolve()) })
  await mc.subscribeAsync('r/#', { qos: 0 })
  await retained
  const replay = forwarded.find((p) => p.topic === 'r/kept')
  field('retained replay: packet.brokerId === null (lib/handlers/subscribe.js)', replay !== undefined && isRetainedReplay(replay), replay?.brokerId)

  const live = new Promise<void>((resolve) => { mc.once('message', () => resolve()) })
  await new Promise<void>((resolve) => {
    b.publish({ cmd: 'publish', topic: 'r/live', payload: Buffer.from('new'), qos: 0, retain: false, dup: false }, () => resolve())
  })
  await live
  const routed = forwarded.find((p) => p.topic === 'r/live')
  field('live delivery: packet.brokerId is the broker id', routed !== undefined && !isRetainedReplay(routed) && routed.brokerId === b.id, routed?.brokerId)
})

test('a refused CONNECT carries its CONNACK code as err.errorCode; authenticate errors set the code', async (t) => {
  const refusals: Array<{ message: string, code: number | undefined }> = []
  const { broker: b, url } = await startBare(t, {
    authenticate: (_client, username, _password, done) => {
      if (username === 'nobody') done(authenticateError('bad user name or password', 4), false)
      else done(null, true)
    }
  })
  b.on('clientError', (_client, err) => { refusals.push({ message: err.message, code: connackErrorCode(err) }) })
  b.on('connectionError', (_client, err) => { refusals.push({ message: err.message, code: connackErrorCode(err) }) })

  // MQTT 5 is accepted since aedes 2 ...
  const v5 = await connackCode(url, { protocolVersion: 5, clientId: 'five' }).catch((err: unknown) => err)
  field('CONNACK of an MQTT 5 CONNECT (accepted)', v5 === 0, v5)
  // ... and refused by aedes itself: an empty MQTT 3.1.1 client id without clean session (CONNACK 2) ...
  // By hand: mqtt.js and mqtt-packet will not build it.
  const raw = await rawSocket(Number(new URL(url).port))
  raw.send(EMPTY_ID_PERSISTENT_CONNECT)
  const empty = (await raw.next((x) => x.cmd === 'connack') as { returnCode?: number }).returnCode
  raw.destroy()
  field('CONNACK of an empty client id without clean session', empty === 2, empty)
  // ... and by the authenticate hook, through authenticateError (CONNACK 4).
  const code = await connackCode(url, { clientId: 'nobody', username: 'nobody', password: 'x' })
  field('AuthenticateError.returnCode as the CONNACK code', code === 4, code)

  const deadline = Date.now() + 5000
  while (refusals.length < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
  const version = refusals.find((r) => r.message === 'identifier rejected')
  field('err.errorCode of a CONNECT aedes refuses (lib/handlers/connect.js)', version?.code === 2, refusals)
  const auth = refusals.find((r) => r.message === 'bad user name or password')
  field('err.errorCode of a CONNECT the authenticate hook refuses', auth?.code === 4, refusals)
})

test('aedes delivers through the deliverQoS and deliver0 set right after handle(), and dedupes with the duplicates set there', async (t) => {
  const calls = { deliverQoS: 0, deliver0: 0 }
  const marks: Record<string, number> = {}
  const { url } = await startBare(t, {}, (c) => {
    // As delivery.ts does: wrap both before the client's subscriptions exist.
    const { deliverQoS, deliver0 } = clientDelivery(c)
    setDuplicateMarks(c, marks)
    setClientDelivery(c, {
      deliverQoS: (p: DeliverPacket, cb) => { calls.deliverQoS++; deliverQoS(p, cb) },
      deliver0: (p: DeliverPacket, cb) => { calls.deliver0++; deliver0(p, cb) }
    })
  })
  const sub = await connect(url, { clientId: 'wrapped' })
  endClient(t, sub)
  await sub.subscribeAsync('w/1', { qos: 1 })
  await sub.subscribeAsync('w/0', { qos: 0 })
  const pub = await connect(url, { clientId: 'sender' })
  endClient(t, pub)
  for (const [topic, qos] of [['w/1', 1], ['w/0', 0]] as const) {
    const got = new Promise<void>((resolve) => { sub.once('message', () => resolve()) })
    await pub.publishAsync(topic, 'x', { qos })
    await got
  }
  field('Client.deliverQoS (read by lib/handlers/subscribe.js when subscribing)', calls.deliverQoS > 0, calls)
  field('Client.deliver0 (read by lib/handlers/subscribe.js when subscribing)', calls.deliver0 > 0, calls)
  field('Client.duplicates (written by dedupe in lib/client.js)', Object.keys(marks).length > 0, marks)
})

test('the fields aedes-fixes.ts reads: _cleanStart, clean, Subscription.si, publishWill, persistence.streamWill and outgoingClearMessageId', async (t) => {
  const { broker: b, url } = await startBare(t)
  const isReady = ready(b, 'v5')
  const c = await connect(url, { clientId: 'v5', protocolVersion: 5, clean: false })
  endClient(t, c)
  const client = await isReady
  field('Client._cleanStart (Clean Start 0)', cleanStartRequested(client) === false && (client as unknown as { _cleanStart?: unknown })._cleanStart === false, (client as unknown as { _cleanStart?: unknown })._cleanStart)
  field('Client.clean (Session Expiry Interval 0)', client.clean, client.clean)
  await c.subscribeAsync('si/t', { qos: 1, properties: { subscriptionIdentifier: 9 } })
  const sub = clientSubscriptions(client)['si/t']
  field('Client.subscriptions[filter].si', sub?.si === 9, sub)
  const { publisher, store } = willPaths(b)
  field('Aedes.publishWill(client, will)', typeof publisher.publishWill === 'function' && publisher.publishWill.length === 2, publisher.publishWill)
  field('Aedes.persistence.streamWill', typeof store?.streamWill === 'function', store?.streamWill)
  const out = outgoingStore(b)
  field('Aedes.persistence.outgoingClearMessageId', typeof out?.outgoingClearMessageId === 'function', out?.outgoingClearMessageId)
})

test('the fields session-handover.ts reads: clearSessionExpiry, clearDelayedWill, _takingOver, persistence.delWill', async (t) => {
  const { broker: b, url } = await startBare(t)
  const raw = b as unknown as Record<string, unknown>
  field('Aedes.clearSessionExpiry(id)', typeof raw.clearSessionExpiry === 'function', raw.clearSessionExpiry)
  field('Aedes.clearDelayedWill(id)', typeof raw.clearDelayedWill === 'function', raw.clearDelayedWill)
  field('Aedes._takingOver (a Set of client ids)', raw._takingOver instanceof Set, raw._takingOver)
  // A lost connection's delayed will is timed under its id, and clearing it cancels it.
  const c = await connect(url, { clientId: 'w5', protocolVersion: 5, properties: { sessionExpiryInterval: 60 }, will: { topic: 'w/t', payload: Buffer.from('x'), qos: 0, retain: false, properties: { willDelayInterval: 60 } } })
  c.stream.destroy()
  await c.endAsync(true)
  const delayed = raw.delayedWills as Map<string, unknown>
  const expiring = raw.expiringSessions as Map<string, unknown>
  const deadline = Date.now() + 5000
  while (!(delayed.has('w5') && expiring.has('w5')) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
  field('Aedes.delayedWills and expiringSessions keyed by client id', delayed.has('w5') && expiring.has('w5'), [...delayed.keys(), ...expiring.keys()])
  const timers = sessionTimers(b)
  timers.clearDelayedWill('w5')
  timers.clearSessionExpiry('w5')
  field('clearDelayedWill/clearSessionExpiry remove the entries', !delayed.has('w5') && !expiring.has('w5'), [...delayed.keys(), ...expiring.keys()])
  field('_takingOver through sessionTimers', timers.takingOver === raw._takingOver, timers.takingOver)
  const removed = willRemover(b)('w5', b.id)
  field('Aedes.persistence.delWill({ id, brokerId }) returns a promise', removed instanceof Promise, removed)
  await removed
})

test('MQTT 5 fields: Request Problem Information, a publish marked answered, a Server Keep Alive set at preConnect', async (t) => {
  const routed: string[] = []
  const clients: Client[] = []
  const { broker: b, url } = await startBare(t, {
    preConnect (client, packet, done) {
      if (packet.clientId === 'short') setServerKeepAlive(client, 5)
      done(null, true)
    },
    authorizePublish (client, packet, done) {
      if (packet.topic === 'answered') markAnswered(packet)
      done(null)
    }
  }, (c) => { clients.push(c) })
  b.subscribe('#', (packet, cb) => { routed.push(packet.topic); cb() }, () => {})
  const port = Number(new URL(url).port)
  const short = await v5Connect(port, { clientId: 'short', keepalive: 60 })
  t.after(() => { short.socket.destroy() })
  field('Client._serverKeepAlive (Server Keep Alive in CONNACK)', short.connack.properties?.serverKeepAlive === 5, short.connack.properties)
  const quiet = await v5Connect(port, { clientId: 'quiet', properties: { requestProblemInformation: false } })
  t.after(() => { quiet.socket.destroy() })
  const byId = (id: string): Client => clients.find((c) => c.id === id) as Client
  field('Client._requestProblemInformation (false when asked)', !wantsProblemInformation(byId('quiet')), (byId('quiet') as unknown as { _requestProblemInformation?: boolean })._requestProblemInformation)
  field('Client._requestProblemInformation (true by default)', wantsProblemInformation(byId('short')), (byId('short') as unknown as { _requestProblemInformation?: boolean })._requestProblemInformation)
  // A marked publish is neither acknowledged nor routed; the next one is both.
  short.send({ cmd: 'publish', topic: 'answered', payload: Buffer.from('x'), qos: 1, messageId: 1, retain: false, dup: false })
  short.send({ cmd: 'publish', topic: 'plain', payload: Buffer.from('x'), qos: 1, messageId: 2, retain: false, dup: false })
  const ack = await short.next('puback')
  field('PublishPacket._notAuthorized (not acknowledged)', ack.messageId === 2, ack.messageId)
  for (let i = 0; i < 500 && !routed.includes('plain'); i++) await new Promise((resolve) => setTimeout(resolve, 10))
  field('PublishPacket._notAuthorized (not routed)', !routed.includes('answered') && routed.includes('plain'), routed)
})
