/**
 * The `warbler user` and `warbler token` commands, run as real processes
 * (`node dist/cli/warbler.js`) against a temp data dir, also while a node
 * runs on that data dir.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { verifyPassword } from '../../broker/identity/password.js'
import { CLI, connackCode, spawnNode, tempDir, withStore } from '../helpers/test-node.js'

interface Run { code: number | null, stdout: string, stderr: string }

/** Run the CLI to completion, feeding `input` on stdin. */
function cli (args: string[], input = ''): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(input)
  })
}

/** A temp data dir, removed after the test, and a CLI runner bound to it. */
function dataDir (t: { after: (fn: () => void) => void }): { dir: string, run: (args: string[], input?: string) => Promise<Run> } {
  const dir = tempDir('warbler-cli-')
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return { dir, run: (args, input) => cli([...args, '--data-dir', dir], input) }
}

function ok (r: Run, what: string): Run {
  assert.equal(r.code, 0, `${what}: exit ${String(r.code)}, stderr: ${r.stderr}`)
  return r
}

async function hashOf (dir: string, name: string): Promise<string | undefined> {
  return await withStore(dir, async (s) => (await s.listUsers()).find((u) => u.name === name)?.passwordHash)
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

test('user add, list, passwd, admin and remove', async (t) => {
  const { dir, run } = dataDir(t)
  const added = ok(await run(['user', 'add', 'alice']), 'add alice')
  assert.match(added.stdout, /^created user alice\npassword: (\S+)\n$/)
  const generated = /password: (\S+)/.exec(added.stdout)?.[1] as string
  assert.ok(generated.length >= 16)
  assert.equal(added.stdout.split(generated).length - 1, 1, 'the generated password is printed once')
  assert.equal(added.stderr, '')
  assert.ok(await verifyPassword(generated, await hashOf(dir, 'alice') as string))

  const bob = ok(await run(['user', 'add', 'bob', '--admin', '--password-stdin'], 'bobs-secret-pw\n'), 'add bob from stdin')
  assert.equal(bob.stdout, 'created user bob (admin)\n', 'a password read from stdin is not echoed')
  assert.ok(await verifyPassword('bobs-secret-pw', await hashOf(dir, 'bob') as string))
  // Only the first line is the password; CRLF from Windows clients is fine.
  ok(await run(['user', 'add', 'carol', '--password-stdin'], 'carols-password\r\nsecond line\n'), 'add carol')
  assert.ok(await verifyPassword('carols-password', await hashOf(dir, 'carol') as string))

  const list = ok(await run(['user', 'list']), 'list')
  assert.deepEqual(list.stdout.trim().split('\n').map((l) => l.split('\t').slice(0, 2)), [['alice', 'user'], ['bob', 'admin'], ['carol', 'user']])
  for (const line of list.stdout.trim().split('\n')) assert.ok(!Number.isNaN(Date.parse(line.split('\t')[2] as string)))
  assert.ok(!list.stdout.includes('scrypt'), 'list shows no hashes')

  const pw = ok(await run(['user', 'passwd', 'alice', '--password-stdin'], 'alices-new-password\n'), 'passwd')
  assert.equal(pw.stdout, 'password changed for alice\n')
  const h = await hashOf(dir, 'alice') as string
  assert.ok(await verifyPassword('alices-new-password', h))
  assert.ok(!await verifyPassword(generated, h))
  const gen = ok(await run(['user', 'passwd', 'carol']), 'passwd generated')
  const carolPw = /^password: (\S+)$/m.exec(gen.stdout)?.[1] as string
  assert.ok(await verifyPassword(carolPw, await hashOf(dir, 'carol') as string))

  assert.equal(ok(await run(['user', 'admin', 'alice', '--on']), 'admin on').stdout, 'alice is now an admin\n')
  assert.equal(ok(await run(['user', 'admin', 'bob', '--off']), 'admin off').stdout, 'bob is no longer an admin\n')
  assert.deepEqual(await withStore(dir, async (s) => (await s.listUsers()).map((u) => [u.name, u.admin])), [['alice', true], ['bob', false], ['carol', false]])

  ok(await run(['user', 'remove', 'carol']), 'remove')
  assert.deepEqual(ok(await run(['user', 'list']), 'list').stdout.trim().split('\n').map((l) => l.split('\t')[0]), ['alice', 'bob'])

  // Errors name the problem, exit non-zero, and change nothing.
  const errors: Array<[string[], string, number, RegExp]> = [
    [['user', 'remove', 'carol'], '', 1, /no user carol/],
    [['user', 'passwd', 'nobody', '--password-stdin'], 'whatever-password\n', 1, /no user nobody/],
    [['user', 'admin', 'nobody', '--on'], '', 1, /no user nobody/],
    [['user', 'admin', 'alice'], '', 2, /exactly one of --on and --off/],
    [['user', 'admin', 'alice', '--on', '--off'], '', 2, /exactly one of --on and --off/],
    [['user', 'passwd', 'alice', '--password-stdin'], 'short\n', 1, /too short/],
    [['user', 'passwd', 'alice', '--password-stdin'], '', 1, /too short/],
    [['user', 'add', 'dave', '--password-stdin'], 'eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl\n', 1, /looks like a token/],
    [['user', 'add'], '', 2, /needs a user name/],
    [['user', 'add', 'dave', 'extra'], '', 2, /unexpected argument "extra"/],
    [['user', 'list', 'extra'], '', 2, /unexpected argument "extra"/]
  ]
  const before = await withStore(dir, (s) => s.listUsers())
  const runs = await Promise.all(errors.map(async ([args, input]) => await run(args, input)))
  runs.forEach((r, i) => {
    const [args, , code, message] = errors[i] as [string[], string, number, RegExp]
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`)
    assert.match(r.stderr, message, args.join(' '))
    assert.match(r.stderr, /^warbler: /)
  })
  assert.deepEqual(await withStore(dir, (s) => s.listUsers()), before)
})

test('user add refuses a duplicate or an invalid name with a clear error and changes nothing', async (t) => {
  const { dir, run } = dataDir(t)
  ok(await run(['user', 'add', 'alice', '--password-stdin'], 'first-password\n'), 'add')
  const before = await hashOf(dir, 'alice')
  const dup = await run(['user', 'add', 'alice', '--admin'])
  assert.notEqual(dup.code, 0)
  assert.match(dup.stderr, /user alice already exists/)
  assert.ok(!dup.stdout.includes('password:'), 'no password printed for a user that was not created')
  assert.equal(await hashOf(dir, 'alice'), before, 'the existing password is untouched')
  assert.deepEqual(await withStore(dir, async (s) => (await s.listUsers()).map((u) => [u.name, u.admin])), [['alice', false]])

  const bads = ['Alice', 'bad-name', '1abc', 'a'.repeat(33), 'bad/name', 'bad name', '_x', 'ünï']
  const runs = await Promise.all(bads.map(async (bad) => await run(['user', 'add', bad])))
  for (const [i, bad] of bads.entries()) {
    const r = runs[i] as Run
    assert.notEqual(r.code, 0, bad)
    assert.ok(r.stderr.includes(`invalid user name ${JSON.stringify(bad)}`), `${bad}: ${r.stderr}`)
    assert.match(r.stderr, /a-z, 0-9, _ and \./)
    assert.equal(r.stdout, '')
  }
  assert.equal((await withStore(dir, (s) => s.listUsers())).length, 1)
})

test('token create, list and revoke work against a running node; users added, changed and removed by the CLI apply within ~2 s', async (t) => {
  const { dir, run } = dataDir(t)
  ok(await run(['user', 'add', 'alice', '--password-stdin'], 'alice-password-1\n'), 'add alice')
  ok(await run(['user', 'add', 'bob', '--password-stdin'], 'bob-password-22\n'), 'add bob')
  const node = await spawnNode(['--conn-rate', '0', '--login-failures', '1000', '--log-level', 'debug'], { dataDir: dir })
  t.after(() => node.stop('SIGKILL'))
  const url = `mqtt://127.0.0.1:${node.ports.mqtt}`
  const login = (username: string, password: string, clientId = username): Promise<number> => connackCode(url, { username, password, clientId })
  const secrets: string[] = ['alice-password-1', 'bob-password-22']

  // A JWT from the CLI logs in.
  const jwt = ok(await run(['token', 'create', 'alice', '--ttl', '600']), 'token create').stdout.trim()
  secrets.push(jwt)
  assert.match(jwt, /^eyJ[\w-]+\.[\w-]+\.[\w-]+$/)
  const { exp, iat } = JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString()) as { exp: number, iat: number }
  assert.equal(exp - iat, 600)
  assert.equal(await login('alice', jwt, 'alice-web'), 0)
  assert.equal(await login('bob', jwt), 4, 'alice\'s token is not bob\'s')

  // A device token from the CLI logs in once the node has seen it.
  const dev = ok(await run(['token', 'create', 'alice', '--device', 'kitchen sensor']), 'token create --device').stdout
  const m = /^id: ([0-9a-f]{16})\ntoken: (wbd\.\1\.\S+)\n$/.exec(dev)
  assert.ok(m !== null, dev)
  const [, id, token] = m as unknown as [string, string, string]
  secrets.push(token)
  await eventually('device token usable', async () => await login('alice', token, 'alice-kitchen') === 0)
  const other = /token: (\S+)/.exec(ok(await run(['token', 'create', 'bob', '--device', 'phone']), 'bob token').stdout)?.[1] as string
  secrets.push(other)

  const list = ok(await run(['token', 'list']), 'token list').stdout.trim().split('\n').map((l) => l.split('\t'))
  assert.equal(list.length, 2)
  assert.deepEqual(list[0]?.slice(0, 3), [id, 'alice', 'kitchen sensor'])
  assert.equal(list[0]?.[4], '-')
  assert.equal(list[1]?.[1], 'bob')
  assert.ok(!list.flat().some((f) => f.includes(token.split('.')[2] as string)), 'list never shows secrets')
  assert.equal(ok(await run(['token', 'list', 'bob']), 'token list bob').stdout.trim().split('\n').length, 1)

  // Changes while the node runs, no restart: a revoked token, a new user (one poll to wait for both) ...
  assert.equal(ok(await run(['token', 'revoke', id]), 'revoke').stdout, `revoked ${id}\n`)
  ok(await run(['user', 'add', 'carol', '--password-stdin'], 'carol-password-3\n'), 'add carol')
  secrets.push('carol-password-3')
  let took = await eventually('revoked token refused', async () => await login('alice', token, 'alice-kitchen') === 4)
  assert.ok(took < 2500, `took ${took} ms`)
  took = await eventually('new user logs in', async () => await login('carol', 'carol-password-3') === 0)
  assert.ok(took < 2500, `took ${took} ms`)
  assert.equal(await login('bob', other), 0, 'other tokens still work')
  assert.notEqual(ok(await run(['token', 'list', 'alice']), 'list').stdout.split('\t')[4]?.trim(), '-', 'listed as revoked')

  const errors: Array<[string[], number, RegExp]> = [
    [['token', 'revoke', '0123456789abcdef'], 1, /no device token "0123456789abcdef"/],
    [['token', 'revoke', id], 1, /already revoked/],
    [['token', 'create', 'nobody'], 1, /no user nobody/],
    [['token', 'create', 'nobody', '--device', 'x'], 1, /no user nobody/],
    [['token', 'list', 'nobody'], 1, /no user nobody/],
    [['token', 'create', 'alice', '--ttl', 'soon'], 2, /--ttl must be a whole number of seconds/],
    [['token', 'create', 'alice', '--ttl', '0'], 1, /1 second to 366 days/],
    [['token', 'create', 'alice', '--device', 'x', '--ttl', '60'], 2, /--ttl does not apply to device tokens/],
    [['token', 'create', 'alice', '--device', ''], 1, /token name must be 1-64 characters/],
    [['token', 'revoke'], 2, /needs a token id/]
  ]
  const runs = await Promise.all(errors.map(async ([args]) => await run(args)))
  runs.forEach((r, i) => {
    const [args, code, message] = errors[i] as [string[], number, RegExp]
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`)
    assert.match(r.stderr, message, args.join(' '))
  })

  // ... then a changed password and a removed user.
  ok(await run(['user', 'passwd', 'carol', '--password-stdin'], 'carol-password-4\n'), 'passwd carol')
  secrets.push('carol-password-4')
  ok(await run(['user', 'remove', 'bob']), 'remove bob')
  took = await eventually('removed user refused', async () => await login('bob', 'bob-password-22') === 4)
  assert.ok(took < 2500, `took ${took} ms`)
  assert.equal(await login('bob', other), 4, 'its device tokens went with it')
  assert.equal(await login('carol', 'carol-password-4'), 0, 'the new password works')
  assert.equal(await login('carol', 'carol-password-3'), 4, 'the old password no longer works')

  assert.equal(await node.stop('SIGTERM'), 0)
  const log = node.stderr()
  assert.match(log, /login failed/, 'the log was captured')
  for (const s of secrets) assert.ok(!log.includes(s), `the node's log holds a secret: ${s.slice(0, 12)}...`)
  assert.ok(!node.stdout().includes('password'), 'stdout has only the ready line')
})

test('every command\'s --help exits 0 with usage', async () => {
  const cases = [
    ['--help'], ['-h'], ['start', '--help'],
    ['user', '--help'], ['user', 'add', '--help'], ['user', 'list', '-h'], ['user', 'remove', '--help'],
    ['user', 'passwd', '--help'], ['user', 'admin', '--help'],
    ['token', '--help'], ['token', 'create', '--help'], ['token', 'list', '--help'], ['token', 'revoke', '-h']
  ]
  const runs = await Promise.all(cases.map((c) => cli(c)))
  runs.forEach((r, i) => {
    const what = (cases[i] as string[]).join(' ')
    assert.equal(r.code, 0, `${what}: ${r.stderr}`)
    assert.match(r.stdout, /Usage/, what)
    assert.equal(r.stderr, '', what)
  })
  assert.match(runs[2]?.stdout ?? '', /--mqtt-port/)
  assert.match(runs[3]?.stdout ?? '', /warbler user add NAME/)
  assert.match(runs[9]?.stdout ?? '', /warbler token create USER/)
})

test('unknown commands and options exit 2 with a message, and touch no data dir', async (t) => {
  const dir = path.join(tempDir('warbler-cli-'), 'not-created')
  t.after(() => rmSync(path.dirname(dir), { recursive: true, force: true }))
  const d = ['--data-dir', dir]
  const cases: Array<[string[], RegExp]> = [
    [['frobnicate', ...d], /unknown command "frobnicate"/],
    [['user', 'frobnicate', ...d], /unknown user command "frobnicate"/],
    [['token', 'frobnicate', ...d], /unknown token command "frobnicate"/],
    [['user', 'list', '--bogus', ...d], /unknown option --bogus/],
    [['user', 'add', 'x', '-p', ...d], /unknown option -p/],
    [['token', 'create', 'alice', '--bogus=1', ...d], /unknown option --bogus/],
    [['token', 'list', '--ttl', '5', ...d], /--ttl does not apply to token list/],
    [['user', 'list', '--admin', ...d], /--admin does not apply to user list/],
    [['user', 'add', 'x', '--on', ...d], /--on does not apply to user add/],
    [['user', 'add', 'x', '--data-dir'], /--data-dir needs a value/],
    [['start', '--bogus', ...d], /--bogus/],
    [['user'], /Usage/],
    [['token'], /Usage/],
    [[], /Usage/]
  ]
  const runs = await Promise.all(cases.map(async ([args]) => await cli(args)))
  runs.forEach((r, i) => {
    const [args, message] = cases[i] as [string[], RegExp]
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
    assert.match(r.stdout + r.stderr, message, args.join(' '))
  })
  assert.ok(!existsSync(dir), 'a refused command line creates nothing')
  // Commands that read an existing database say so when there is none (a mistyped --data-dir).
  const reads = [['user', 'list'], ['token', 'list'], ['user', 'remove', 'x'], ['token', 'create', 'x']]
  for (const r of await Promise.all(reads.map(async (args) => await cli([...args, ...d])))) {
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stderr, /no Warbler database in .*not-created/)
  }
  assert.ok(!existsSync(dir))
})
