/**
 * Keeping the HTTP port private (docs/configuration.md, "The HTTP port"):
 * httpHost binds it apart from the MQTT listeners, and metricsTokenFile makes
 * /metrics ask for a bearer token while /healthz and /readyz stay open. Real
 * HTTP requests against nodes started in this process and as `warbler start`.
 */
import assert from 'node:assert/strict'
import { existsSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { test } from 'node:test'
import { ConfigError, resolveConfig } from '../../shared/config.js'
import { connackCode, spawnNode, startNode, tempDir } from '../helpers/test-node.js'

const TOKEN = 'c0ffee-metrics-token-0123456789abcdef'

/** A token file in its own temp dir, removed after the test. */
function tokenFile (t: { after: (fn: () => void) => void }, content: string): string {
  const dir = tempDir('warbler-token-')
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'metrics-token')
  writeFileSync(file, content, { mode: 0o600 })
  return file
}

async function get (url: string, authorization?: string): Promise<{ status: number, body: string, headers: Headers }> {
  const res = await fetch(url, authorization === undefined ? {} : { headers: { authorization } })
  return { status: res.status, body: await res.text(), headers: res.headers }
}

/** Whether a TCP connect to host:port is refused (nothing listens there). */
async function refused (host: string, port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = net.connect(port, host)
    s.once('connect', () => { s.destroy(); resolve(false) })
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'))
  })
}

test('httpHost: the HTTP port listens on 127.0.0.2 while MQTT stays on 127.0.0.1', async (t) => {
  const node = await startNode(['--dev', '--host', '127.0.0.1', '--http-host', '127.0.0.2'])
  t.after(() => node.close())
  const port = node.ports.http ?? 0
  assert.equal((await get(`http://127.0.0.2:${port}/healthz`)).status, 200)
  assert.equal((await get(`http://127.0.0.2:${port}/readyz`)).status, 200)
  assert.equal((await get(`http://127.0.0.2:${port}/metrics`)).status, 200, 'no token set: /metrics open as before')
  assert.ok(await refused('127.0.0.1', port), 'HTTP is not on the MQTT address')
  // MQTT is where host says, and not on the HTTP address.
  assert.equal(await connackCode(`mqtt://127.0.0.1:${node.ports.mqtt ?? 0}`, { clientId: 'probe' }), 0)
  assert.ok(await refused('127.0.0.2', node.ports.mqtt ?? 0), 'MQTT is not on the HTTP address')
})

test('httpHost defaults to host (and to 127.0.0.1 with --dev, 0.0.0.0 without); a malformed one is refused naming it', () => {
  const base: string[] = []
  assert.equal(resolveConfig([...base, '--dev'], {}).httpListenHost, '127.0.0.1')
  assert.equal(resolveConfig(base, {}).httpListenHost, '0.0.0.0')
  assert.equal(resolveConfig([...base, '--host', '10.1.2.3'], {}).httpListenHost, '10.1.2.3')
  const apart = resolveConfig([...base, '--host', '0.0.0.0'], { WARBLER_HTTP_HOST: '127.0.0.1' })
  assert.equal(apart.listenHost, '0.0.0.0')
  assert.equal(apart.httpListenHost, '127.0.0.1')
  assert.equal(resolveConfig([...base, '--http-host', '::1'], {}).httpListenHost, '::1')
  assert.equal(resolveConfig([...base, '--http-host', 'metrics.lan'], {}).httpListenHost, 'metrics.lan')
  for (const bad of ['127.0.0.1:8080', 'http://127.0.0.1', 'two words', '-x']) {
    assert.throws(() => resolveConfig([...base, '--http-host', bad], {}), (err: Error) => err instanceof ConfigError && /^invalid setting httpHost: .* is not an IP address or host name$/.test(err.message), bad)
  }
})

test('httpTrustedProxies takes IP addresses (flag repeated or ;-separated variable); anything else is refused naming the setting', () => {
  const base: string[] = []
  assert.deepEqual(resolveConfig([...base, '--http-trusted-proxies', '10.0.0.1', '--http-trusted-proxies', '::1'], {}).httpTrustedProxies, ['10.0.0.1', '::1'])
  assert.deepEqual(resolveConfig(base, { WARBLER_HTTP_TRUSTED_PROXIES: '10.0.0.1; 10.0.0.2' }).httpTrustedProxies, ['10.0.0.1', '10.0.0.2'])
  assert.deepEqual(resolveConfig(base, {}).httpTrustedProxies, [])
  for (const bad of ['proxy.lan', '10.0.0.0/8', '10.0.0.1:80']) {
    assert.throws(() => resolveConfig([...base, '--http-trusted-proxies', bad], {}), (err: Error) => err instanceof ConfigError && /^invalid setting httpTrustedProxies: .* is not an IP address/.test(err.message), bad)
  }
})

