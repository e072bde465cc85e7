/**
 * The admin HTTP API of the message service (docs/operations.md), over a real
 * HTTP port of a node, after real chat over MQTT: tokens from the real CLI
 * and the identity store, every route, and the refusals (401 without valid
 * credentials, 403 for a valid token of a user who is not an admin, 400
 * naming the bad field, 404 for what does not exist).
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { after, before, test } from 'node:test'
import { SignJWT } from 'jose'
import type { AckFrame, ConversationSummary, HistoryPage, MessageFrame, Unread } from '../../sdk/src/protocol.js'
import { ChatClient } from '../helpers/chat-client.js'
import { CLI, startNode, type TestNode } from '../helpers/test-node.js'

const PW = 'password-123'
let node: TestNode
let clients: ChatClient[] = []
let adminJwt: string
let adminDevice: { id: string, token: string }
let aliceJwt: string
let group: string
const acks: AckFrame[] = []

// The answers' bodies (docs/operations.md; bridge/admin-api.ts sends the archive reader's results).
interface Refusal { error: { code: string, message: string } }
interface Members { members: Array<{ user: string, role: string, readSeq: number, deliveredSeq: number }> }
interface Conversations { conversations: ConversationSummary[] }
interface Found { messages: MessageFrame[] }

/** GET (or `init`) path; the body is what the test says the route answers. */
async function api<T = unknown> (path: string, token: string | null = adminJwt, init: RequestInit = {}): Promise<{ status: number, body: T, headers: Headers }> {
  const headers: Record<string, string> = {}
  if (token !== null) headers.authorization = `Bearer ${token}`
  const res = await fetch(node.httpUrl + path, { ...init, headers: { ...headers, ...(init.headers as Record<string, string> | undefined) } })
  const text = await res.text()
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/, `${path}: JSON`)
  return { status: res.status, body: JSON.parse(text) as T, headers: res.headers }
}

async function expectError (path: string, status: number, code: string, message: RegExp, token: string | null = adminJwt): Promise<void> {
  const r = await api<Refusal>(path, token)
  assert.equal(r.status, status, `${path}: ${JSON.stringify(r.body)}`)
  assert.deepEqual(Object.keys(r.body), ['error'])
  assert.equal(r.body.error.code, code, path)
  assert.match(r.body.error.message, message, path)
}

