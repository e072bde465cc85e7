/**
 * What the log says about logins and connections (broker/login-log.ts), read
 * from a real node's log lines: the reason of every kind of refused login,
 * with address and client id and never a secret; the rate limit on those
 * lines; connect and disconnect lines with why a connection ended.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { SignJWT } from 'jose'
import type { IConnackPacket } from 'mqtt-packet'
import { connectPacket, rawSocket, remainingLength } from '../helpers/raw.js'
import { connect, startNode, type TestNode, type UserSpec } from '../helpers/test-node.js'

const ALICE: UserSpec = { name: 'alice', password: 'alice-password-1' }
const BOB: UserSpec = { name: 'bob', password: 'bob-password-22' }

type Line = Record<string, unknown> & { msg: string }
const parse = (lines: string[]): Line[] => lines.map((l) => JSON.parse(l) as Line)

async function node (t: { after: (fn: () => Promise<void>) => void }, args: string[], lines: string[]): Promise<TestNode> {
  const n = await startNode(args, { users: [ALICE, BOB], logLines: lines })
  t.after(() => n.close())
  return n
}

/** A CONNECT from a chosen loopback address; resolves to the CONNACK return code. */
async function attempt (n: TestNode, from: string, p: { clientId?: string, username?: string, password?: string, clean?: boolean }): Promise<number> {
  const c = await rawSocket(n.ports.mqtt as number, { localAddress: from })
  try {
    c.send(connectBytes(p))
    return (await c.next((x) => x.cmd === 'connack') as IConnackPacket).returnCode ?? -1
  } finally {
    c.destroy()
  }
}

/**
 * A CONNECT made by hand: mqtt-packet will not build some of the ones needed
 * (a password without a user name, an empty client id without clean session).
 */
function connectBytes (p: { clientId?: string, username?: string, password?: string, clean?: boolean }): Buffer {
  const str = (x: string): Buffer => { const b = Buffer.from(x); return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]) }
  const flags = (p.clean === false ? 0 : 0x02) | (p.username !== undefined ? 0x80 : 0) | (p.password !== undefined ? 0x40 : 0)
  const body = Buffer.concat([str('MQTT'), Buffer.from([4, flags, 0, 30]), str(p.clientId ?? ''),
    ...(p.username !== undefined ? [str(p.username)] : []), ...(p.password !== undefined ? [str(p.password)] : [])])
  return Buffer.concat([Buffer.from([0x10]), remainingLength(body.length), body])
}