test('metricsTokenFile: /metrics answers 401 with WWW-Authenticate: Bearer without the right token, 200 with it; the probes stay open', async (t) => {
  // A trailing newline (echo, editors) is not part of the token.
  const file = tokenFile(t, `${TOKEN}\n`)
  const node = await startNode(['--metrics-token-file', file], { users: [{ name: 'root', password: 'root-pw-123', admin: true }] })
  t.after(() => node.close())
  const metrics = `${node.httpUrl}/metrics`
  const refusals: Array<[string, string | undefined]> = [
    ['no Authorization header', undefined],
    ['the scheme alone', 'Bearer'],
    ['a wrong token', 'Bearer wrong-token'],
    ['a wrong token of the same length', `Bearer ${TOKEN.slice(0, -1)}x`],
    ['the token with more after it', `Bearer ${TOKEN}x`],
    ['the token cut short', `Bearer ${TOKEN.slice(0, -1)}`],
    ['the token as Basic credentials', `Basic ${Buffer.from(`prometheus:${TOKEN}`).toString('base64')}`],
    ['the token without a scheme', TOKEN],
    ['an admin\'s access token', `Bearer ${await node.identity.createJwt('root', 600)}`]
  ]
  for (const [why, authorization] of refusals) {
    const r = await get(metrics, authorization)
    assert.equal(r.status, 401, why)
    assert.equal(r.headers.get('www-authenticate'), 'Bearer', why)
    assert.match(r.body, /metrics token is required/, why)
    assert.doesNotMatch(r.body, /warbler_/, `${why}: no figure leaks`)
  }
  const ok = await get(metrics, `Bearer ${TOKEN}`)
  assert.equal(ok.status, 200)
  assert.match(ok.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
  assert.match(ok.body, /^warbler_clients_connected 0$/m)
  assert.equal((await get(metrics, `bearer ${TOKEN}`)).status, 200, 'the scheme is case-insensitive (RFC 9110)')
  // The probes need no credentials, and the admin API keeps its own check.
  assert.equal((await get(`${node.httpUrl}/healthz`)).status, 200)
  assert.equal((await get(`${node.httpUrl}/readyz`)).status, 200)
  const api = await get(`${node.httpUrl}/api/v1/users/root/unread`, `Bearer ${TOKEN}`)
  assert.equal(api.status, 401, 'the metrics token opens /metrics only')
  assert.equal((JSON.parse(api.body) as { error: { code: string } }).error.code, 'not_authorized')
})

test('metricsTokenFile with warbler start: token and httpHost together; the token is never logged', async (t) => {
  const file = tokenFile(t, TOKEN)
  const node = await spawnNode(['--host', '127.0.0.1', '--http-host', '127.0.0.2', '--metrics-token-file', file, '--log-level', 'debug'])
  t.after(async () => { await node.stop('SIGKILL'); rmSync(node.dataDir, { recursive: true, force: true }) })
  const http = `http://127.0.0.2:${node.ports.http ?? 0}`
  assert.equal((await get(`${http}/metrics`)).status, 401)
  assert.equal((await get(`${http}/metrics`, `Bearer ${TOKEN}`)).status, 200)
  assert.equal((await get(`${http}/readyz`)).status, 200)
  assert.ok(await refused('127.0.0.1', node.ports.http ?? 0))
  assert.equal(await connackCode(`mqtt://127.0.0.1:${node.ports.mqtt ?? 0}`), 5, 'MQTT on host, logins required')
  assert.equal(await node.stop('SIGTERM'), 0)
  assert.ok(!node.stderr().includes(TOKEN), 'the token is not in the log')
  assert.ok(!node.stdout().includes(TOKEN))
})

test('a bad metricsTokenFile stops the start with exit code 2 and a message naming the setting, before anything is created', async (t) => {
  const empty = tokenFile(t, '')
  const blank = tokenFile(t, ' \n\t\n')
  const spaced = tokenFile(t, 'two words\n')
  const cases: Array<[string, RegExp]> = [
    [path.join(path.dirname(empty), 'missing'), /invalid setting metricsTokenFile: cannot read .*missing: ENOENT/],
    [path.dirname(empty), /invalid setting metricsTokenFile: cannot read .*EISDIR/],
    [empty, /invalid setting metricsTokenFile: .* is empty; it must hold the token/],
    [blank, /invalid setting metricsTokenFile: .* is empty/],
    [spaced, /invalid setting metricsTokenFile: .* must hold one token on one line/]
  ]
  for (const [file, message] of cases) {
    const dataDir = tempDir()
    t.after(() => rmSync(dataDir, { recursive: true, force: true }))
    await assert.rejects(spawnNode(['--metrics-token-file', file], { dataDir, timeoutMs: 10_000 }), (err: Error) => {
      assert.match(err.message, /warbler exited with 2 before ready/)
      assert.match(err.message, message)
      return true
    })
    // Refused before the first admin is made: nothing to clean up, nothing half-done.
    assert.ok(!existsSync(path.join(dataDir, 'initial-admin-password')), `${file}: no first admin created`)
    assert.ok(!existsSync(path.join(dataDir, 'warbler.db')), `${file}: no database created`)
  }
  // The same from the environment and the config file, named the same way.
  const envDir = tempDir()
  t.after(() => rmSync(envDir, { recursive: true, force: true }))
  await assert.rejects(spawnNode([], { dataDir: envDir, env: { WARBLER_METRICS_TOKEN_FILE: empty }, timeoutMs: 10_000 }), /invalid setting metricsTokenFile/)
  const cfg = tokenFile(t, JSON.stringify({ metricsTokenFile: empty }))
  assert.throws(() => resolveConfig(['--config', cfg], {}), /^ConfigError: invalid setting metricsTokenFile: .* is empty/)
  // With the HTTP port off there is nothing to protect, but a bad file is still a mistake worth hearing about.
  assert.throws(() => resolveConfig(['--http-port', '-1', '--metrics-token-file', empty], {}), /invalid setting metricsTokenFile/)
})
