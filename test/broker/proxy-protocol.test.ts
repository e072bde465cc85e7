/**
 * PROXY protocol on the MQTT and WebSocket listeners (`--proxy-protocol`):
 * the header's parser on its own, then a real node over real sockets (the
 * client address a header names is the one the per-address limits use; a
 * connection without a valid header is closed and harms nothing else), then
 * Debian's HAProxy with send-proxy-v2 in front of a node.
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { test } from 'node:test'
import mqtt, { type IClientOptions, MqttClient } from 'mqtt'
import { createWebSocketStream, WebSocket } from 'ws'
import { connectedClients } from '../../broker/aedes-internals.js'
import { parseProxyHeader, ProxyHeaderError } from '../../broker/proxy-protocol.js'
import { remoteAddress } from '../../broker/session.js'
import { startHaproxy } from '../helpers/haproxy.js'
import { freePort, waitForPort } from '../helpers/ports.js'
import { startNode, type TestNode } from '../helpers/test-node.js'

const PW = 'password-123'
const users = [{ name: 'alice', password: PW }, { name: 'bob', password: PW }]

function v2 (command: number, famProto: number, body: Buffer): Buffer {
  const head = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x20 | command, famProto, 0, 0])
  head.writeUInt16BE(body.length, 14)
  return Buffer.concat([head, body])
}

function v2ipv4 (src: number[], srcPort = 40000): Buffer {
  const body = Buffer.alloc(12)
  Buffer.from(src).copy(body, 0)
  Buffer.from([127, 0, 0, 1]).copy(body, 4)
  body.writeUInt16BE(srcPort, 8)
  body.writeUInt16BE(1883, 10)
  return v2(1, 0x11, body)
}

test('parseProxyHeader: v1 and v2, partial headers wait, bad ones are named', () => {
  const v1 = Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 51000 1883\r\n\x10\x0c')
  assert.deepEqual(parseProxyHeader(v1), { address: '203.0.113.7', length: v1.length - 2 })
  assert.deepEqual(parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::7 2001:db8::1 51000 1883\r\n')), { address: '2001:db8::7', length: 47 })
  assert.deepEqual(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n')), { address: null, length: 15 })
  assert.equal(parseProxyHeader(Buffer.from('PROX')), null)
  assert.equal(parseProxyHeader(Buffer.from('PROXY TCP4 203.0.113.7')), null)
  assert.deepEqual(parseProxyHeader(v2ipv4([198, 51, 100, 9])), { address: '198.51.100.9', length: 28 })
  const six = Buffer.alloc(36)
  Buffer.from('20010db8000000000000000000000007', 'hex').copy(six, 0)
  assert.deepEqual(parseProxyHeader(v2(1, 0x21, six)), { address: '2001:db8::7', length: 52 })
  const mapped = Buffer.alloc(36)
  Buffer.from('00000000000000000000ffffc6336409', 'hex').copy(mapped, 0)
  assert.equal(parseProxyHeader(v2(1, 0x21, mapped))?.address, '::ffff:198.51.100.9')
  assert.deepEqual(parseProxyHeader(v2(0, 0x00, Buffer.alloc(0))), { address: null, length: 16 }, 'LOCAL keeps the peer')
  assert.equal(parseProxyHeader(v2ipv4([198, 51, 100, 9]).subarray(0, 20)), null)
  const bad: Array<[Buffer | string, RegExp]> = [
    [Buffer.from([0x10, 0x0c, 0x00, 0x04]), /does not start with a PROXY protocol header/],
    ['GET /mqtt HTTP/1.1\r\n', /does not start with a PROXY protocol header/],
    ['PROXY TCP4 999.0.0.1 10.0.0.1 1 2\r\n', /not TCP4 addresses/],
    ['PROXY TCP4 203.0.113.7 2001:db8::1 1 2\r\n', /not TCP4 addresses/],
    ['PROXY TCP4 203.0.113.7 10.0.0.1 70000 2\r\n', /bad port "70000"/],
    ['PROXY UDP4 203.0.113.7 10.0.0.1 1 2\r\n', /unknown protocol "UDP4"/],
    ['PROXY TCP4 203.0.113.7\r\n', /expected "PROXY TCP4\|TCP6/],
    [`PROXY TCP4 ${'1'.repeat(120)}`, /no CRLF within 107 bytes/],
    [Buffer.concat([v2ipv4([1, 2, 3, 4]).subarray(0, 12), Buffer.from([0x31, 0x11, 0, 12])]), /version 3, expected 2/],
    [Buffer.concat([v2ipv4([1, 2, 3, 4]).subarray(0, 12), Buffer.from([0x21, 0x11, 0xff, 0xff])]), /more than/],
    [v2(1, 0x11, Buffer.alloc(4)), /too short for TCP over IPv4/]
  ]
  for (const [input, message] of bad) {
    assert.throws(() => parseProxyHeader(Buffer.isBuffer(input) ? input : Buffer.from(input)), (e: unknown) => e instanceof ProxyHeaderError && message.test(e.message), String(input))
  }
})

/** An MQTT client whose TCP connection first sends `header`. */
async function viaHeader (port: number, header: Buffer | string, opts: IClientOptions): Promise<MqttClient> {
  const client = new MqttClient(() => {
    const socket = net.connect(port, '127.0.0.1')
    socket.write(header)
    return socket
  }, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 3000, ...opts })
  return await connected(client)
}

