/**
 * MQTT 5 clients (mqtt.js `protocolVersion: 5`, and MQTT 5 packets made by
 * hand where mqtt.js will not send them) on every listener: the same logins,
 * the same chat through the message service, the same ACL as MQTT 3.1.1.
 * A topic alias names a topic by number: it must never carry a publish past
 * the ACL.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { AedesPublishPacket } from 'aedes'
import type { MqttClient } from 'mqtt'
import mqttPacket, { type Packet } from 'mqtt-packet'
import { ChatClient } from '../helpers/chat-client.js'
import { connect, nextMessage, startNode, type TestNode, tempDir } from '../helpers/test-node.js'
import { v5Connect, type V5Conn } from '../helpers/v5-raw.js'

const dir = tempDir('warbler-mqtt5-')
const cert = path.join(dir, 'cert.pem')
const key = path.join(dir, 'key.pem')
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' })
process.on('exit', () => { rmSync(dir, { recursive: true, force: true }) })

const USERS = ['alice', 'bob'].map((name) => ({ name, password: `${name}-password-1` }))
const pw = (user: string): string => `${user}-password-1`
const ALIAS_MAX = 4

type T = { after: (fn: () => unknown) => void }

/** Every publish the broker routes on `filter`, as it routes it. */
async function watch (t: T, node: TestNode, filter: string): Promise<Array<{ topic: string, payload: string }>> {
  const seen: Array<{ topic: string, payload: string }> = []
  const fn = (packet: AedesPublishPacket, cb: () => void): void => {
    seen.push({ topic: packet.topic, payload: Buffer.from(packet.payload).toString() })
    cb()
  }
  await new Promise<void>((resolve) => node.broker.subscribe(filter, fn, () => resolve()))
  t.after(() => new Promise<void>((resolve) => node.broker.unsubscribe(filter, fn, () => resolve())))
  return seen
}