/** The status of GET path, asked again until it is `want` (identity changes apply within a second). */
async function statusUntil (path: string, token: string, want: number): Promise<number> {
  const deadline = Date.now() + 3000
  for (;;) {
    const status = (await api(path, token)).status
    if (status === want || Date.now() > deadline) return status
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

before(async () => {
  node = await startNode(['--publish-rate', '0'], {
    users: [{ name: 'admin', password: PW, admin: true }, ...['alice', 'bob', 'carol'].map((name) => ({ name, password: PW }))]
  })
  // A real access token from the CLI, on the running node's data dir.
  const cli = spawnSync(process.execPath, [CLI, 'token', 'create', 'admin', '--data-dir', node.dataDir], { encoding: 'utf8' })
  assert.equal(cli.status, 0, cli.stderr)
  adminJwt = cli.stdout.trim()
  assert.match(adminJwt, /^eyJ/)
  adminDevice = await node.identity.createDeviceToken('admin', 'ops-laptop')
  aliceJwt = await node.identity.createJwt('alice', 600)

  const alice = await ChatClient.connect(node.mqttUrl, 'alice', PW)
  const bob = await ChatClient.connect(node.mqttUrl, 'bob', PW)
  clients = [alice, bob]
  for (const body of ['one', 'two', { text: 'the raspberry is ripe' }, 'four']) acks.push(await alice.sendOk({ to: 'bob' }, body))
  await bob.req('read', { conv: 'd:alice:bob', seq: 2 })
  group = (await alice.req('group.create', { name: 'Pi club', members: ['bob', 'carol'] })).conv
  await bob.sendOk({ conv: group }, 'raspberry pies for all')
})

after(async () => {
  for (const c of clients) await c.close()
  await node.close()
})

test('admin API: a page of history, with before, after and limit', async () => {
  const all = await api<HistoryPage>('/api/v1/conversations/d:alice:bob/messages')
  assert.equal(all.status, 200)
  assert.equal(all.headers.get('cache-control'), 'no-store')
  assert.equal(all.body.more, false)
  const msgs = all.body.messages
  assert.deepEqual(msgs.map((m) => [m.seq, m.from, m.body]), [[1, 'alice', 'one'], [2, 'alice', 'two'], [3, 'alice', { text: 'the raspberry is ripe' }], [4, 'alice', 'four']])
  assert.deepEqual(msgs.map((m) => m.id), acks.map((a) => a.id))
  const newest = await api<HistoryPage>('/api/v1/conversations/d:alice:bob/messages?limit=2')
  assert.deepEqual(newest.body.messages.map((m: MessageFrame) => m.seq), [3, 4])
  assert.equal(newest.body.more, true)
  const older = await api<HistoryPage>('/api/v1/conversations/d:alice:bob/messages?before=3&limit=1')
  assert.deepEqual(older.body.messages.map((m: MessageFrame) => m.seq), [2])
  const newer = await api<HistoryPage>('/api/v1/conversations/d:alice:bob/messages?after=1&limit=2')
  assert.deepEqual(newer.body.messages.map((m: MessageFrame) => m.seq), [2, 3])
  assert.equal(newer.body.more, true)
  // A conversation id with characters that need encoding in a path.
  const enc = await api<HistoryPage>(`/api/v1/conversations/${encodeURIComponent('d:alice:bob')}/messages?limit=1`)
  assert.deepEqual(enc.body.messages.map((m: MessageFrame) => m.seq), [4])
})

test('admin API: members with roles and watermarks; one message by id', async () => {
  const m = await api('/api/v1/conversations/d:alice:bob/members')
  assert.equal(m.status, 200)
  assert.deepEqual(m.body, { members: [{ user: 'alice', role: 'member', readSeq: 4, deliveredSeq: 4 }, { user: 'bob', role: 'member', readSeq: 2, deliveredSeq: 2 }] })
  const g = await api<Members>(`/api/v1/conversations/${group}/members`)
  assert.deepEqual(g.body.members.map((x: { user: string, role: string }) => [x.user, x.role]), [['alice', 'owner'], ['bob', 'member'], ['carol', 'member']])
  const one = await api(`/api/v1/messages/${acks[2]?.id ?? ''}`)
  assert.equal(one.status, 200)
  assert.deepEqual(one.body, { t: 'msg', id: acks[2]?.id, conv: 'd:alice:bob', seq: 3, from: 'alice', ts: acks[2]?.ts, body: { text: 'the raspberry is ripe' }, cid: acks[2]?.cid })
})

test('admin API: a user\'s conversation list and unread counts', async () => {
  const list = await api<Conversations>('/api/v1/users/bob/conversations')
  assert.equal(list.status, 200)
  const convs = list.body.conversations
  assert.deepEqual(convs.map((c) => [c.conv, c.kind, c.name, c.lastSeq, c.readSeq, c.unread]), [[group, 'group', 'Pi club', 2, 2, 0], ['d:alice:bob', 'direct', null, 4, 2, 2]])
  assert.equal(convs[0]?.last?.body, 'raspberry pies for all')
  assert.equal((await api<Conversations>('/api/v1/users/bob/conversations?limit=1')).body.conversations.length, 1)
  assert.deepEqual((await api<Unread>('/api/v1/users/bob/unread')).body, { total: 2, conversations: { 'd:alice:bob': 2 } })
  assert.deepEqual((await api<Unread>('/api/v1/users/carol/unread')).body, { total: 2, conversations: { [group]: 2 } })
})

test('admin API: search in a user\'s conversations, optionally one of them', async () => {
  const bob = await api<Found>('/api/v1/search?user=bob&q=raspberry')
  assert.equal(bob.status, 200)
  assert.deepEqual(bob.body.messages.map((m: MessageFrame) => m.body), ['raspberry pies for all', { text: 'the raspberry is ripe' }])
  const carol = await api<Found>('/api/v1/search?user=carol&q=raspberry')
  assert.deepEqual(carol.body.messages.map((m: MessageFrame) => m.body), ['raspberry pies for all'], 'only in the user\'s conversations')
  const one = await api<Found>('/api/v1/search?user=bob&q=raspberry&conv=d:alice:bob&limit=5')
  assert.deepEqual(one.body.messages.map((m: MessageFrame) => m.seq), [3])
  assert.deepEqual((await api('/api/v1/search?user=bob&q=nothinglikethis')).body, { messages: [] })
})

test('admin API: 401 with WWW-Authenticate: Bearer for no or bad credentials, whatever the route', async () => {
  const key = await node.identity.jwtKey()
  const now = Math.floor(Date.now() / 1000)
  // Signed with the node's own key and right but for its expiry: refused for that alone.
  const expired = await new SignJWT({}).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject('admin').setIssuer('warbler').setIssuedAt(now - 120).setExpirationTime(now - 60).sign(key)
  const revoked = await node.identity.createDeviceToken('admin', 'lost-phone')
  assert.equal(await statusUntil('/api/v1/users/bob/unread', revoked.token, 200), 200, 'the device token works before it is revoked (once the node knows it)')
  await node.identity.revokeDeviceToken(revoked.id)
  assert.equal(await statusUntil('/api/v1/users/bob/unread', revoked.token, 401), 401, 'a revoked device token is refused')
  const headers: Array<[string, string | null]> = [
    ['no Authorization header', null],
    ['an empty bearer token', 'Bearer '],
    ['the scheme alone', 'Bearer'],
    ['another scheme', `Token ${adminJwt}`],
    ['a password as Basic credentials', `Basic ${Buffer.from(`admin:${PW}`).toString('base64')}`],
    ['two tokens', `Bearer ${adminJwt} ${adminJwt}`],
    ['a token of no known shape', 'Bearer not-a-token'],
    ['a forged JWT', 'Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.forged'],
    ['a device token with a wrong secret', `Bearer wbd.${adminDevice.id}.wrong-secret`],
    ['an expired JWT', `Bearer ${expired}`],
    ['a revoked device token', `Bearer ${revoked.token}`]
  ]
  for (const p of ['/api/v1/conversations/d:alice:bob/messages', '/api/v1/users/bob/unread', '/api/v1/nowhere']) {
    for (const [why, authorization] of headers) {
      const r = await api<Refusal>(p, null, authorization === null ? {} : { headers: { authorization } })
      assert.equal(r.status, 401, `${p}, ${why}: ${JSON.stringify(r.body)}`)
      assert.equal(r.body.error.code, 'not_authorized', `${p}, ${why}`)
      assert.match(r.body.error.message, /admin access or device token/, `${p}, ${why}`)
      assert.equal(r.headers.get('www-authenticate'), 'Bearer', `${p}, ${why}`)
    }
  }
  // The admin's tokens, for comparison: the same requests with them succeed.
  assert.equal((await api('/api/v1/users/bob/unread', adminJwt)).status, 200)
  assert.equal((await api('/api/v1/users/bob/unread', adminDevice.token)).status, 200)
})

test('admin API: 403 forbidden for a valid token of a user who is not an admin; admin rights are read live', async () => {
  const aliceDevice = await node.identity.createDeviceToken('alice', 'laptop')
  assert.equal(await statusUntil('/api/v1/users/alice/unread', aliceDevice.token, 403), 403, 'a new device token is known within a second')
  for (const token of [aliceJwt, aliceDevice.token]) {
    for (const p of ['/api/v1/conversations/d:alice:bob/messages', '/api/v1/users/alice/unread', '/api/v1/nowhere']) {
      const r = await api<Refusal>(p, token)
      assert.equal(r.status, 403, `${p}: ${JSON.stringify(r.body)}`)
      assert.deepEqual(Object.keys(r.body), ['error'])
      assert.equal(r.body.error.code, 'forbidden')
      assert.match(r.body.error.message, /^user alice is not an admin/)
      assert.equal(r.headers.get('www-authenticate'), null, 'other credentials of the same user would not help')
    }
  }
  // Granting admin rights lets the same token in, taking them away shuts it out again.
  const bobJwt = await node.identity.createJwt('bob', 600)
  await expectError('/api/v1/users/bob/unread', 403, 'forbidden', /^user bob is not an admin/, bobJwt)
  await node.identity.setAdmin('bob', true)
  assert.equal(await statusUntil('/api/v1/users/bob/unread', bobJwt, 200), 200)
  await node.identity.setAdmin('bob', false)
  assert.equal(await statusUntil('/api/v1/users/bob/unread', bobJwt, 403), 403)
  // A POST from a non-admin is refused for who it is before what it asks.
  assert.equal((await api('/api/v1/users/bob/unread', bobJwt, { method: 'POST', body: '{}' })).status, 403)
})

test('admin API: 400 naming the bad parameter', async () => {
  const cases: Array<[string, RegExp]> = [
    ['/api/v1/conversations/d:alice:bob/messages?limit=0', /^limit must be a whole number from 1 to 1000/],
    ['/api/v1/conversations/d:alice:bob/messages?limit=1001', /^limit /],
    ['/api/v1/conversations/d:alice:bob/messages?limit=ten', /^limit /],
    ['/api/v1/conversations/d:alice:bob/messages?before=0', /^before must be/],
    ['/api/v1/conversations/d:alice:bob/messages?after=-1', /^after must be/],
    ['/api/v1/conversations/d:alice:bob/messages?after=1.5', /^after must be/],
    ['/api/v1/conversations/nope/messages', /^conv must be a conversation id/],
    ['/api/v1/conversations/d:bob:alice/members', /^conv must be a conversation id/],
    ['/api/v1/users/Bad!Name/unread', /^user must be a user name/],
    ['/api/v1/users/bob/conversations?limit=x', /^limit /],
    ['/api/v1/search?q=raspberry', /^user must be a user name/],
    ['/api/v1/search?user=bob', /^q must be 1-200 characters/],
    ['/api/v1/search?user=bob&q=%20%20', /^q must be/],
    [`/api/v1/search?user=bob&q=${'x'.repeat(201)}`, /^q must be/],
    ['/api/v1/search?user=bob&q=pi&conv=garbage', /^conv must be a conversation id/],
    ['/api/v1/search?user=bob&q=pi&limit=101', /^limit must be a whole number from 1 to 100/],
    ['/api/v1/messages/%E0%A4%A', /percent-encoded/]
  ]
  for (const [p, msg] of cases) await expectError(p, 400, 'bad_request', msg)
  const post = await api<Refusal>('/api/v1/users/bob/unread', adminJwt, { method: 'POST', body: '{}' })
  assert.equal(post.status, 400)
  assert.equal(post.body.error.code, 'bad_request')
  assert.equal(post.headers.get('allow'), 'GET')
})

test('admin API: 404 for an unknown conversation, message or route', async () => {
  await expectError('/api/v1/conversations/d:alice:carol/messages', 404, 'not_found', /no conversation d:alice:carol/)
  await expectError('/api/v1/conversations/g:0123456789abcdef/members', 404, 'not_found', /no conversation/)
  await expectError('/api/v1/messages/00000000000000000000000', 404, 'not_found', /no message/)
  await expectError('/api/v1/nothing', 404, 'not_found', /no route GET \/api\/v1\/nothing/)
  await expectError('/api/v1/conversations/d:alice:bob/secrets', 404, 'not_found', /no route/)
  await expectError('/api/v1/users/bob/friends', 404, 'not_found', /no route/)
  await expectError('/api/v1/users/bob/unread/extra', 404, 'not_found', /no route/)
  // Outside /api/v1/ the operator endpoints are unchanged and need no token.
  const health = await fetch(`${node.httpUrl}/healthz`)
  assert.equal(health.status, 200)
})
