/**
 * Authentication over real MQTT (mqtt.js, MQTT 3.1.1): passwords, JWTs,
 * device tokens, anonymous access, the client id rule, the failed-login rate
 * limit, secrets kept out of logs, and how passwords are stored.
 */
import assert from 'node:assert/strict'
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { test } from 'node:test'
import { SignJWT } from 'jose'
import { connectedClients } from '../../broker/aedes-internals.js'
import { DUMMY_HASH } from '../../broker/auth.js'
import { resolveConfig } from '../../shared/config.js'
import { IdentityCache } from '../../broker/identity/cache.js'
import { hashParams, hashPassword, verifyPassword } from '../../broker/identity/password.js'
import { IdentityStore } from '../../broker/identity/identity-store.js'
import { DB_FILE } from '../../shared/data-dir.js'
import { createLogger } from '../../shared/log.js'
import { startWarbler, type Warbler } from '../../server/node.js'
import { Database } from '../../shared/sqlite.js'
import { addUser, connackCode, connect, startNode, tempDir, type TestNode, type UserSpec, withStore } from '../helpers/test-node.js'

const ALICE: UserSpec = { name: 'alice', password: 'alice-password-1' }
const BOB: UserSpec = { name: 'bob', password: 'bob-password-22' }
/** Test nodes: no connection rate limit, and failures do not trip the login limit unless a test asks. */
const OPEN = ['--conn-rate', '0', '--login-failures', '1000']

async function node (t: { after: (fn: () => Promise<void>) => void }, args: string[] = [], users: UserSpec[] = [ALICE, BOB]): Promise<TestNode> {
  const n = await startNode([...OPEN, ...args], { users })
  t.after(() => n.close())
  return n
}