async function until (what: string, check: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

test('every kind of refused login is logged with its reason, address and client id, and no log line holds a secret', async (t) => {
  const lines: string[] = []
  const n = await node(t, ['--conn-rate', '0', '--login-failures', '1000'], lines)
  const jwt = await n.identity.createJwt('alice', 600)
  const device = await n.identity.createDeviceToken('alice', 'sensor')
  const revoked = await n.identity.createDeviceToken('alice', 'old')
  await n.identity.revokeDeviceToken(revoked.id)
  const key = await n.identity.jwtKey()
  const now = Math.floor(Date.now() / 1000)
  const sign = async (claims: { iss?: string, iat: number, exp: number }, k: Uint8Array = key): Promise<string> =>
    await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setIssuer(claims.iss ?? 'warbler').setIssuedAt(claims.iat).setExpirationTime(claims.exp).sign(k)
  const [, id, secret] = device.token.split('.') as [string, string, string]
  const wrongSecret = `wbd.${id}.${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`
  const expired = await sign({ iat: now - 7200, exp: now - 3600 })
  const forged = await sign({ iat: now, exp: now + 600 }, new Uint8Array(32).fill(7))
  const foreign = await sign({ iss: 'elsewhere', iat: now, exp: now + 600 })
  const older = await sign({ iat: now - 3600, exp: now + 600 }) // before alice was created

  const cases: Array<[string, { clientId?: string, username?: string, password?: string, clean?: boolean }, number, string | null, string | null]> = [
    // reason, CONNECT, CONNACK, client id logged, user logged
    ['unknown user', { clientId: 'mallory', username: 'mallory', password: 'mallorys-password' }, 4, 'mallory', 'mallory'],
    ['bad password', { clientId: 'alice-x', username: 'alice', password: 'a-wrong-password' }, 4, 'alice-x', 'alice'],
    ['no password', { clientId: 'alice', username: 'alice' }, 4, 'alice', 'alice'],
    ['password without user name', { clientId: 'dev1', password: ALICE.password }, 4, 'dev1', null],
    ['invalid user name', { clientId: 'x', username: ALICE.password, password: ALICE.password }, 4, 'x', null],
    ['unknown token', { clientId: 'alice', username: 'alice', password: `wbd.0123456789abcdef.${secret}` }, 4, 'alice', 'alice'],
    ['wrong token secret', { clientId: 'alice', username: 'alice', password: wrongSecret }, 4, 'alice', 'alice'],
    ['token of another user', { clientId: 'bob', username: 'bob', password: device.token }, 4, 'bob', 'bob'],
    ['revoked token', { clientId: 'alice-old', username: 'alice', password: revoked.token }, 4, 'alice-old', 'alice'],
    ['expired token', { clientId: 'alice', username: 'alice', password: expired }, 4, 'alice', 'alice'],
    ['bad token signature', { clientId: 'alice', username: 'alice', password: forged }, 4, 'alice', 'alice'],
    ['invalid token', { clientId: 'alice', username: 'alice', password: foreign }, 4, 'alice', 'alice'],
    ['token older than the user', { clientId: 'alice', username: 'alice', password: older }, 4, 'alice', 'alice'],
    ['client id not the user\'s', { clientId: 'bob-phone', username: 'alice', password: ALICE.password }, 2, 'bob-phone', 'alice'],
    ['empty client id needs clean session', { clientId: '', username: 'alice', password: jwt, clean: false }, 2, null, 'alice'],
    ['anonymous not allowed', { clientId: 'someone' }, 5, 'someone', null],
    // A token pasted into the client id field is not logged either.
    ['token of another user', { clientId: jwt.slice(0, 60), username: 'bob', password: jwt }, 4, null, 'bob']
  ]
  for (const [i, [reason, p, code, clientId, user]] of cases.entries()) {
    const from = `127.0.0.${10 + i}`
    assert.equal(await attempt(n, from, p), code, reason)
    await until(`the ${reason} line`, () => parse(lines).some((l) => l.msg === 'login failed' && l.address === from))
    const line = parse(lines).find((l) => l.msg === 'login failed' && l.address === from) as Line
    assert.equal(line.level, 'info')
    assert.equal(line.reason, reason, JSON.stringify(line))
    assert.equal(line.clientId, clientId, reason)
    assert.equal(line.user, user, reason)
  }

  const secrets = [ALICE.password, BOB.password, jwt, device.token, secret, wrongSecret, revoked.token, expired, forged, foreign, older,
    'a-wrong-password', 'mallorys-password', jwt.split('.')[2] as string, jwt.slice(0, 60)]
  for (const l of lines) for (const s of secrets) assert.ok(!l.includes(s), `a log line holds a secret: ${l}`)
})

test('limits are logged as the reason: too many connections, too many new connections from the address, locked out', async (t) => {
  const lines: string[] = []
  const full = await node(t, ['--max-connections', '1', '--conn-rate', '0'], lines)
  const held = await connect(full.mqttUrl, { username: 'bob', password: BOB.password, clientId: 'bob' })
  t.after(() => held.endAsync())
  assert.equal(await attempt(full, '127.0.0.2', { clientId: 'alice', username: 'alice', password: ALICE.password }), 3)

  const rate = await node(t, ['--conn-rate', '1', '--conn-burst', '1'], lines)
  // Three at once from one address: the bucket holds one, and refills one a second.
  const codes = await Promise.all([0, 1, 2].map(async () => await attempt(rate, '127.0.0.3', { clientId: 'alice', username: 'alice', password: ALICE.password })))
  assert.ok(codes.filter((c) => c === 3).length >= 1, String(codes))

  const lock = await node(t, ['--conn-rate', '0', '--login-failures', '1'], lines)
  assert.equal(await attempt(lock, '127.0.0.4', { clientId: 'alice', username: 'alice', password: 'a-wrong-password' }), 4)
  assert.equal(await attempt(lock, '127.0.0.4', { clientId: 'alice', username: 'alice', password: ALICE.password }), 4)

  const failed = (from: string): unknown[] => parse(lines).filter((l) => l.msg === 'login failed' && l.address === from).map((l) => l.reason)
  await until('the limit lines', () => failed('127.0.0.2').length === 1 && failed('127.0.0.3').length >= 1 && failed('127.0.0.4').length === 2)
  assert.deepEqual(failed('127.0.0.2'), ['too many connections'])
  assert.ok(failed('127.0.0.3').every((r) => r === 'too many new connections from the address'))
  assert.deepEqual(failed('127.0.0.4'), ['bad password', 'locked out after failed logins'])
})

test('failed-login lines of one address are rate limited; the rest are summed up with their reasons', async (t) => {
  const lines: string[] = []
  const n = await startNode(['--conn-rate', '0', '--login-failures', '1000'], { users: [ALICE], logLines: lines })
  let closed = false
  t.after(async () => { if (!closed) await n.close() })
  for (let i = 0; i < 10; i++) {
    assert.equal(await attempt(n, '127.0.0.5', { clientId: 'alice', username: 'alice', password: `wrong-password-${i}` }), 4)
  }
  for (let i = 0; i < 2; i++) {
    assert.equal(await attempt(n, '127.0.0.5', { clientId: 'nobody', username: 'nobody', password: 'nobodys-password' }), 4)
  }
  assert.equal(await attempt(n, '127.0.0.6', { clientId: 'alice', username: 'alice', password: 'wrong-password-x' }), 4)
  const failed = (from: string): Line[] => parse(lines).filter((l) => l.msg === 'login failed' && l.address === from)
  await until('a line for the other address', () => failed('127.0.0.6').length === 1)
  assert.equal(failed('127.0.0.5').length, 3, 'three lines per address per window')
  // The count of the others comes at the end of the window, or at close.
  await n.close()
  closed = true
  const summary = parse(lines).filter((l) => l.msg === 'login failures not logged')
  assert.equal(summary.length, 1, JSON.stringify(summary))
  assert.equal(summary[0]?.address, '127.0.0.5')
  assert.equal(summary[0]?.count, 9)
  assert.deepEqual(summary[0]?.reasons, { 'bad password': 7, 'unknown user': 2 })
})

test('connects and disconnects are logged with client id, user, address, protocol, keepalive, clean session, and why it ended', async (t) => {
  const lines: string[] = []
  const n = await node(t, ['--conn-rate', '0', '--login-failures', '1000'], lines)
  const disconnected = (clientId: string): Line | undefined => parse(lines).find((l) => l.msg === 'client disconnected' && l.clientId === clientId)
  const reasonOf = async (clientId: string): Promise<unknown> => {
    await until(`${clientId} disconnected`, () => disconnected(clientId) !== undefined)
    return disconnected(clientId)?.reason
  }

  const phone = await connect(n.mqttUrl, { username: 'alice', password: ALICE.password, clientId: 'alice-phone', keepalive: 45, clean: false })
  await until('connected line', () => parse(lines).some((l) => l.msg === 'client connected' && l.clientId === 'alice-phone'))
  const line = parse(lines).find((l) => l.msg === 'client connected' && l.clientId === 'alice-phone') as Line
  assert.deepEqual({ ...line, time: undefined }, {
    time: undefined, level: 'info', msg: 'client connected', clientId: 'alice-phone', user: 'alice', address: '127.0.0.1', protocolVersion: 4, keepalive: 45, cleanSession: false
  })
  await phone.endAsync()
  assert.equal(await reasonOf('alice-phone'), 'client asked')
  assert.equal(disconnected('alice-phone')?.user, 'alice')

  // The same client id again: the older connection is taken over.
  const first = await connect(n.mqttUrl, { username: 'alice', password: ALICE.password, clientId: 'alice-tab' })
  const second = await connect(n.mqttUrl, { username: 'alice', password: ALICE.password, clientId: 'alice-tab' })
  t.after(() => { first.end(true); second.end(true) })
  assert.equal(await reasonOf('alice-tab'), 'takeover')

  // Silent past 1.5 x its keepalive.
  const quiet = await rawSocket(n.ports.mqtt as number)
  t.after(() => quiet.destroy())
  quiet.send(connectPacket({ clientId: 'bob-quiet', username: 'bob', password: BOB.password, keepalive: 1 }))
  assert.equal(await reasonOf('bob-quiet'), 'keepalive timeout')

  // The socket closed without DISCONNECT.
  const gone = await rawSocket(n.ports.mqtt as number)
  gone.send(connectPacket({ clientId: 'bob-gone', username: 'bob', password: BOB.password }))
  await gone.next((p) => p.cmd === 'connack')
  gone.destroy()
  assert.equal(await reasonOf('bob-gone'), 'connection lost')

  // A packet that is not valid MQTT at that point (a second CONNECT).
  const bad = await rawSocket(n.ports.mqtt as number)
  t.after(() => bad.destroy())
  bad.send(connectPacket({ clientId: 'bob-bad', username: 'bob', password: BOB.password }))
  await bad.next((p) => p.cmd === 'connack')
  bad.send(connectPacket({ clientId: 'bob-bad', username: 'bob', password: BOB.password }))
  assert.match(String(await reasonOf('bob-bad')), /^(malformed packet|error)$/)

  // A revoked device token's connection is cut.
  const tok = await n.identity.createDeviceToken('bob', 'esp32')
  const esp = await connect(n.mqttUrl, { username: 'bob', password: tok.token, clientId: 'bob-esp32' })
  t.after(() => esp.end(true))
  await n.identity.revokeDeviceToken(tok.id)
  assert.equal(await reasonOf('bob-esp32'), 'credential revoked')

  // Whoever is still connected when the node stops.
  const last = await connect(n.mqttUrl, { username: 'bob', password: BOB.password, clientId: 'bob-last' })
  t.after(() => last.end(true))
  await n.close()
  assert.equal(await reasonOf('bob-last'), 'server closing')

  for (const l of lines) for (const s of [ALICE.password, BOB.password, tok.token]) assert.ok(!l.includes(s), `a log line holds a secret: ${l}`)
})
