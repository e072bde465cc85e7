// Logins over time: a short-lived token is refreshed before a reconnect, a
// refused login asks refreshToken() for a new one, and the first connect
// reports what went wrong (or waits, when asked to).
import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import { test } from 'node:test'
import { AuthError, ConnectionLostError } from '../../sdk/src/errors.js'
import { TcpProxy } from '../helpers/proxy.js'
import { addUser, startNode, type TestNode, tempDir, withStore } from '../helpers/test-node.js'
import { lifo, PW, recorded, sleep, until } from './support.js'

const expiry = (jwt: string): number => (JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString()) as { exp: number }).exp * 1000

async function setup (defer: (fn: () => unknown) => void, dataDir?: string): Promise<{ node: TestNode, proxy: TcpProxy }> {
  const node = await startNode([], dataDir === undefined ? { users: [{ name: 'alice', password: PW }, { name: 'bob', password: PW }] } : { dataDir })
  defer(() => node.close())
  const proxy = await TcpProxy.start(node.ports.mqtt as number)
  defer(() => proxy.close())
  return { node, proxy }
}

test('an expired token is refreshed before reconnecting', { timeout: 20_000 }, async (t) => {
  const defer = lifo(t)
  const { node, proxy } = await setup(defer)
  const token = await withStore(node.dataDir, (s) => s.createJwt('alice', 2))
  const fresh: string[] = []
  const a = recorded({
    url: proxy.url,
    username: 'alice',
    token,
    device: 'ttl',
    refreshToken: async () => {
      const jwt = await withStore(node.dataDir, (s) => s.createJwt('alice', 60))
      fresh.push(jwt)
      return jwt
    }
  })
  defer(() => a.client.close())
  await a.client.connect()
  assert.deepEqual(fresh, [], 'no refresh to connect with a valid token')

  await sleep(Math.max(0, expiry(token) - Date.now()) + 200) // the token expires; the open link stays
  assert.equal(a.client.state, 'connected')
  proxy.drop()
  await until(() => a.client.state === 'reconnecting', 5000, 'the lost link')
  await until(() => a.client.state === 'connected', 5000, 'the reconnect')
  assert.equal(fresh.length, 1, 'one fresh token')
  assert.deepEqual(a.errors, [], 'refreshed before the server could refuse the old one')
  const ack = await a.client.send({ to: 'bob' }, 'after refresh')
  assert.equal(ack.seq, 1)
  await a.client.close()
  assert.deepEqual(a.states, ['connecting', 'connected', 'reconnecting', 'connected', 'closed'])
})

test('a refused login on reconnect (revoked device token) gets a new token from refreshToken', { timeout: 20_000 }, async (t) => {
  const defer = lifo(t)
  const dataDir = tempDir()
  defer(() => rmSync(dataDir, { recursive: true, force: true }))
  await addUser(dataDir, { name: 'alice', password: PW })
  const device = await withStore(dataDir, (s) => s.createDeviceToken('alice', 'phone'))
  const { node } = await setup(defer, dataDir)
  let refreshes = 0
  const a = recorded({
    url: node.mqttUrl,
    username: 'alice',
    token: device.token,
    device: 'phone',
    refreshToken: async () => { refreshes++; return await withStore(node.dataDir, (s) => s.createJwt('alice', 60)) }
  })
  defer(() => a.client.close())
  await a.client.connect()
  await withStore(node.dataDir, (s) => s.revokeDeviceToken(device.id))
  // The broker cuts the revoked token's connection; the next login with it is refused.
  await until(() => a.client.state === 'reconnecting', 5000, 'the broker to cut the revoked token off')
  await until(() => a.client.state === 'connected', 5000, 'the reconnect with a new token')
  assert.equal(refreshes, 1)
  assert.ok(a.errors.length >= 1 && a.errors.every((e) => e instanceof AuthError && e.returnCode === 4 && e.code === 'auth_failed'),
    `the refused login is reported: ${a.errors.map((e) => e.message).join('; ')}`)
  assert.equal((await a.client.unread()).total, 0, 'and works')
})

test('the first connect: a refused or unreachable server rejects; refreshToken and waitOnFirstConnect recover', { timeout: 20_000 }, async (t) => {
  const defer = lifo(t)
  const { node, proxy } = await setup(defer)
  const expired = await withStore(node.dataDir, (s) => s.createJwt('alice', 1))
  await sleep(Math.max(0, expiry(expired) - Date.now()) + 100)

  // An expired token and nothing to refresh it: AuthError, closed, no retry.
  const noRefresh = recorded({ url: node.mqttUrl, username: 'alice', token: expired, device: 'x1' })
  await assert.rejects(noRefresh.client.connect(), (e: unknown) => e instanceof AuthError && e.returnCode === 4)
  assert.deepEqual(noRefresh.states, ['connecting', 'closed'])

  // A wrong password: the same.
  const wrong = recorded({ url: node.mqttUrl, username: 'alice', password: 'not-the-password', device: 'x2' })
  await assert.rejects(wrong.client.connect(), AuthError)
  await assert.rejects(wrong.client.send({ to: 'bob' }, 'hi'), { code: 'closed' })

  // An expired token with refreshToken: refused once, refreshed, connected.
  const refreshed = recorded({
    url: node.mqttUrl, username: 'alice', token: expired, device: 'x3', refreshToken: async () => await withStore(node.dataDir, (s) => s.createJwt('alice', 60))
  })
  defer(() => refreshed.client.close())
  await refreshed.client.connect()
  assert.deepEqual(refreshed.states, ['connecting', 'reconnecting', 'connected'])
  assert.equal(refreshed.errors.length, 1)

  // Nothing listening: ConnectionLostError at once.
  proxy.block()
  const t0 = Date.now()
  const away = recorded({ url: proxy.url, username: 'alice', password: PW, device: 'x4' })
  await assert.rejects(away.client.connect(), ConnectionLostError)
  assert.ok(Date.now() - t0 < 2000)
  assert.equal(away.client.state, 'closed')

  // ...unless asked to wait: it keeps trying, and connects once the server is back.
  const patient = recorded({ url: proxy.url, username: 'alice', password: PW, device: 'x5', waitOnFirstConnect: true })
  defer(() => patient.client.close())
  const connecting = patient.client.connect()
  const queued = patient.client.send({ to: 'bob' }, 'written before the first connect')
  await sleep(600)
  assert.equal(patient.client.state, 'reconnecting')
  proxy.unblock()
  await connecting
  assert.equal((await queued).seq, 1, 'a send made before connecting goes out once connected')
  assert.deepEqual(patient.states, ['connecting', 'reconnecting', 'connected'])

  // Warbler.connect's listeners come after the first sync: what it brought is kept for them.
  const late = await (await import('../../sdk/src/index.js')).Warbler.connect({ url: node.mqttUrl, username: 'bob', password: PW, device: 'late' })
  defer(() => late.close())
  const got: unknown[] = []
  late.on('message', (m) => got.push(m.body))
  await until(() => got.length === 1, 2000, 'the message from the first sync')
  assert.deepEqual(got, ['written before the first connect'])
})
