/**
 * A logout, a new password or a disabled user ends the web app's access
 * token too (one `warbler start`, no Redis): the 15-minute JWT no longer
 * opens MQTT or the HTTP API, and the live connection it opened is closed;
 * other logins of the same user are untouched by a logout.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { test } from 'node:test'
import type { MqttClient } from 'mqtt'
import { loginAnswers } from '../helpers/login-poll.js'
import { addUser, CLI, connect, spawnNode, type SpawnedNode, tempDir } from '../helpers/test-node.js'

const PW = 'alice-password-1'
interface Grant { accessToken: string, refreshToken: string }

async function post (n: SpawnedNode, path: string, body: unknown): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${n.ports.http ?? 0}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  return res.status
}

async function login (n: SpawnedNode, password = PW): Promise<Grant> {
  const res = await fetch(`http://127.0.0.1:${n.ports.http ?? 0}/api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'alice', password }) })
  assert.equal(res.status, 200)
  return await res.json() as Grant
}

/** 401: the token opens nothing; 403: a good token of a user who is no admin. */
async function api (n: SpawnedNode, token: string): Promise<number> {
  return (await fetch(`http://127.0.0.1:${n.ports.http ?? 0}/api/v1/users`, { headers: { authorization: `Bearer ${token}` } })).status
}

async function closedWithin (c: MqttClient, ms: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still connected after ${ms} ms`)), ms)
    c.once('close', () => { clearTimeout(timer); resolve() })
  })
}

test('logout, a new password and disabling end the access token on MQTT and HTTP, and close its connections', async (t) => {
  const dataDir = tempDir('warbler-web-logout-')
  t.after(() => rmSync(dataDir, { recursive: true, force: true }))
  await addUser(dataDir, { name: 'alice', password: PW })
  const node = await spawnNode(['--login-failures', '1000', '--conn-rate', '0'], { dataDir })
  t.after(() => node.stop('SIGKILL'))
  const ws = `ws://127.0.0.1:${node.ports.ws ?? 0}/mqtt`

  const g = await login(node)
  const other = await login(node)
  const live = await connect(ws, { username: 'alice', password: g.accessToken, clientId: 'alice-web' })
  assert.equal(await api(node, g.accessToken), 403)
  // Watched from before the logout: the close may come before the logout's answer.
  const closed = closedWithin(live, 1000)
  assert.equal(await post(node, '/api/session/logout', { refreshToken: g.refreshToken }), 200)
  await closed
  assert.equal(await api(node, g.accessToken), 401)
  assert.equal(await loginAnswers({ url: ws, username: 'alice', password: g.accessToken, clientId: 'alice-web' }, 4, 1000) <= 1000, true)
  assert.match(node.stderr(), /"reason":"revoked session"/)
  assert.equal(await api(node, other.accessToken), 403, 'another login of the user still works')

  // A new password with the CLI: the other login's access token stops at once, its connection is closed.
  const live2 = await connect(ws, { username: 'alice', password: other.accessToken, clientId: 'alice-web2' })
  const closed2 = closedWithin(live2, 3000)
  const r = spawnSync(process.execPath, [CLI, 'user', 'passwd', 'alice', '--password-stdin', '--data-dir', dataDir], { input: 'alice-password-2\n', encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  assert.equal(await api(node, other.accessToken), 401, 'refused at once: each bearer check sees the change')
  await closed2
  assert.equal(await post(node, '/api/session/refresh', { refreshToken: other.refreshToken }), 401)
  const fresh = await login(node, 'alice-password-2')
  assert.equal(await api(node, fresh.accessToken), 403, 'a token of the new password works')

  // Disabled: the token opens nothing while the user is disabled.
  const d = spawnSync(process.execPath, [CLI, 'user', 'disable', 'alice', '--data-dir', dataDir], { encoding: 'utf8' })
  assert.equal(d.status, 0, d.stderr)
  assert.equal(await api(node, fresh.accessToken), 401)
  assert.equal(await loginAnswers({ url: ws, username: 'alice', password: fresh.accessToken, clientId: 'alice-web3' }, 4, 1000) <= 1000, true)
  assert.equal(await node.stop(), 0)
})