async function until (cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

/** The SUBACK code of one filter (mqtt.js rejects on a failure code, with the SUBACK attached). */
async function grant (c: MqttClient, filter: string): Promise<number> {
  try {
    const granted = await c.subscribeAsync(filter, { qos: 1 })
    return granted[0]?.qos as number
  } catch (err) {
    const code = (err as { packet?: { granted?: number[], reasonCodes?: number[] } }).packet?.granted?.[0]
    if (code === undefined) throw err
    return code
  }
}

/** An MQTT 5 connection speaking packets made by hand (mqtt.js checks topic aliases against the CONNACK itself), logged in as `user`. */
async function v5Raw (t: T, port: number, clientId: string, user: string, properties?: Record<string, unknown>): Promise<V5Conn> {
  const c = await v5Connect(port, { clientId, username: user, password: Buffer.from(pw(user)), ...(properties !== undefined ? { properties } : {}) })
  t.after(() => { c.destroy() })
  return c
}

describe('MQTT 5 on every listener', { timeout: 60_000 }, () => {
  let node: TestNode
  before(async () => {
    node = await startNode(['--tls-cert', cert, '--tls-key', key, '--mqtts-port', '0', '--wss-port', '0', '--topic-alias-maximum', String(ALIAS_MAX)], { users: USERS })
  })
  after(() => node?.close())

  test('an MQTT 5 CONNECT is accepted on TCP, TLS, WebSocket and secure WebSocket, and chats through the message service', async (t) => {
    const listeners: Array<[string, string]> = [
      ['tcp', node.mqttUrl],
      ['tls', `mqtts://127.0.0.1:${node.ports.mqtts}`],
      ['ws', node.wsUrl],
      ['wss', `wss://127.0.0.1:${node.ports.wss}/mqtt`]
    ]
    for (const [name, url] of listeners) {
      const alice = await ChatClient.connect(url, 'alice', pw('alice'), { device: `v5-${name}`, protocolVersion: 5, rejectUnauthorized: false })
      t.after(() => alice.close())
      const bob = await ChatClient.connect(url, 'bob', pw('bob'), { device: `v5-${name}`, protocolVersion: 5, rejectUnauthorized: false })
      t.after(() => bob.close())
      const body = `hello bob over ${name}`
      const ack = await alice.sendOk({ to: 'bob' }, body)
      assert.equal(typeof ack.seq, 'number', name)
      await bob.until(() => bob.messages.some((m) => m.body === body), 5000, `bob's message over ${name}`)
      const reply = `hello alice over ${name}`
      await bob.sendOk({ to: 'alice' }, reply)
      await alice.until(() => alice.messages.some((m) => m.body === reply), 5000, `alice's message over ${name}`)
    }
  })

  test('the CONNACK of an MQTT 5 client says what the broker offers (topic aliases up to the setting, no shared subscriptions) and refuses with MQTT 5 reason codes', async (t) => {
    const c = await v5Raw(t, node.ports.mqtt as number, 'alice-connack', 'alice')
    const props = c.connack as { reasonCode?: number, properties?: Record<string, unknown> }
    assert.equal(props.reasonCode, 0)
    assert.equal(props.properties?.topicAliasMaximum, ALIAS_MAX)
    assert.equal(props.properties?.sharedSubscriptionAvailable, false)
    // A wrong password is refused with the MQTT 5 reason code (0x86).
    const wrong = await new Promise<number>((resolve) => {
      const s = net.connect({ port: node.ports.mqtt as number, host: '127.0.0.1' }, () => {
        s.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'alice-wrong', keepalive: 60, username: 'alice', password: Buffer.from('nope-nope-nope') }, { protocolVersion: 5 }))
      })
      const parser = mqttPacket.parser({ protocolVersion: 5 })
      parser.on('packet', (p: Packet) => { if (p.cmd === 'connack') { resolve((p as { reasonCode?: number }).reasonCode ?? -1); s.destroy() } })
      s.on('data', (d: Buffer) => { parser.parse(d) })
      s.on('error', () => {})
    })
    assert.equal(wrong, 0x86)
    // An empty client id: assigned when the session ends with the connection, refused (0x85) for a longer one.
    const assigned = await v5Raw(t, node.ports.mqtt as number, '', 'alice')
    const a = assigned.connack as { reasonCode?: number, properties?: { assignedClientIdentifier?: string } }
    assert.equal(a.reasonCode, 0)
    assert.ok((a.properties?.assignedClientIdentifier ?? '') !== '', JSON.stringify(a))
    const kept = await v5Raw(t, node.ports.mqtt as number, '', 'alice', { sessionExpiryInterval: 60 })
    assert.equal((kept.connack as { reasonCode?: number }).reasonCode, 0x85)
  })

  test('the ACL refuses an MQTT 5 client what it refuses an MQTT 3.1.1 one', async (t) => {
    const routed = await watch(t, node, '#')
    const sysRouted = await watch(t, node, '$SYS/#')
    for (const version of [4, 5] as const) {
      const clientId = `alice-acl${version}`
      const c = await connect(node.mqttUrl, { username: 'alice', password: pw('alice'), clientId, protocolVersion: version })
      t.after(() => c.endAsync(true))
      assert.equal(await grant(c, `wb/d/${clientId}`), 1, `v${version}: own device topic`)
      // Publishing into another user's topic: acknowledged (MQTT 5: PUBACK 0x87), never routed, a notice says why.
      const notice = nextMessage(c, (topic) => topic === `wb/d/${clientId}`)
      const ackCode = await c.publishAsync('wb/u/bob/out', `{"t":"msg","to":"alice","body":"forged v${version}"}`, { qos: 1 }).then(() => 0, (err: { code?: number }) => err.code)
      assert.equal(ackCode, version === 5 ? 0x87 : 0, `v${version}: PUBACK code`)
      const frame = JSON.parse((await notice).payload.toString()) as { code: string, topic: string }
      assert.deepEqual([frame.code, frame.topic], ['not_authorized', 'wb/u/bob/out'], `v${version}`)
      // Publishing to $SYS: never routed.
      await c.publishAsync('$SYS/broker/version', `forged v${version}`, { qos: 1 }).catch((err: { code?: number }) => { assert.equal(err.code, 0x87) })
      // Subscribing to another user's inbox, also as a shared subscription: refused.
      for (const f of ['wb/u/bob/inbox', 'wb/u/+/inbox', '$share/g/wb/u/bob/inbox', '$share/g/wb/u/+/inbox', '$SYS/#']) {
        const code = await grant(c, f)
        assert.ok(code >= 0x80, `v${version}: ${f} granted ${code}`)
      }
      // Positive control on the same connection: the own inbox is granted and delivered.
      assert.equal(await grant(c, 'wb/u/alice/inbox'), 1, `v${version}: own inbox`)
      const got = nextMessage(c, (topic) => topic === 'wb/u/alice/inbox')
      await new Promise<void>((resolve, reject) => {
        node.broker.publish({ cmd: 'publish', topic: 'wb/u/alice/inbox', payload: Buffer.from(`{"t":"msg","body":"v${version}"}`), qos: 0, retain: false, dup: false }, (err?: Error) => err ? reject(err) : resolve())
      })
      assert.equal((await got).payload.toString(), `{"t":"msg","body":"v${version}"}`)
    }
    assert.deepEqual(routed.filter((m) => m.payload.includes('forged')), [])
    assert.deepEqual(sysRouted.filter((m) => m.payload.includes('forged')), [])
  })

  test('a topic alias never carries a publish past the ACL; one out of range closes the connection with 0x94', async (t) => { await aliasesStayInTheAcl(t, node) })
})

