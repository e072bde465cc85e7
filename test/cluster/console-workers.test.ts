/**
 * The admin console's data on a `warbler start --workers 2` node: the refused
 * logins of every worker in GET /api/v1/refusals (each row naming its
 * worker), the $SYS figures of each worker (one subtree per worker, which the
 * console charts one by one), and the web app's logins forwarded by the
 * primary limited per real client address: two addresses are counted apart,
 * a client cannot name its own address, and X-Forwarded-For counts only from
 * a proxy listed in httpTrustedProxies.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import http from 'node:http'
import { rmSync } from 'node:fs'
import { test } from 'node:test'
import { startRedis } from '../helpers/redis.js'
import { addUser, CLI, connackCode, connect, spawnNode, tempDir } from '../helpers/test-node.js'

interface Row { reason: string, address: string, worker?: number, user: string | null }

/** A POST from a chosen loopback address (the whole of 127/8 is this machine). */
async function postFrom (local: string, port: number, path: string, body: unknown, headers: Record<string, string> = {}): Promise<number> {
  return await new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', localAddress: local, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end(JSON.stringify(body))
  })
}

test('--workers 2: refusals of both workers, $SYS of both workers, web logins limited per client address', async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  const dataDir = tempDir()
  t.after(() => rmSync(dataDir, { recursive: true, force: true }))
  await addUser(dataDir, { name: 'alice', password: 'alice-pw-123' })
  await addUser(dataDir, { name: 'root', password: 'root-pw-1234', admin: true })
  const node = await spawnNode(['--workers', '2', '--redis', redis.url, '--host', '127.0.0.1', '--login-failures', '3', '--conn-rate', '0',
    '--sys-interval', '1', '--http-trusted-proxies', '127.0.0.5'], { dataDir, timeoutMs: 60_000 })
  t.after(() => node.stop('SIGKILL'))
  const port = node.ports.http ?? 0
  const r = spawnSync(process.execPath, [CLI, 'token', 'create', 'root', '--data-dir', dataDir], { encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  const admin = { authorization: `Bearer ${r.stdout.trim()}` }
  const refusals = async (): Promise<Row[]> => {
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/refusals`, { headers: admin })
    assert.equal(res.status, 200)
    return (await res.json() as { refusals: Row[] }).refusals
  }

  // MQTT connections go to the workers in turn (round-robin): refused logins land on both.
  for (let i = 0; i < 4; i++) {
    assert.equal(await connackCode(`mqtt://127.0.0.1:${node.ports.mqtt ?? 0}`, { username: 'bob', password: 'no-such-user-pw', clientId: `bob-${i}` }), 4)
  }
  const mqttRows = (await refusals()).filter((row) => row.user === 'bob')
  assert.equal(mqttRows.length, 4, JSON.stringify(mqttRows))
  assert.deepEqual(new Set(mqttRows.map((row) => row.worker)), new Set([0, 1]), 'each row names its worker, and both refused some')

  // Web logins through the primary: 127.0.0.2 is locked out after 3 failures, 127.0.0.3 is not.
  const login = (local: string, password: string, headers: Record<string, string> = {}): Promise<number> =>
    postFrom(local, port, '/api/session', { user: 'alice', password }, headers)
  for (let i = 0; i < 3; i++) assert.equal(await login('127.0.0.2', 'wrong-password-2'), 401)
  assert.equal(await login('127.0.0.2', 'alice-pw-123'), 429, 'the third failure locks 127.0.0.2 out')
  assert.equal(await login('127.0.0.3', 'alice-pw-123'), 200, 'another address is counted apart')
  // A client cannot pick its address: neither the primary's own header nor X-Forwarded-For from a peer not listed.
  for (let i = 0; i < 3; i++) {
    assert.equal(await login('127.0.0.4', 'wrong-password-4', { 'x-warbler-client-address': `10.0.0.${i}`, 'x-warbler-forward-key': 'guess', 'x-forwarded-for': `10.1.0.${i}` }), 401)
  }
  assert.equal(await login('127.0.0.4', 'alice-pw-123', { 'x-forwarded-for': '10.1.0.99' }), 429, 'every attempt counted against 127.0.0.4')
  // From the trusted proxy, the last X-Forwarded-For entry is the client.
  for (let i = 0; i < 3; i++) assert.equal(await login('127.0.0.5', 'wrong-password-5', { 'x-forwarded-for': `10.9.9.9, 10.2.0.${i}` }), 401)
  assert.equal(await login('127.0.0.5', 'alice-pw-123', { 'x-forwarded-for': '10.9.9.9, 10.2.0.7' }), 200, 'the proxy itself is not locked out: each client is counted')
  const web = (await refusals()).filter((row) => row.reason === 'bad password' && row.user === 'alice')
  assert.deepEqual(web.map((row) => row.address).sort(), ['10.2.0.0', '10.2.0.1', '10.2.0.2', '127.0.0.2', '127.0.0.2', '127.0.0.2', '127.0.0.4', '127.0.0.4', '127.0.0.4'])
  assert.ok(web.every((row) => row.worker === 0), 'web logins are checked by worker 0')

  // $SYS: one subtree per worker, which the console charts apart.
  const sys = await connect(`mqtt://127.0.0.1:${node.ports.mqtt ?? 0}`, { username: 'root', password: 'root-pw-1234', clientId: 'root-sys' })
  t.after(() => sys.end(true))
  const roots = new Set<string>()
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`$SYS of both workers not seen within 15 s: ${[...roots].join(', ')}`)), 15_000)
    sys.on('message', (topic) => {
      const m = /^\$SYS\/broker\/node\/[^/]+\/(\d+)\/clients\/connected$/.exec(topic)
      if (m !== null) roots.add(m[1] as string)
      if (roots.size === 2) { clearTimeout(timer); resolve() }
    })
    sys.subscribe('$SYS/broker/#')
  })
  assert.deepEqual([...roots].sort(), ['0', '1'])
  assert.equal(await node.stop('SIGTERM'), 0)
})