function connected (client: MqttClient): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client))
    client.once('error', (err) => { client.end(true); reject(err) })
    client.once('close', () => reject(new Error('closed before CONNACK')))
  })
}

function addressOf (node: TestNode, clientId: string): string {
  const c = connectedClients(node.broker)[clientId]
  assert.ok(c !== undefined, `${clientId} is connected`)
  return remoteAddress(c)
}

test('a node with --proxy-protocol: the header\'s address is the client\'s, for limits too; no header, no connection', async (t) => {
  const node = await startNode(['--proxy-protocol', '--conn-rate', '1', '--conn-burst', '1'], { users })
  t.after(() => node.close())
  const port = node.ports.mqtt as number
  const login = (id: string): IClientOptions => ({ username: id.split('-')[0], password: PW, clientId: id })

  const a = await viaHeader(port, 'PROXY TCP4 203.0.113.7 127.0.0.1 51000 1883\r\n', login('alice-v1'))
  t.after(() => a.endAsync(true))
  assert.equal(addressOf(node, 'alice-v1'), '203.0.113.7')
  const six = Buffer.alloc(36)
  Buffer.from('20010db8000000000000000000000007', 'hex').copy(six, 0)
  const b = await viaHeader(port, v2(1, 0x21, six), login('bob-v2'))
  t.after(() => b.endAsync(true))
  assert.equal(addressOf(node, 'bob-v2'), '2001:db8::7')
  // The per-address connection rate (1, burst 1) counts the claimed address: 203.0.113.7 is spent, 203.0.113.8 is not.
  await assert.rejects(viaHeader(port, 'PROXY TCP4 203.0.113.7 127.0.0.1 51001 1883\r\n', login('alice-again')), /Server unavailable/)
  const c = await viaHeader(port, 'PROXY TCP4 203.0.113.8 127.0.0.1 51002 1883\r\n', login('alice-other'))
  t.after(() => c.endAsync(true))
  // A LOCAL header (a proxy's health check) keeps the socket's own address.
  const d = await viaHeader(port, v2(0, 0x00, Buffer.alloc(0)), login('bob-local'))
  t.after(() => d.endAsync(true))
  assert.equal(addressOf(node, 'bob-local'), '127.0.0.1')

  // No header, or a bad one: closed before MQTT; the connected clients are untouched.
  await assert.rejects(connected(mqtt.connect(`mqtt://127.0.0.1:${port}`, { ...login('alice-plain'), reconnectPeriod: 0, connectTimeout: 3000 })))
  await assert.rejects(viaHeader(port, 'PROXY TCP4 999.0.0.1 127.0.0.1 1 2\r\n', login('alice-bad')))
  const echo = new Promise<string>((resolve) => a.once('message', (_t, p) => resolve(p.toString())))
  await a.subscribeAsync('wb/d/alice-v1')
  await c.subscribeAsync('wb/d/alice-other')
  await a.publishAsync('wb/u/alice/out', '{"t":"req","id":"r1","op":"convs"}', { qos: 1 })
  assert.match(await echo, /"t":"res"/)

  // The WebSocket listener reads the header too.
  const ws = new WebSocket(`ws://127.0.0.1:${node.ports.ws as number}/mqtt`, 'mqtt', {
    createConnection: () => {
      const s = net.connect(node.ports.ws as number, '127.0.0.1')
      s.write('PROXY TCP4 198.51.100.20 127.0.0.1 52000 8083\r\n')
      return s
    }
  })
  const overWs = new MqttClient(() => createWebSocketStream(ws), { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 3000, ...login('bob-ws') })
  t.after(() => overWs.endAsync(true))
  await connected(overWs)
  assert.equal(addressOf(node, 'bob-ws'), '198.51.100.20')
})

test('behind Debian\'s HAProxy with send-proxy-v2, the node sees the client\'s own address', async (t) => {
  const node = await startNode(['--proxy-protocol'], { users })
  t.after(() => node.close())
  const lbPort = await freePort()
  const hap = startHaproxy([
    'global', '  maxconn 100',
    'defaults', '  mode tcp', '  timeout connect 1s', '  timeout client 30s', '  timeout server 30s',
    'frontend mqtt', `  bind 127.0.0.1:${lbPort}`, '  default_backend node',
    'backend node', `  server n1 127.0.0.1:${node.ports.mqtt as number} send-proxy-v2`, ''
  ].join('\n'))
  t.after(hap.stop)
  await waitForPort(lbPort)
  // From 127.0.0.9: HAProxy itself reaches the node from 127.0.0.1.
  const client = new MqttClient(() => net.connect({ port: lbPort, host: '127.0.0.1', localAddress: '127.0.0.9' }), {
    protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 3000, username: 'alice', password: PW, clientId: 'alice-lb'
  })
  t.after(() => client.endAsync(true))
  await connected(client).catch((err: unknown) => { throw new Error(`${String(err)}; haproxy: ${hap.log()}`) })
  assert.equal(addressOf(node, 'alice-lb'), '127.0.0.9')
})