/** Poll `fn` every 50 ms until it returns true; fails after timeoutMs. Returns the time it took. */
async function eventually (what: string, fn: () => Promise<boolean>, timeoutMs = 3000): Promise<number> {
  const start = Date.now()
  for (;;) {
    if (await fn()) return Date.now() - start
    if (Date.now() - start > timeoutMs) assert.fail(`${what}: not within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/**
 * Send a hand-made MQTT 3.1.1 CONNECT (mqtt.js refuses to build some of the
 * packets we need, such as an empty client id without clean session) and
 * resolve to the CONNACK return code.
 */
function rawConnect (port: number, p: { clientId: string, clean: boolean, username?: string, password?: string, from?: string }): Promise<number> {
  const str = (s: string): Buffer => {
    const b = Buffer.from(s, 'utf8')
    const len = Buffer.alloc(2)
    len.writeUInt16BE(b.length)
    return Buffer.concat([len, b])
  }
  let flags = p.clean ? 0x02 : 0
  if (p.username !== undefined) flags |= 0x80
  if (p.password !== undefined) flags |= 0x40
  const body = Buffer.concat([
    str('MQTT'), Buffer.from([4, flags, 0, 30]), str(p.clientId),
    ...(p.username !== undefined ? [str(p.username)] : []),
    ...(p.password !== undefined ? [str(p.password)] : [])
  ])
  const len: number[] = []
  let n = body.length
  do {
    let byte = n % 128
    n = Math.floor(n / 128)
    if (n > 0) byte |= 0x80
    len.push(byte)
  } while (n > 0)
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1', ...(p.from !== undefined ? { localAddress: p.from } : {}) },
      () => sock.write(Buffer.concat([Buffer.from([0x10, ...len]), body])))
    let got = Buffer.alloc(0)
    sock.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d])
      if (got.length >= 4) {
        sock.destroy()
        assert.equal(got[0], 0x20, 'a CONNACK')
        resolve(got[3] as number)
      }
    })
    sock.on('error', reject)
    sock.on('close', () => reject(new Error('closed without CONNACK')))
  })
}

test('password: right password connects; wrong password, unknown user, missing password or user name get 4', async (t) => {
  const n = await node(t)
  const before = n.stats.authSuccess.password
  const c = await connect(n.mqttUrl, { username: 'alice', password: ALICE.password, clientId: 'alice' })
  t.after(() => c.endAsync())
  assert.ok(c.connected)
  assert.equal(n.stats.authSuccess.password, before + 1)

  assert.equal(await connackCode(n.mqttUrl, { username: 'alice', password: 'wrong-password', clientId: 'alice' }), 4)
  assert.equal(await connackCode(n.mqttUrl, { username: 'alice', password: BOB.password, clientId: 'alice' }), 4)
  assert.equal(await connackCode(n.mqttUrl, { username: 'mallory', password: ALICE.password, clientId: 'mallory' }), 4)
  assert.equal(await connackCode(n.mqttUrl, { username: 'alice', clientId: 'alice' }), 4, 'user name without password')
  assert.equal(await rawConnect(n.ports.mqtt as number, { clientId: 'alice', clean: true, password: ALICE.password }), 4, 'password without user name')
  assert.equal(await connackCode(n.mqttUrl, { username: 'Alice', password: ALICE.password, clientId: 'Alice' }), 4, 'user names are case-sensitive')
  assert.equal(await connackCode(n.mqttUrl, { username: 'alice', password: ALICE.password + ' ', clientId: 'alice' }), 4)
  assert.equal(n.stats.refusals.login_failed, 7)
  assert.equal(n.stats.authSuccess.password, before + 1)
})

test('anonymous CONNECT is refused with 5 without --dev and accepted with --dev', async (t) => {
  const prod = await node(t)
  assert.equal(await connackCode(prod.mqttUrl, { clientId: 'anything' }), 5)
  assert.equal(prod.stats.refusals.anonymous, 1)
  const dev = await node(t, ['--dev'])
  assert.equal(await connackCode(dev.mqttUrl, { clientId: 'anything' }), 0)
  assert.equal(dev.stats.authSuccess.anonymous, 1)
  // --dev does not weaken password checks.
  assert.equal(await connackCode(dev.mqttUrl, { username: 'alice', password: 'nope-nope', clientId: 'alice' }), 4)
  assert.equal(await connackCode(dev.mqttUrl, { username: 'alice', password: ALICE.password, clientId: 'alice-dev' }), 0)
})

test('JWT: a token from createJwt logs in; expired, wrongly signed, other-user, unexpiring and foreign tokens get 4', async (t) => {
  const n = await node(t)
  const jwt = await n.identity.createJwt('alice', 600)
  assert.equal(await connackCode(n.mqttUrl, { username: 'alice', password: jwt, clientId: 'alice-web' }), 0)
  assert.equal(n.stats.authSuccess.jwt, 1)

  const key = await n.identity.jwtKey()
  const now = Math.floor(Date.now() / 1000)
  const sign = async (claims: { sub?: string, iss?: string, iat?: number, exp?: number }, k: Uint8Array = key, alg = 'HS256'): Promise<string> => {
    const j = new SignJWT({}).setProtectedHeader({ alg, typ: 'JWT' })
    if (claims.sub !== undefined) j.setSubject(claims.sub)
    if (claims.iss !== undefined) j.setIssuer(claims.iss)
    if (claims.iat !== undefined) j.setIssuedAt(claims.iat)
    if (claims.exp !== undefined) j.setExpirationTime(claims.exp)
    return await j.sign(k)
  }
  const good = { sub: 'alice', iss: 'warbler', iat: now, exp: now + 600 }
  // Our own signature with the right key and claims works, so the refusals below are about the one thing changed.
  assert.equal(await connackCode(n.mqttUrl, { username: 'alice', password: await sign(good), clientId: 'alice' }), 0)

  const refused: Array<[string, string, string]> = [
    ['expired', 'alice', await sign({ ...good, iat: now - 120, exp: now - 60 })],
    ['wrong key', 'alice', await sign(good, new Uint8Array(32).fill(7))],
    ['token of alice presented as bob', 'bob', jwt],
    ['no expiry', 'alice', await sign({ sub: 'alice', iss: 'warbler', iat: now })],
    ['other issuer', 'alice', await sign({ ...good, iss: 'someone-else' })],
    ['no subject', 'alice', await sign({ iss: 'warbler', iat: now, exp: now + 600 })],
    ['other algorithm', 'alice', await sign(good, key, 'HS512')],
    ['tampered payload', 'bob', (() => { const [h, , s] = jwt.split('.'); return `${h}.${Buffer.from(JSON.stringify({ sub: 'bob', iss: 'warbler', exp: now + 600 })).toString('base64url')}.${s}` })()]
  ]
  for (const [why, username, password] of refused) {
    assert.equal(await connackCode(n.mqttUrl, { username, password, clientId: username }), 4, why)
  }
  assert.equal(n.stats.authSuccess.jwt, 2)
})

test('JWT: a token made with ttl 1 stops working once it expires', async (t) => {
  const n = await node(t)
  const jwt = await n.identity.createJwt('alice', 1)
  // exp is a whole second at most 1 s away; wait for it to pass, then try.
  const { exp } = JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString()) as { exp: number }
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, exp * 1000 - Date.now()) + 50))
  assert.equal(await connackCode(n.mqttUrl, { username: 'alice', password: jwt, clientId: 'alice' }), 4)
})

test('JWT: removing the user refuses its tokens within ~2 s, and re-creating the name does not revive them', async (t) => {
  const n = await node(t)
  const jwt = await n.identity.createJwt('bob', 3600)
  assert.equal(await connackCode(n.mqttUrl, { username: 'bob', password: jwt, clientId: 'bob' }), 0)
  await withStore(n.dataDir, (s) => s.removeUser('bob')) // another connection, like the CLI
  const took = await eventually('token of a removed user refused',
    async () => await connackCode(n.mqttUrl, { username: 'bob', password: jwt, clientId: 'bob' }) === 4)
  assert.ok(took < 2500, `took ${took} ms`)

  // A new user with the old name is another person: the old token is not theirs.
  await new Promise((resolve) => setTimeout(resolve, 1000 - (Date.now() % 1000) + 10)) // a later second than the token's iat
  await withStore(n.dataDir, (s) => s.addUser('bob', 'new-bob-password'))
  await eventually('new bob can log in',
    async () => await connackCode(n.mqttUrl, { username: 'bob', password: 'new-bob-password', clientId: 'bob' }) === 0)
  assert.equal(await connackCode(n.mqttUrl, { username: 'bob', password: jwt, clientId: 'bob' }), 4)
  const fresh = await n.identity.createJwt('bob', 60)
  assert.equal(await connackCode(n.mqttUrl, { username: 'bob', password: fresh, clientId: 'bob' }), 0)
})

test('device tokens: valid logs in; wrong secret, another user\'s token and malformed tokens get 4', async (t) => {
  const n = await node(t)
  const a = await n.identity.createDeviceToken('alice', 'sensor')
  const b = await n.identity.createDeviceToken('bob', 'phone')
  // Created through the node's own store connection: the cache must still see them.
  await eventually('device token usable',
    async () => await connackCode(n.mqttUrl, { username: 'alice', password: a.token, clientId: 'alice-sensor' }) === 0)
  assert.ok(n.stats.authSuccess.device_token >= 1)

  const [, id, secret] = a.token.split('.') as [string, string, string]
  const otherSecret = secret.slice(0, -1) + (secret.endsWith('A') ? 'B' : 'A')
  const refused: Array<[string, string, string]> = [
    ['wrong secret, same id', 'alice', `wbd.${id}.${otherSecret}`],
    ['bob\'s token presented as alice', 'alice', b.token],
    ['alice\'s token presented as bob', 'bob', a.token],
    ['unknown id', 'alice', `wbd.0123456789abcdef.${secret}`],
    ['truncated', 'alice', a.token.slice(0, 30)],
    ['id only', 'alice', `wbd.${id}`]
  ]
  for (const [why, username, password] of refused) {
    assert.equal(await connackCode(n.mqttUrl, { username, password, clientId: username }), 4, why)
  }
})

test('device tokens: revoking one while the node runs refuses new connects within ~2 s (from the CLI\'s connection or the node\'s own)', async (t) => {
  const n = await node(t)
  const viaOther = await withStore(n.dataDir, (s) => s.createDeviceToken('alice', 'gateway'))
  const viaOwn = await withStore(n.dataDir, (s) => s.createDeviceToken('alice', 'esp32'))
  const keep = await withStore(n.dataDir, (s) => s.createDeviceToken('alice', 'phone'))
  const login = (token: string): Promise<number> => connackCode(n.mqttUrl, { username: 'alice', password: token, clientId: 'alice-dev' })
  await eventually('new tokens usable', async () => await login(viaOther.token) === 0)

  await withStore(n.dataDir, (s) => s.revokeDeviceToken(viaOther.id))
  let took = await eventually('token revoked from another connection refused', async () => await login(viaOther.token) === 4)
  assert.ok(took < 2500, `took ${took} ms`)

  assert.equal(await login(viaOwn.token), 0)
  await n.identity.revokeDeviceToken(viaOwn.id) // e.g. an admin API inside the node
  took = await eventually('token revoked through the node\'s own store refused', async () => await login(viaOwn.token) === 4)
  assert.ok(took < 2500, `took ${took} ms`)

  assert.equal(await login(keep.token), 0, 'other tokens of the user keep working')
  await assert.rejects(n.identity.revokeDeviceToken(viaOwn.id), /already revoked/)
})

test('client id: a user must use its name or name-suffix (else 2); an empty id with clean session gets an assigned id', async (t) => {
  const n = await node(t)
  const pw = { username: 'alice', password: ALICE.password }
  for (const id of ['alice', 'alice-phone', 'alice-a.b_c:1']) assert.equal(await connackCode(n.mqttUrl, { ...pw, clientId: id }), 0, id)
  for (const id of ['bob', 'alicex', 'alice-', 'xalice', 'alice/x', 'alice-ph one', 'ALICE']) {
    assert.equal(await connackCode(n.mqttUrl, { ...pw, clientId: id }), 2, id)
  }
  assert.equal(n.stats.refusals.client_id_rejected, 7)
  assert.equal(n.stats.refusals.login_failed, 0, 'a refused client id is not a failed login')

  // [MQTT-3.1.3-6]: zero-length id with CleanSession=1 gets a server-assigned id.
  const c = await connect(n.mqttUrl, { ...pw, clientId: '', clean: true })
  t.after(() => c.endAsync())
  assert.ok(c.connected)
  const ids = Object.keys(connectedClients(n.broker))
  assert.equal(ids.length, 1)
  assert.ok((ids[0] as string).length > 0)
  assert.equal(await rawConnect(n.ports.mqtt as number, { clientId: '', clean: true, ...pw }), 0)
  // [MQTT-3.1.3-8]: zero-length id with CleanSession=0 is refused with 2.
  assert.equal(await rawConnect(n.ports.mqtt as number, { clientId: '', clean: false, ...pw }), 2)
  const dev = await node(t, ['--dev'])
  assert.equal(await rawConnect(dev.ports.mqtt as number, { clientId: '', clean: false }), 2)
  assert.equal(await rawConnect(dev.ports.mqtt as number, { clientId: '', clean: true }), 0)
})

test('failed-login limit: after --login-failures N failures a minute even the right password gets 4', async (t) => {
  const n = await startNode(['--conn-rate', '0', '--login-failures', '3'], { users: [ALICE] })
  t.after(() => n.close())
  const right = { username: 'alice', password: ALICE.password, clientId: 'alice' }
  assert.equal(await connackCode(n.mqttUrl, right), 0, 'successes are not counted')
  for (let i = 0; i < 3; i++) assert.equal(await connackCode(n.mqttUrl, { ...right, password: `wrong-${i}-password` }), 4)
  assert.equal(n.stats.refusals.login_failed, 3)
  assert.equal(n.stats.refusals.login_rate_limited, 0)
  assert.equal(await connackCode(n.mqttUrl, right), 4)
  assert.equal(await connackCode(n.mqttUrl, { ...right, password: await n.identity.createJwt('alice', 60) }), 4, 'tokens too')
  assert.equal(n.stats.refusals.login_rate_limited, 2)
  assert.equal(n.stats.refusals.login_failed, 3)
  assert.equal(n.stats.authSuccess.password, 1)
  // The limit is per source address: another address still gets in.
  assert.equal(await rawConnect(n.ports.mqtt as number, { clientId: 'alice', clean: true, username: 'alice', password: ALICE.password, from: '127.0.0.2' }), 0)
  assert.equal(await rawConnect(n.ports.mqtt as number, { clientId: 'alice', clean: true, username: 'alice', password: ALICE.password }), 4)
})

test('failed-login limit holds for attempts made in parallel: at most N passwords are checked', async (t) => {
  const n = await startNode(['--conn-rate', '0', '--login-failures', '3'], { users: [ALICE] })
  t.after(() => n.close())
  const codes = await Promise.all(Array.from({ length: 12 }, async (_, i) =>
    await connackCode(n.mqttUrl, { username: 'alice', password: `guess-number-${i}`, clientId: `alice-${i}` })))
  assert.deepEqual(codes, Array(12).fill(4))
  assert.equal(n.stats.refusals.login_failed, 3)
  assert.equal(n.stats.refusals.login_rate_limited, 9)
})

test('failed-login limit does not refuse a burst of correct logins from one address (devices behind one NAT)', async (t) => {
  const n = await startNode(['--conn-rate', '0', '--login-failures', '3'], { users: [ALICE] })
  t.after(() => n.close())
  const codes = await Promise.all(Array.from({ length: 12 }, async (_, i) =>
    await connackCode(n.mqttUrl, { username: 'alice', password: ALICE.password, clientId: `alice-${i}` })))
  assert.deepEqual(codes, Array(12).fill(0))
  assert.equal(n.stats.refusals.login_rate_limited, 0)
})

/** A node in this process whose log lines (debug level) are kept. */
async function loggedNode (t: { after: (fn: () => Promise<void>) => void }, users: UserSpec[]): Promise<{ node: Warbler, url: string, dataDir: string, lines: string[] }> {
  const dataDir = tempDir()
  for (const u of users) await addUser(dataDir, u)
  const cfg = resolveConfig([...OPEN, '--mqtt-port', '0', '--ws-port', '-1', '--http-port', '-1', '--data-dir', dataDir, '--sys-interval', '0', '--log-level', 'debug'], {})
  const lines: string[] = []
  const node = await startWarbler(cfg, { log: createLogger('debug', (l) => { lines.push(l) }) })
  t.after(async () => { await node.close(); rmSync(dataDir, { recursive: true, force: true }) })
  return { node, url: `mqtt://127.0.0.1:${node.ports.mqtt ?? 0}`, dataDir, lines }
}

test('secrets never appear in the log: passwords, JWTs and device tokens, after successful and failed logins', async (t) => {
  const { node: n, url, lines } = await loggedNode(t, [ALICE, BOB])
  const jwt = await n.identity.createJwt('alice', 600)
  const device = await n.identity.createDeviceToken('alice', 'sensor')
  await eventually('device token usable', async () =>
    await connackCode(url, { username: 'alice', password: device.token, clientId: 'alice-s' }) === 0)
  const [, id] = device.token.split('.') as [string, string]
  const wrongDevice = `wbd.${id}.${'x'.repeat(43)}`
  const attempts: Array<[string, string, string, number]> = [
    ['alice', ALICE.password, 'alice', 0],
    ['alice', jwt, 'alice-web', 0],
    ['alice', device.token, 'alice-s', 0],
    ['alice', 'a-wrong-password', 'alice', 4],
    ['bob', jwt, 'bob', 4],
    ['bob', device.token, 'bob', 4],
    ['alice', wrongDevice, 'alice', 4],
    ['nobody', 'nobodys-password', 'nobody', 4],
    ['alice', ALICE.password, 'bob', 2],
    // Secrets pasted into the wrong field are still secrets.
    [ALICE.password, ALICE.password, 'x', 4],
    [jwt, jwt, 'x', 4]
  ]
  for (const [username, password, clientId, code] of attempts) {
    assert.equal(await connackCode(url, { username, password, clientId }), code, `${username.slice(0, 12)}/${clientId}`)
  }
  assert.ok(lines.some((l) => l.includes('login failed')), 'failed logins are logged')
  const secrets = [ALICE.password, BOB.password, jwt, device.token, wrongDevice, 'a-wrong-password', 'nobodys-password',
    device.token.split('.')[2] as string, jwt.split('.')[2] as string]
  for (const line of lines) {
    for (const s of secrets) assert.ok(!line.includes(s), `log line holds a secret: ${line}`)
  }
})

test('passwords are stored as salted scrypt hashes, never in plain text, and the database is private', async (t) => {
  const dataDir = tempDir()
  t.after(() => rmSync(dataDir, { recursive: true, force: true }))
  const same = 'the-same-password-for-both'
  await addUser(dataDir, { name: 'carol', password: same })
  await addUser(dataDir, { name: 'dave', password: same, admin: true })
  await withStore(dataDir, (s) => s.setPassword('dave', 'daves-new-password'))

  const db = await Database.open(path.join(dataDir, DB_FILE), { readonly: true })
  const rows = await db.all<{ name: string, password_hash: string }>('SELECT name, password_hash FROM users ORDER BY name')
  await db.close()
  assert.equal(rows.length, 2)
  for (const r of rows) {
    assert.match(r.password_hash, /^scrypt\$16384\$8\$1\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=$/)
  }
  assert.ok(await verifyPassword(same, rows[0]?.password_hash as string))
  assert.ok(await verifyPassword('daves-new-password', rows[1]?.password_hash as string))
  assert.ok(!await verifyPassword(same, rows[1]?.password_hash as string))
  const carol2 = await hashPassword(same)
  assert.notEqual(carol2, rows[0]?.password_hash, 'salted: the same password hashes differently')

  for (const f of readdirSync(dataDir)) {
    const bytes = readFileSync(path.join(dataDir, f))
    for (const pw of [same, 'daves-new-password']) {
      assert.equal(bytes.indexOf(Buffer.from(pw)), -1, `${pw} in ${f}`)
      assert.equal(bytes.indexOf(Buffer.from(pw, 'utf16le')), -1, `${pw} (UTF-16) in ${f}`)
    }
  }
  // The file holds the token signing key and the hashes: only its owner may read it.
  assert.equal(statSync(path.join(dataDir, DB_FILE)).mode & 0o077, 0)
  assert.equal(statSync(dataDir).mode & 0o077, 0)
})

test('unknown users cost a full scrypt check: the stand-in hash has the same parameters as real ones', async () => {
  const real = hashParams(await hashPassword('some-password'))
  assert.ok(real !== null)
  assert.deepEqual(hashParams(DUMMY_HASH), real)
  assert.equal(await verifyPassword('anything', DUMMY_HASH), false)
  // Malformed hashes are recognised as such (and so never silently skip the work for a real user).
  for (const bad of ['', 'scrypt$1$2$3', 'bcrypt$16384$8$1$AAAA$BBBB', 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA']) {
    assert.equal(hashParams(bad), null, bad)
  }
})

test('passwords that look like tokens are refused when set (they could never log in)', async (t) => {
  const dataDir = tempDir()
  t.after(() => rmSync(dataDir, { recursive: true, force: true }))
  await withStore(dataDir, async (s) => {
    await assert.rejects(s.addUser('erin', 'eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl'), /looks like a token/)
    await assert.rejects(s.addUser('erin', `wbd.0123456789abcdef.${'a'.repeat(43)}`), /looks like a token/)
    await assert.rejects(s.addUser('erin', 'short'), /too short/)
    await s.addUser('erin', 'eyJ-but-no-dots-so-fine')
    await assert.rejects(s.setPassword('erin', 'eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl'), /looks like a token/)
  })
})

test('the identity cache reloads when users or tokens change (any connection), not when other tables in the file do', async (t) => {
  const dataDir = tempDir()
  t.after(() => rmSync(dataDir, { recursive: true, force: true }))
  const own = await IdentityStore.open(dataDir)
  const cache = new IdentityCache(own, 60_000) // no polling in this test: every reload below is asked for
  t.after(async () => { cache.stop(); await own.close() })
  await cache.start()
  const other = await Database.open(path.join(dataDir, DB_FILE)) // e.g. the bridge archiving messages
  t.after(() => other.close())

  const users = cache.users
  await other.exec('CREATE TABLE archive_like (x INTEGER); INSERT INTO archive_like VALUES (1), (2)')
  await cache.refresh()
  assert.equal(cache.users, users, 'no reload for unrelated writes')

  await withStore(dataDir, (s) => s.addUser('frank', 'franks-password')) // the CLI
  await cache.refresh()
  assert.ok(cache.users.has('frank'))

  // A write through the node's own store is seen at once, without waiting for a poll.
  const { id } = await own.createDeviceToken('frank', 'watch')
  await eventually('own write seen', () => Promise.resolve(cache.tokens.has(id)), 500)
  await own.revokeDeviceToken(id)
  await eventually('own revocation seen', () => Promise.resolve(cache.tokens.get(id)?.revoked === true), 500)
  await other.run('DELETE FROM users WHERE name = ?', ['frank']) // raw SQL from another connection counts too
  await cache.refresh()
  assert.ok(!cache.users.has('frank'))
  assert.ok(!cache.tokens.has(id), 'its tokens went with it')
})

test('a client id naming a built-in property (constructor, __proto__, toString) is refused with 2, and the node keeps serving', async (t) => {
  const n = await startNode(['--dev', ...OPEN], { users: [{ name: 'constructor', password: 'constructor-pw-1' }] })
  t.after(() => n.close())
  for (const clientId of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
    assert.equal(await connackCode(n.mqttUrl, { clientId }), 2, clientId)
  }
  // A user of that name too: its plain name is no usable client id, a suffixed one is.
  assert.equal(await connackCode(n.mqttUrl, { clientId: 'constructor', username: 'constructor', password: 'constructor-pw-1' }), 2)
  assert.equal(await connackCode(n.mqttUrl, { clientId: 'constructor-phone', username: 'constructor', password: 'constructor-pw-1' }), 0)
})
