/**
 * Web logins on two nodes with their own data dirs and one Redis (real
 * `warbler start` processes): a refresh token issued by node A refreshes on
 * node B; a logout on A ends the login on B at once, its refresh tokens and
 * its access token too, and closes the MQTT connection that access token
 * opened on B; a password reset through A's admin API cuts off the user's
 * access tokens and web logins on B; a disabled user's token opens nothing.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { test } from 'node:test'
import type { MqttClient } from 'mqtt'
import { loginAnswers } from '../helpers/login-poll.js'
import { startRedis } from '../helpers/redis.js'
import { addUser, CLI, connect, spawnNode, type SpawnedNode, tempDir } from '../helpers/test-node.js'

const PW = 'alice-password-1'
interface Grant { accessToken: string, refreshToken: string }

async function post (n: SpawnedNode, path: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number, body: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${n.ports.http ?? 0}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
  return { status: res.status, body: await res.json() as Record<string, unknown> }
}

/** The status of an admin API request with a bearer token: 401 for a token that opens nothing, 403 for a good one of a user who is no admin. */
async function api (n: SpawnedNode, token: string): Promise<number> {
  return (await fetch(`http://127.0.0.1:${n.ports.http ?? 0}/api/v1/users`, { headers: { authorization: `Bearer ${token}` } })).status
}

/** Milliseconds until a live client is closed by the server; throws after `ms`. */
async function closedWithin (c: MqttClient, ms: number): Promise<number> {
  const start = Date.now()
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still connected after ${ms} ms`)), ms)
    c.once('close', () => { clearTimeout(timer); resolve() })
  })
  return Date.now() - start
}

test('two nodes on one Redis: refresh anywhere, logout and password reset end the login and its access token everywhere', async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  const [dirA, dirB] = [tempDir(), tempDir()]
  t.after(() => { for (const d of [dirA, dirB]) rmSync(d, { recursive: true, force: true }) })
  await addUser(dirA, { name: 'alice', password: PW })
  await addUser(dirA, { name: 'root', password: 'root-password-1', admin: true })
  const common = ['--redis', redis.url, '--login-failures', '1000', '--conn-rate', '0']
  const a = await spawnNode([...common, '--bridge', 'embedded'], { dataDir: dirA })
  t.after(() => a.stop('SIGKILL'))
  const b = await spawnNode([...common, '--bridge', 'off'], { dataDir: dirB })
  t.after(() => b.stop('SIGKILL'))
  const ws = (n: SpawnedNode): string => `ws://127.0.0.1:${n.ports.ws ?? 0}/mqtt`
  const login = async (n: SpawnedNode): Promise<Grant> => {
    const r = await post(n, '/api/session', { user: 'alice', password: PW })
    assert.equal(r.status, 200, JSON.stringify(r.body))
    return r.body as unknown as Grant
  }

  // A refresh token of A refreshes on B, and the one B gave back on A: one login across nodes.
  const first = await login(a)
  const onB = await post(b, '/api/session/refresh', { refreshToken: first.refreshToken })
  assert.equal(onB.status, 200, JSON.stringify(onB.body))
  const onA = await post(a, '/api/session/refresh', { refreshToken: (onB.body as unknown as Grant).refreshToken })
  assert.equal(onA.status, 200, JSON.stringify(onA.body))
  // A used token presented again on the other node is a copy: the login ends.
  assert.equal((await post(a, '/api/session/refresh', { refreshToken: first.refreshToken })).status, 401)
  assert.equal((await post(b, '/api/session/refresh', { refreshToken: (onA.body as unknown as Grant).refreshToken })).status, 401, 'the reuse revoked the whole login')

  // Logout on A: B refuses its refresh token and its access token, and closes the connection it opened.
  const g = await login(a)
  const live = await connect(ws(b), { username: 'alice', password: g.accessToken, clientId: 'alice-web' })
  assert.equal(await api(b, g.accessToken), 403, 'the access token is good on B before the logout')
  // Watched from before the logout: the close may come before the logout's answer.
  const closed = closedWithin(live, 1000)
  const out = await post(a, '/api/session/logout', { refreshToken: g.refreshToken })
  assert.equal(out.status, 200)
  assert.ok(await closed <= 1000, 'the live connection on B is closed within a second')
  assert.equal((await post(b, '/api/session/refresh', { refreshToken: g.refreshToken })).status, 401)
  assert.equal(await api(b, g.accessToken), 401, 'HTTP API on B')
  assert.equal(await api(a, g.accessToken), 401, 'HTTP API on A')
  assert.equal(await loginAnswers({ url: ws(b), username: 'alice', password: g.accessToken, clientId: 'alice-web' }, 4, 1000) <= 1000, true)
  assert.match(b.stderr(), /"reason":"revoked session"/)
  // Another login of the same user is untouched.
  const other = await login(b)
  assert.equal(await api(a, other.accessToken), 403)

  // A password reset through A's admin API: B cuts off the access token and the web login within a second or two.
  const h = await login(b)
  const live2 = await connect(ws(b), { username: 'alice', password: h.accessToken, clientId: 'alice-web2' })
  const rootGrant = (await post(a, '/api/session', { user: 'root', password: 'root-password-1' })).body as unknown as Grant
  const closed2 = closedWithin(live2, 3000)
  const reset = await post(a, '/api/v1/users/alice/password', { password: 'alice-password-2' }, { authorization: `Bearer ${rootGrant.accessToken}` })
  assert.equal(reset.status, 200, JSON.stringify(reset.body))
  assert.equal(reset.body.endedLogins, 2, 'the two web logins of alice kept in Redis')
  assert.ok(await closed2 <= 3000, 'the live connection on B is closed')
  assert.equal(await api(b, h.accessToken), 401)
  assert.ok(await loginAnswers({ url: ws(b), username: 'alice', password: h.accessToken, clientId: 'alice-web2' }, 4, 2000) <= 2000)
  assert.equal((await post(b, '/api/session/refresh', { refreshToken: h.refreshToken })).status, 401, 'the web login of before the reset is over')
  assert.equal((await post(b, '/api/session/refresh', { refreshToken: other.refreshToken })).status, 401, 'every web login of the user')
  // The new password logs in at once and its token works.
  const after = (await post(b, '/api/session', { user: 'alice', password: 'alice-password-2' })).body as unknown as Grant
  assert.equal(await api(a, after.accessToken), 403)

  // Disabled with the CLI on B's data dir: the access token opens neither HTTP nor MQTT on A.
  const dis = spawnSync(process.execPath, [CLI, 'user', 'disable', 'alice', '--data-dir', dirB], { encoding: 'utf8' })
  assert.equal(dis.status, 0, dis.stderr)
  assert.ok(await loginAnswers({ url: ws(a), username: 'alice', password: after.accessToken, clientId: 'alice-web3' }, 4, 2000) <= 2000)
  assert.equal(await api(a, after.accessToken), 401)
  assert.equal(await a.stop(), 0)
  assert.equal(await b.stop(), 0)
})
