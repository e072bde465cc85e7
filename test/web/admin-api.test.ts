/**
 * The admin API routes the console uses (server/admin-routes.ts,
 * docs/operations.md): users, device tokens, groups, refused logins, the
 * node's settings and a backup, over a real node's HTTP port with tokens of
 * the real identity store. Every route refuses a non-admin (403) and bad
 * input with 400 naming the field, and then nothing has changed.
 */
import assert from 'node:assert/strict'
import { readdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { checkDatabase } from '../../bridge/archive/backup-files.js'
import { spawnSync } from 'node:child_process'
import { CLI, connackCode, connect, startNode, type TestNode } from '../helpers/test-node.js'

const PW = 'password-123'
let node: TestNode
let adminJwt: string
let bobJwt: string

interface Refusal { error: { code: string, message: string } }
interface User { name: string, admin: boolean, service: boolean, disabled: boolean, createdAt: number }
interface Token { id: string, user: string, name: string, createdAt: number, revokedAt: number | null }

async function api<T = unknown> (p: string, init: { method?: string, body?: unknown, token?: string | null } = {}): Promise<{ status: number, body: T }> {
  const headers: Record<string, string> = {}
  const token = init.token === undefined ? adminJwt : init.token
  if (token !== null) headers.authorization = `Bearer ${token}`
  if (init.body !== undefined) headers['content-type'] = 'application/json'
  const res = await fetch(node.httpUrl + p, { method: init.method ?? 'GET', headers, ...(init.body !== undefined ? { body: typeof init.body === 'string' ? init.body : JSON.stringify(init.body) } : {}) })
  return { status: res.status, body: await res.json() as T }
}

const users = async (): Promise<User[]> => (await api<{ users: User[] }>('/api/v1/users')).body.users
const tokens = async (): Promise<Token[]> => (await api<{ tokens: Token[] }>('/api/v1/tokens')).body.tokens

/** A request that must be refused with `status`/`code` and a message matching `message`, changing nothing. */
async function refused (p: string, init: { method?: string, body?: unknown, token?: string | null }, status: number, code: string, message: RegExp): Promise<void> {
  const before = JSON.stringify([await users(), await tokens()])
  const r = await api<Refusal>(p, init)
  assert.equal(r.status, status, `${init.method ?? 'GET'} ${p} ${JSON.stringify(init.body)}: ${JSON.stringify(r.body)}`)
  assert.equal(r.body.error.code, code, p)
  assert.match(r.body.error.message, message, p)
  assert.equal(JSON.stringify([await users(), await tokens()]), before, `${p}: nothing changed`)
}

before(async () => {
  node = await startNode([], { users: [{ name: 'root', password: PW, admin: true }, { name: 'bob', password: PW }] })
  adminJwt = await node.identity.createJwt('root', 600)
  bobJwt = await node.identity.createJwt('bob', 600)
})

after(async () => { await node.close() })

test('admin routes: a non-admin is refused (403) on every one, without a token 401', async () => {
  const routes: Array<[string, string, unknown?]> = [
    ['GET', '/api/v1/users'], ['POST', '/api/v1/users', { name: 'eve' }], ['DELETE', '/api/v1/users/root'],
    ['POST', '/api/v1/users/root/password', {}], ['PUT', '/api/v1/users/bob/admin', { admin: true }], ['PUT', '/api/v1/users/root/disabled', { disabled: true }],
    ['GET', '/api/v1/tokens'], ['POST', '/api/v1/tokens', { user: 'bob', name: 'x' }], ['DELETE', '/api/v1/tokens/0000000000000000'],
    ['GET', '/api/v1/refusals'], ['GET', '/api/v1/node'], ['GET', '/api/v1/backup'], ['GET', '/api/v1/groups']
  ]
  for (const [method, p, body] of routes) {
    await refused(p, { method, body, token: bobJwt }, 403, 'forbidden', /bob is not an admin/)
    await refused(p, { method, body, token: null }, 401, 'not_authorized', /admin access or device token is required/)
  }
})

test('users: add (password generated once), reset password, make and unmake admin, remove', async () => {
  const add = await api<{ name: string, password: string }>('/api/v1/users', { method: 'POST', body: { name: 'carol' } })
  assert.equal(add.status, 201)
  assert.equal(add.body.name, 'carol')
  assert.ok(add.body.password.length >= 8)
  assert.equal(await connackCode(node.mqttUrl, { username: 'carol', password: add.body.password, clientId: 'carol' }), 0)
  assert.ok(!JSON.stringify(await users()).includes(add.body.password), 'the list never shows a password or its hash')

  const given = await api<{ password?: string }>('/api/v1/users', { method: 'POST', body: { name: 'dave', password: 'dave-secret-1', admin: true } })
  assert.equal(given.status, 201)
  assert.equal(given.body.password, undefined, 'a given password is not echoed')
  assert.equal((await users()).find((u) => u.name === 'dave')?.admin, true)

  const reset = await api<{ password: string, endedLogins: number }>('/api/v1/users/carol/password', { method: 'POST', body: {} })
  assert.equal(reset.status, 200)
  assert.notEqual(reset.body.password, add.body.password)
  assert.equal(await connackCode(node.mqttUrl, { username: 'carol', password: reset.body.password, clientId: 'carol' }), 0)

  assert.equal((await api('/api/v1/users/dave/admin', { method: 'PUT', body: { admin: false } })).status, 200)
  assert.equal((await users()).find((u) => u.name === 'dave')?.admin, false)
  assert.equal((await api('/api/v1/users/dave', { method: 'DELETE' })).status, 200)
  assert.equal((await users()).some((u) => u.name === 'dave'), false)
})

test('users: bad input names the field and changes nothing (the same checks as warbler user)', async () => {
  const p = '/api/v1/users'
  await refused(p, { method: 'POST', body: {} }, 400, 'bad_request', /^name is required/)
  await refused(p, { method: 'POST', body: { name: 'Bad Name' } }, 400, 'bad_request', /invalid user name "Bad Name"/)
  await refused(p, { method: 'POST', body: { name: 'erin', password: 'short' } }, 400, 'bad_request', /password too short/)
  await refused(p, { method: 'POST', body: { name: 'erin', password: 7 } }, 400, 'bad_request', /^password must be a string/)
  await refused(p, { method: 'POST', body: { name: 'erin', admin: 'yes' } }, 400, 'bad_request', /^admin must be true or false/)
  await refused(p, { method: 'POST', body: { name: 'erin', admin: true, service: true } }, 400, 'bad_request', /an admin or a service account, not both/)
  await refused(p, { method: 'POST', body: { name: 'erin', role: 'x' } }, 400, 'bad_request', /unknown field "role"/)
  await refused(p, { method: 'POST', body: 'not json' }, 400, 'bad_request', /not valid JSON/)
  await refused(p, { method: 'POST', body: { name: 'bob' } }, 409, 'conflict', /user bob already exists/)
  await refused(p, { method: 'PATCH' }, 400, 'bad_request', /PATCH is not supported on \/api\/v1\/users; use GET or POST/)
  await refused('/api/v1/users/nobody', { method: 'DELETE' }, 404, 'not_found', /no user nobody/)
  await refused('/api/v1/users/nobody/password', { method: 'POST', body: {} }, 404, 'not_found', /no user nobody/)
  await refused('/api/v1/users/bob/password', { method: 'POST', body: { password: 'eyJa.b.c' } }, 400, 'bad_request', /password/)
  await refused('/api/v1/users/bob/admin', { method: 'PUT', body: {} }, 400, 'bad_request', /^admin is required/)
  await refused('/api/v1/users/bob/admin', { method: 'PUT', body: { admin: 1 } }, 400, 'bad_request', /^admin must be true or false/)
  await refused('/api/v1/users/nobody/admin', { method: 'PUT', body: { admin: true } }, 404, 'not_found', /no user nobody/)
})

test('device tokens: create (shown once, with a client id of the user), list without secrets, revoke', async () => {
  const c = await api<{ id: string, token: string, clientId: string, mqttPort: number }>('/api/v1/tokens', { method: 'POST', body: { user: 'bob', name: 'Kitchen ESP32' } })
  assert.equal(c.status, 201)
  assert.equal(c.body.clientId, 'bob-kitchen-esp32')
  assert.equal(c.body.mqttPort, node.ports.mqtt)
  assert.equal(await connackCode(node.mqttUrl, { username: 'bob', password: c.body.token, clientId: c.body.clientId }), 0)
  const listed = await tokens()
  assert.equal(listed.find((t) => t.id === c.body.id)?.name, 'Kitchen ESP32')
  assert.ok(!JSON.stringify(listed).includes(c.body.token.split('.')[2] as string), 'the list never shows a secret')
  assert.equal((await api<{ tokens: Token[] }>('/api/v1/tokens?user=bob')).body.tokens.length, 1)
  assert.equal((await api(`/api/v1/tokens/${c.body.id}`, { method: 'DELETE' })).status, 200)
  assert.notEqual((await tokens()).find((t) => t.id === c.body.id)?.revokedAt, null)
  assert.equal(await connackCode(node.mqttUrl, { username: 'bob', password: c.body.token, clientId: c.body.clientId }), 4)

  await refused('/api/v1/tokens', { method: 'POST', body: { name: 'x' } }, 400, 'bad_request', /^user is required/)
  await refused('/api/v1/tokens', { method: 'POST', body: { user: 'bob' } }, 400, 'bad_request', /^name is required/)
  await refused('/api/v1/tokens', { method: 'POST', body: { user: 'bob', name: 'n'.repeat(65) } }, 400, 'bad_request', /token name must be 1-64 characters/)
  await refused('/api/v1/tokens', { method: 'POST', body: { user: 'nobody', name: 'x' } }, 404, 'not_found', /no user nobody/)
  await refused('/api/v1/tokens?user=nobody', {}, 404, 'not_found', /no user nobody/)
  await refused(`/api/v1/tokens/${c.body.id}`, { method: 'DELETE' }, 409, 'conflict', /already revoked/)
  await refused('/api/v1/tokens/0000000000000000', { method: 'DELETE' }, 404, 'not_found', /no device token "0000000000000000"/)
})

test('refusals, node, groups and backup', async () => {
  assert.equal(await connackCode(node.mqttUrl, { username: 'bob', password: 'wrong-password', clientId: 'bob' }), 4)
  const r = await api<{ refusals: Array<{ reason: string, user: string | null, address: string, at: number }> }>('/api/v1/refusals')
  assert.equal(r.status, 200)
  assert.deepEqual(r.body.refusals.map((f) => [f.reason, f.user]).slice(0, 1), [['bad password', 'bob']])
  assert.ok(!JSON.stringify(r.body).includes('wrong-password'), 'never a secret')

  const n = await api<{ ready: boolean, retention: { days: number, messages: number }, sysRoot: string }>('/api/v1/node')
  assert.deepEqual([n.body.ready, n.body.retention, n.body.sysRoot], [true, { days: 0, messages: 0 }, '$SYS/broker'])
  assert.deepEqual((await api('/api/v1/groups')).body, { groups: [] })
  await refused('/api/v1/groups?limit=0', {}, 400, 'bad_request', /limit must be a whole number from 1 to 1000/)

  const res = await fetch(`${node.httpUrl}/api/v1/backup`, { headers: { authorization: `Bearer ${adminJwt}` } })
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-disposition') ?? '', /^attachment; filename="warbler-backup-.*\.db"$/)
  const file = path.join(node.dataDir, 'downloaded.db')
  writeFileSync(file, Buffer.from(await res.arrayBuffer()))
  assert.ok((await checkDatabase(file)).users >= 2, 'the download is a sound Warbler database')
})

test('users: disable refuses every login and closes live connections, keeping the user and its tokens; enable undoes it', async () => {
  await api('/api/v1/users', { method: 'POST', body: { name: 'erin', password: 'erin-secret-1' } })
  const tok = (await api<{ token: string }>('/api/v1/tokens', { method: 'POST', body: { user: 'erin', name: 'phone' } })).body.token
  const live = await connect(node.mqttUrl, { username: 'erin', password: 'erin-secret-1', clientId: 'erin-live' })
  const closed = new Promise<void>((resolve) => { live.once('close', () => { resolve() }) })
  const web = await fetch(`${node.httpUrl}/api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'erin', password: 'erin-secret-1' }) })
  const { refreshToken } = await web.json() as { refreshToken: string }

  const off = await api<{ disabled: boolean, endedLogins: number }>('/api/v1/users/erin/disabled', { method: 'PUT', body: { disabled: true } })
  assert.deepEqual([off.status, off.body.disabled, off.body.endedLogins], [200, true, 1])
  await closed
  live.end(true)
  assert.equal((await users()).find((u) => u.name === 'erin')?.disabled, true)
  assert.equal(await connackCode(node.mqttUrl, { username: 'erin', password: 'erin-secret-1', clientId: 'erin' }), 4)
  assert.equal(await connackCode(node.mqttUrl, { username: 'erin', password: tok, clientId: 'erin' }), 4)
  assert.equal((await fetch(`${node.httpUrl}/api/session/refresh`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refreshToken }) })).status, 401)
  const login = await fetch(`${node.httpUrl}/api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'erin', password: 'erin-secret-1' }) })
  assert.equal(login.status, 401)
  const reasons = (await api<{ refusals: Array<{ reason: string, user: string | null }> }>('/api/v1/refusals')).body.refusals
  // Newest first: the web login, the refresh of the login that was ended, the device token, the password.
  assert.deepEqual(reasons.slice(0, 4).map((r) => [r.reason, r.user]), [['user disabled', 'erin'], ['expired refresh token', null], ['user disabled', 'erin'], ['user disabled', 'erin']])
  // A wrong password gets the same answer as for any user: disabled says nothing to someone without it.
  assert.equal(await connackCode(node.mqttUrl, { username: 'erin', password: 'not-erins-pw', clientId: 'erin' }), 4)
  assert.equal((await api<{ refusals: Array<{ reason: string }> }>('/api/v1/refusals')).body.refusals[0]?.reason, 'bad password')

  assert.equal((await api('/api/v1/users/erin/disabled', { method: 'PUT', body: { disabled: false } })).status, 200)
  assert.equal(await connackCode(node.mqttUrl, { username: 'erin', password: tok, clientId: 'erin' }), 0, 'its device token works again')

  await refused('/api/v1/users/erin/disabled', { method: 'PUT', body: { disabled: 'yes' } }, 400, 'bad_request', /^disabled must be true or false/)
  await refused('/api/v1/users/erin/disabled', { method: 'PUT', body: {} }, 400, 'bad_request', /^disabled is required/)
  await refused('/api/v1/users/nobody/disabled', { method: 'PUT', body: { disabled: true } }, 404, 'not_found', /no user nobody/)
})