/** Publishes with topic aliases, set and reused, to forbidden and own topics; then one past the maximum. */
async function aliasesStayInTheAcl (t: T, node: TestNode): Promise<void> {
  const routed = await watch(t, node, '#')
  const sysRouted = await watch(t, node, '$SYS/#')
  const sends = await watch(t, node, 'wb/u/+/out/#') // as the broker stamps them with the sender's client id
  const c = await v5Raw(t, node.ports.mqtt as number, 'alice-alias', 'alice')
  let mid = 0
  const publish = async (topic: string, alias: number, payload: string): Promise<void> => {
    const messageId = ++mid
    c.send({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, messageId, retain: false, dup: false, properties: { topicAlias: alias } })
    const ack = await c.next('puback') as { messageId?: number }
    assert.equal(ack.messageId, messageId)
  }
  // An alias set with a forbidden topic, then used alone: refused both times.
  await publish('wb/u/bob/out', 1, '{"t":"msg","to":"alice","body":"forged 1"}')
  await publish('', 1, '{"t":"msg","to":"alice","body":"forged 2"}')
  // An alias set with the client's own topic, moved to a forbidden one, then used alone.
  await publish('wb/u/alice/out', 2, '{"t":"msg","to":"bob","body":"own 1","cid":"a1"}')
  await publish('wb/u/bob/out', 2, '{"t":"msg","to":"alice","body":"forged 3"}')
  await publish('', 2, '{"t":"msg","to":"alice","body":"forged 4"}')
  await publish('$SYS/x', 3, 'forged 5')
  await publish('', 3, 'forged 6')
  await publish('wb/u/bob/inbox', 4, '{"t":"msg","body":"forged 7"}')
  await publish('', 4, '{"t":"msg","body":"forged 8"}')
  // Positive control: an alias of the client's own topic, used alone, is routed as that topic.
  await publish('wb/u/alice/out', 1, '{"t":"msg","to":"bob","body":"own 2","cid":"a2"}')
  await publish('', 1, '{"t":"msg","to":"bob","body":"own 3","cid":"a3"}')
  await until(() => sends.length === 3, 'the three own publishes')
  assert.deepEqual(routed.filter((m) => m.payload.includes('forged')), [])
  assert.deepEqual(sysRouted.filter((m) => m.payload.includes('forged')), [])
  assert.deepEqual(sends.map((m) => [m.topic, (JSON.parse(m.payload) as { body: string }).body]), [
    ['wb/u/alice/out/alice-alias', 'own 1'], ['wb/u/alice/out/alice-alias', 'own 2'], ['wb/u/alice/out/alice-alias', 'own 3']
  ])

  // Past topicAliasMaximum: DISCONNECT 0x94 (Topic Alias invalid), nothing routed.
  c.send({ cmd: 'publish', topic: 'wb/u/alice/out', payload: Buffer.from('{"t":"msg","to":"bob","body":"over the alias limit"}'), qos: 1, messageId: ++mid, retain: false, dup: false, properties: { topicAlias: ALIAS_MAX + 1 } })
  const disconnect = await c.next('disconnect') as { reasonCode?: number }
  assert.equal(disconnect.reasonCode, 0x94)
  await c.closed
  assert.equal(sends.length, 3)
  assert.equal(routed.filter((m) => m.payload.includes('over the alias limit')).length, 0)
}
