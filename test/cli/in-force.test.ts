/**
 * A change made with the CLI (`node dist/cli/warbler.js user|token ...`) is in
 * force for the very next CONNECT once the command returned: on a node in
 * this process, and on every worker of a `--workers 2 --redis` node run as a
 * real `warbler start`. Additions log in at once (and so never count towards
 * the address's login lockout); revocations and removals are refused at once.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import { test } from 'node:test'
import type { IConnackPacket } from 'mqtt-packet'
import { connectPacket, rawSocket } from '../helpers/raw.js'
import { startRedis } from '../helpers/redis.js'
import { CLI, spawnNode, startNode, tempDir } from '../helpers/test-node.js'

interface Run { code: number | null, stdout: string, stderr: string }

function cli (dir: string, args: string[], input = ''): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args, '--data-dir', dir], { stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(input)
  })
}

async function ok (dir: string, args: string[], input = ''): Promise<string> {
  const r = await cli(dir, args, input)
  assert.equal(r.code, 0, `${args.join(' ')}: exit ${String(r.code)}, stderr: ${r.stderr}`)
  return r.stdout
}

/** CONNACK return code of one CONNECT from a chosen loopback address (each address has its own login lockout). */
async function login (port: number, from: string, username: string, password: string, clientId = username): Promise<number> {
  const c = await rawSocket(port, { localAddress: from })
  try {
    c.send(connectPacket({ clientId, username, password }))
    return (await c.next((p) => p.cmd === 'connack') as IConnackPacket).returnCode ?? -1
  } finally {
    c.destroy()
  }
}

/**
 * Rounds of: add a user, log in at once; create a device token, log in with it
 * at once; revoke it, refused at once; change the password, the new one works
 * and the old one not; remove the user, refused at once. Every login that
 * must succeed comes from one address per round, with --login-failures 1 on
 * the node: a single refusal there would lock the address out and fail the
 * next step. `tries` logins per step (on a cluster they go to the workers in turn).
 */
async function rounds (dir: string, port: number, n: number, tries: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const user = `in_force_${i}`
    const good = `127.0.1.${i + 1}`
    let bad = 0
    const badAddress = (): string => `127.0.2.${i * 10 + ++bad}`
    const expect = async (from: string | (() => string), password: string, code: number, what: string, clientId = user): Promise<void> => {
      for (let k = 0; k < tries; k++) {
        assert.equal(await login(port, typeof from === 'string' ? from : from(), user, password, clientId), code, `round ${i}, ${what}, try ${k}`)
      }
    }
    await ok(dir, ['user', 'add', user, '--password-stdin'], `first-password-${i}\n`)
    await expect(good, `first-password-${i}`, 0, 'just added')

    const out = await ok(dir, ['token', 'create', user, '--device', 'sensor'])
    const [, id, token] = /^id: (\S+)\ntoken: (\S+)\n$/.exec(out) as unknown as [string, string, string]
    await expect(good, token, 0, 'device token just created', `${user}-sensor`)
    const jwt = (await ok(dir, ['token', 'create', user, '--ttl', '600'])).trim()
    await expect(good, jwt, 0, 'access token just created', `${user}-web`)

    await ok(dir, ['token', 'revoke', id])
    await expect(badAddress, token, 4, 'device token just revoked', `${user}-sensor`)

    await ok(dir, ['user', 'passwd', user, '--password-stdin'], `second-password-${i}\n`)
    await expect(good, `second-password-${i}`, 0, 'new password')
    await expect(badAddress, `first-password-${i}`, 4, 'old password')

    await ok(dir, ['user', 'remove', user])
    await expect(badAddress, `second-password-${i}`, 4, 'user just removed')
    await expect(badAddress, jwt, 4, 'access token of a user just removed', `${user}-web`)
  }
}

test('a node in this process: users and tokens the CLI adds log in at once, and ones it revokes or removes are refused at once', async (t) => {
  const node = await startNode(['--login-failures', '1', '--conn-rate', '0'])
  t.after(() => node.close())
  await rounds(node.dataDir, node.ports.mqtt as number, 4, 1)
  assert.equal(node.stats.refusals.login_rate_limited, 0, 'no address was locked out')
})

test('a --workers 2 --redis node (warbler start): the same on every worker, with no address locked out', async (t) => {
  const redis = await startRedis()
  const dir = tempDir()
  t.after(async () => { await redis.stop(); rmSync(dir, { recursive: true, force: true }) })
  await ok(dir, ['user', 'add', 'root', '--password-stdin'], 'root-password-1\n') // creates the database before the node starts
  const node = await spawnNode(['--workers', '2', '--redis', redis.url, '--host', '127.0.0.1', '--login-failures', '1', '--conn-rate', '0', '--sys-interval', '0'], { dataDir: dir, timeoutMs: 60_000 })
  t.after(() => node.stop('SIGKILL'))
  // Two logins per step: the primary hands connections to the workers in turn.
  await rounds(dir, node.ports.mqtt as number, 3, 2)
  assert.equal(await node.stop('SIGTERM'), 0)
  const lines = node.stderr().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string, worker?: number, reason?: string })
  const workers = new Set(lines.filter((l) => l.msg === 'client connected').map((l) => l.worker))
  assert.deepEqual([...workers].sort(), [0, 1], 'both workers took logins')
  const reasons = lines.filter((l) => l.msg === 'login failed').map((l) => l.reason)
  assert.ok(!reasons.includes('locked out after failed logins'), reasons.join(', '))
  for (const r of ['revoked token', 'bad password', 'unknown user']) assert.ok(reasons.includes(r), `${r} in ${reasons.join(', ')}`)
})
