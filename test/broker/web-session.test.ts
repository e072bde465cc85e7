/**
 * The web app's logins over HTTP (broker/web-session.ts) against a real
 * `warbler start`: a password buys a short-lived JWT that logs in over
 * MQTT-over-WebSocket and a refresh token that rotates on each use, is
 * stored only hashed, and is revoked (with its whole login) by a reuse or a
 * logout; bad input is named and costs nothing; MQTT and HTTP logins share
 * one lockout per address.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { Database } from '../../shared/sqlite.js'
import { addUser, CLI, connackCode, spawnNode, type SpawnedNode, tempDir } from '../helpers/test-node.js'

const PW = 'alice-password-1'

interface Answer { status: number, body: Record<string, unknown>, headers: Headers }

async function post (node: SpawnedNode, path: string, body: unknown, contentType = 'application/json'): Promise<Answer> {
  const res = await fetch(`http://127.0.0.1:${node.ports.http ?? 0}${path}`, {
    method: 'POST',
    headers: { 'content-type': contentType },
    body: typeof body === 'string' ? body : JSON.stringify(body)
  })
  return { status: res.status, body: await res.json() as Record<string, unknown>, headers: res.headers }
}

interface Grant { accessToken: string, refreshToken: string, accessExpiresAt: number, refreshExpiresAt: number }

const errorOf = (a: Answer): { code: string, message: string } => a.body.error as { code: string, message: string }

async function withNode (t: { after: (fn: () => Promise<void>) => void }, args: string[]): Promise<SpawnedNode> {
  const dataDir = tempDir('warbler-web-session-')
  await addUser(dataDir, { name: 'alice', password: PW })
  const node = await spawnNode(args, { dataDir })
  t.after(async () => {
    await node.stop()
    rmSync(dataDir, { recursive: true, force: true })
  })
  return node
}

const wsUrl = (node: SpawnedNode): string => `ws://127.0.0.1:${node.ports.ws ?? 0}/mqtt`

test('web session: the access token logs in over WebSocket; the refresh token rotates, is stored hashed, and a reuse or logout ends the login', async (t) => {
  const node = await withNode(t, [])
  const login = await post(node, '/api/session', { user: 'alice', password: PW })
  assert.equal(login.status, 200, JSON.stringify(login.body))
  assert.equal(login.headers.get('cache-control'), 'no-store')
  const { accessToken, refreshToken, accessExpiresAt, refreshExpiresAt } = login.body as unknown as Grant
  assert.match(accessToken, /^eyJ/)
  assert.match(refreshToken, /^wbr\./)
  const ttl = accessExpiresAt - Date.now()
  assert.ok(ttl > 800_000 && ttl <= 900_000, `access token lasts 15 minutes, got ${ttl} ms`)
  assert.ok(refreshExpiresAt > Date.now() + 29 * 86400_000)
  assert.equal(await connackCode(wsUrl(node), { username: 'alice', password: accessToken, clientId: 'alice-web' }), 0)
  // A refresh token is no MQTT password.
  assert.equal(await connackCode(wsUrl(node), { username: 'alice', password: refreshToken, clientId: 'alice-web' }), 4)

  // Stored only hashed: no row holds the token or its secret.
  const db = await Database.open(path.join(node.dataDir, 'warbler.db'))
  try {
    const rows = await db.all<{ dump: string }>('SELECT id || user || family || hex(secret_hash) AS dump FROM refresh_tokens')
    assert.equal(rows.length, 1)
    const secret = refreshToken.split('.')[2] as string
    assert.ok(!rows.some((r) => r.dump.includes(secret) || r.dump.toLowerCase().includes(Buffer.from(secret).toString('hex'))))
  } finally { await db.close() }

  const r1 = await post(node, '/api/session/refresh', { refreshToken })
  assert.equal(r1.status, 200, JSON.stringify(r1.body))
  const next = r1.body.refreshToken as string
  assert.notEqual(next, refreshToken, 'rotated on use')
  assert.equal(r1.body.user, 'alice')
  assert.equal(await connackCode(wsUrl(node), { username: 'alice', password: r1.body.accessToken as string, clientId: 'alice-web' }), 0)

  // The old one again: a copy is in use somewhere, so the whole login is revoked.
  const reuse = await post(node, '/api/session/refresh', { refreshToken })
  assert.equal(reuse.status, 401)
  assert.equal(errorOf(reuse).code, 'not_authorized')
  const after = await post(node, '/api/session/refresh', { refreshToken: next })
  assert.equal(after.status, 401, 'the newer token of that login is revoked too')

  // Logout revokes a login's refresh tokens.
  const second = await post(node, '/api/session', { user: 'alice', password: PW })
  const token2 = second.body.refreshToken as string
  const out = await post(node, '/api/session/logout', { refreshToken: token2 })
  assert.equal(out.status, 200)
  assert.deepEqual(out.body, { loggedOut: true })
  assert.equal((await post(node, '/api/session/refresh', { refreshToken: token2 })).status, 401)
  assert.match(node.stderr(), /"reason":"refresh token reused"/)

  // A new password ends the web logins made with the old one.
  const third = await post(node, '/api/session', { user: 'alice', password: PW })
  const passwd = spawnSync(process.execPath, [CLI, 'user', 'passwd', 'alice', '--password-stdin', '--data-dir', node.dataDir], { input: 'alice-password-2\n', encoding: 'utf8', timeout: 30_000 })
  assert.equal(passwd.status, 0, passwd.stderr)
  assert.match(passwd.stdout, /ended 1 web login of alice/)
  assert.equal((await post(node, '/api/session/refresh', { refreshToken: third.body.refreshToken })).status, 401)
  assert.ok(!node.stderr().includes(PW) && !node.stderr().includes(refreshToken), 'no secret in the log')
})

test('web session: bad input is a 400 bad_request naming what is wrong, and does not count against the lockout', async (t) => {
  const node = await withNode(t, ['--login-failures', '2'])
  const cases: Array<[unknown, string, RegExp]> = [
    [{ user: 'alice' }, 'application/json', /password is required/],
    [{ password: PW }, 'application/json', /user is required/],
    [{ user: 'alice', password: 42 }, 'application/json', /password is required \(a non-empty string\)/],
    ['{"user":', 'application/json', /not valid JSON/],
    ['[1]', 'application/json', /must be a JSON object/],
    [{ user: 'alice', password: PW }, 'text/plain', /content-type: application\/json/],
    [{ user: 'alice', password: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln' }, 'application/json', /not a token/],
    [{ user: 'alice', password: 'x'.repeat(5000) }, 'application/json', /larger than 4096 bytes/]
  ]
  for (const [body, type, message] of cases) {
    const a = await post(node, '/api/session', body, type)
    assert.equal(a.status, 400, JSON.stringify(a.body))
    assert.equal(errorOf(a).code, 'bad_request')
    assert.match(errorOf(a).message, message)
  }
  const refresh = await post(node, '/api/session/refresh', {})
  assert.match(errorOf(refresh).message, /refreshToken is required/)
  const get = await fetch(`http://127.0.0.1:${node.ports.http ?? 0}/api/session`)
  assert.equal(get.status, 400)
  assert.equal(get.headers.get('allow'), 'POST')
  assert.match(((await get.json()) as { error: { message: string } }).error.message, /GET is not supported on \/api\/session; use POST/)
  // Nothing above was a failed login: the right password still works.
  assert.equal((await post(node, '/api/session', { user: 'alice', password: PW })).status, 200)
})

test('web session: HTTP and MQTT logins share one lockout per address', async (t) => {
  const node = await withNode(t, ['--login-failures', '3'])
  const bad = await post(node, '/api/session', { user: 'alice', password: 'wrong-password' })
  assert.equal(bad.status, 401)
  assert.equal(errorOf(bad).code, 'not_authorized')
  assert.match(errorOf(bad).message, /bad user name or password/)
  assert.equal((await post(node, '/api/session/refresh', { refreshToken: `wbr.${'0'.repeat(16)}.${'A'.repeat(43)}` })).status, 401)
  // The third failure over MQTT: the address has used up its budget on both doors.
  assert.equal(await connackCode(wsUrl(node), { username: 'alice', password: 'wrong-password', clientId: 'alice-x' }), 4)
  const locked = await post(node, '/api/session', { user: 'alice', password: PW })
  assert.equal(locked.status, 429, JSON.stringify(locked.body))
  assert.equal(errorOf(locked).code, 'rate_limited')
  assert.match(errorOf(locked).message, /too many failed logins from this address/)
  assert.equal(locked.headers.get('retry-after'), '60')
  assert.equal(await connackCode(wsUrl(node), { username: 'alice', password: PW, clientId: 'alice-x' }), 4)
  assert.match(node.stderr(), /"reason":"bad refresh token"/)
})