test('warbler user disable|enable: the same change from the command line, shown by user list', async () => {
  const cli = (...args: string[]): { status: number | null, stdout: string, stderr: string } =>
    spawnSync(process.execPath, [CLI, 'user', ...args, '--data-dir', node.dataDir], { encoding: 'utf8', timeout: 30_000 })
  const off = cli('disable', 'bob')
  assert.equal(off.status, 0, off.stderr)
  assert.equal(off.stdout, 'bob is disabled\n')
  assert.match(cli('list').stdout, /^bob\tuser\t\S+\tdisabled$/m)
  assert.equal(await connackCode(node.mqttUrl, { username: 'bob', password: PW, clientId: 'bob' }), 4)
  assert.equal((await users()).find((u) => u.name === 'bob')?.disabled, true)
  assert.equal(cli('enable', 'bob').stdout, 'bob is enabled\n')
  assert.equal(await connackCode(node.mqttUrl, { username: 'bob', password: PW, clientId: 'bob' }), 0)
  const none = cli('disable', 'nobody')
  assert.notEqual(none.status, 0)
  assert.match(none.stderr, /no user nobody/)
})

test('backup: the temporary copy is removed after the download, also when the client drops it', async () => {
  const left = (): string[] => readdirSync(os.tmpdir()).filter((f) => f.startsWith(`warbler-backup-${process.pid}-`))
  const ac = new AbortController()
  const res = await fetch(`${node.httpUrl}/api/v1/backup`, { headers: { authorization: `Bearer ${adminJwt}` }, signal: ac.signal })
  assert.equal(res.status, 200)
  ac.abort()
  const deadline = Date.now() + 5000
  while (left().length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  assert.deepEqual(left(), [])
})
