/**
 * TLS listeners: MQTT over TLS (mqtts) and secure WebSocket (wss) with a
 * self-signed certificate made here with openssl; only configured listeners
 * start; a bad certificate stops the start naming tlsCert.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { connect, nextMessage, spawnNode, startNode, tempDir } from '../helpers/test-node.js'

const dir = tempDir('warbler-tls-')
const cert = path.join(dir, 'cert.pem')
const key = path.join(dir, 'key.pem')
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' })
process.on('exit', () => { rmSync(dir, { recursive: true, force: true }) })

const tlsArgs = ['--dev', '--tls-cert', cert, '--tls-key', key, '--mqtts-port', '0', '--wss-port', '0']

test('mqtts and wss exchange messages with a plain TCP client', async (t) => {
  const node = await startNode(tlsArgs)
  t.after(() => node.close())
  assert.deepEqual(Object.keys(node.ports).sort(), ['http', 'mqtt', 'mqtts', 'ws', 'wss'])

  const plain = await connect(node.mqttUrl)
  t.after(() => plain.end(true))
  // Verified against the certificate itself (its name is localhost).
  const secure = await connect(`mqtts://127.0.0.1:${node.ports.mqtts}`, { ca: readFileSync(cert), servername: 'localhost', rejectUnauthorized: true })
  t.after(() => secure.end(true))
  const wss = await connect(`wss://127.0.0.1:${node.ports.wss}/mqtt`, { rejectUnauthorized: false })
  t.after(() => wss.end(true))
  await plain.subscribeAsync('tls/to-plain', { qos: 1 })
  await secure.subscribeAsync('tls/to-secure', { qos: 1 })
  await wss.subscribeAsync('tls/to-wss', { qos: 1 })

  let got = nextMessage(plain)
  await secure.publishAsync('tls/to-plain', 'from mqtts', { qos: 1 })
  assert.equal((await got).payload.toString(), 'from mqtts')
  got = nextMessage(plain)
  await wss.publishAsync('tls/to-plain', 'from wss', { qos: 1 })
  assert.equal((await got).payload.toString(), 'from wss')
  got = nextMessage(secure)
  await plain.publishAsync('tls/to-secure', 'to mqtts', { qos: 1 })
  assert.equal((await got).payload.toString(), 'to mqtts')
  got = nextMessage(wss)
  await plain.publishAsync('tls/to-wss', 'to wss', { qos: 1 })
  assert.equal((await got).payload.toString(), 'to wss')
})

test('a client that does not trust the self-signed certificate is refused the handshake', async (t) => {
  const node = await startNode(tlsArgs)
  t.after(() => node.close())
  await assert.rejects(connect(`mqtts://127.0.0.1:${node.ports.mqtts}`, { rejectUnauthorized: true }), /self[- ]signed/i)
})

test('the ready line lists the TLS listeners; only configured listeners start', async (t) => {
  const node = await spawnNode([...tlsArgs, '--ws-port', '-1'])
  t.after(() => node.stop('SIGKILL'))
  assert.deepEqual(Object.keys(node.ports).sort(), ['http', 'mqtt', 'mqtts', 'wss'])
  const c = await connect(`mqtts://127.0.0.1:${node.ports.mqtts}`, { rejectUnauthorized: false })
  await c.endAsync()
  assert.equal(await node.stop('SIGTERM'), 0)

  // Without a certificate there are no TLS listeners, whatever their ports say.
  const plain = await startNode(['--dev', '--mqtts-port', '0', '--wss-port', '0', '--http-port', '-1'])
  t.after(() => plain.close())
  assert.deepEqual(Object.keys(plain.ports).sort(), ['mqtt', 'ws'])
  const secureOnly = await startNode([...tlsArgs, '--wss-port', '-1', '--ws-port', '-1'])
  t.after(() => secureOnly.close())
  assert.deepEqual(Object.keys(secureOnly.ports).sort(), ['http', 'mqtt', 'mqtts'])
})

test('a missing or unusable certificate stops the start naming tlsCert', async (t) => {
  const missing = path.join(dir, 'nope.pem')
  await assert.rejects(startNode(['--dev', '--tls-cert', missing, '--tls-key', key]), /tlsCert/)
  await assert.rejects(spawnNode(['--dev', '--tls-cert', missing, '--tls-key', key], { timeoutMs: 5000 }), /invalid setting tlsCert: cannot read/)
  const garbage = path.join(dir, 'garbage.pem')
  writeFileSync(garbage, 'not a certificate\n')
  await assert.rejects(startNode(['--dev', '--tls-cert', garbage, '--tls-key', key]), /tlsCert/)
  // A key that does not belong to the certificate.
  const otherKey = path.join(dir, 'other-key.pem')
  execFileSync('openssl', ['genrsa', '-out', otherKey, '2048'], { stdio: 'ignore' })
  await assert.rejects(startNode(['--dev', '--tls-cert', cert, '--tls-key', otherKey]), /tlsCert/)
  // The node that failed released its data dir and ports: a good start still works.
  const ok = await startNode(tlsArgs)
  t.after(() => ok.close())
  assert.ok((ok.ports.mqtts ?? 0) > 0)
})
