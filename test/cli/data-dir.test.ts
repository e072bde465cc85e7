// One server per data dir: the lock is the operating system's, so it holds
// against a second start and a restore, and it goes away with a SIGKILLed
// holder. Against real `warbler start` and `warbler bridge` processes.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { addUser, CLI, connackCode, spawnNode, tempDir } from '../helpers/test-node.js'

/** Run the CLI to its end (bounded). */
export async function cli (args: string[], opts: { timeoutMs?: number, env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20_000)
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)))
  clearTimeout(timer)
  return { code, stdout, stderr }
}

const PORTS = ['--mqtt-port', '0', '--ws-port', '0', '--http-port', '0']

test('a second warbler start on the same data dir exits 3 at once, naming the dir and the holder\'s pid; the first keeps serving', async (t) => {
  const dataDir = tempDir()
  const first = await spawnNode(['--dev'], { dataDir })
  t.after(() => first.stop('SIGKILL'))
  for (const extra of [[], ['--bridge', 'off']]) {
    const second = await cli(['start', '--dev', '--data-dir', dataDir, ...PORTS, ...extra])
    assert.equal(second.code, 3, second.stderr)
    assert.equal(second.stdout, '', 'no ready line')
    assert.equal(second.stderr.trim(), `warbler: the data dir ${dataDir} is in use by warbler start, pid ${first.pid}; stop it first, or choose another --data-dir`)
  }
  // The refused start left the holder's pid file and the holder alone.
  assert.equal(readFileSync(path.join(dataDir, 'warbler.pid'), 'utf8').trim(), String(first.pid))
  assert.equal(await connackCode(`mqtt://127.0.0.1:${first.ports.mqtt}`, { clientId: 'still-there' }), 0)
  assert.equal(await first.stop(), 0)
})

test('the lock goes with a SIGKILLed holder: the next start succeeds on the same data dir', async (t) => {
  const dataDir = tempDir()
  const first = await spawnNode(['--dev'], { dataDir })
  t.after(() => first.stop('SIGKILL'))
  assert.equal(await first.stop('SIGKILL'), null)
  // Its pid file is still there, naming a dead process: it is not the lock.
  assert.equal(readFileSync(path.join(dataDir, 'warbler.pid'), 'utf8').trim(), String(first.pid))
  const next = await spawnNode(['--dev'], { dataDir })
  t.after(() => next.stop('SIGKILL'))
  assert.equal(readFileSync(path.join(dataDir, 'warbler.pid'), 'utf8').trim(), String(next.pid))
  assert.equal(await connackCode(`mqtt://127.0.0.1:${next.ports.mqtt}`, { clientId: 'after-kill' }), 0)
  assert.equal(await next.stop(), 0)
})

test('warbler bridge is refused beside a warbler start that runs the embedded service on the data dir', async (t) => {
  const dataDir = tempDir()
  await addUser(dataDir, { name: 'svc', password: 'service-password-1', service: true })
  const node = await spawnNode(['--dev'], { dataDir })
  t.after(() => node.stop('SIGKILL'))
  const bridge = await cli(['bridge', '--mqtt', `mqtt://127.0.0.1:${node.ports.mqtt}`, '--username', 'svc', '--data-dir', dataDir], { env: { WARBLER_BRIDGE_PASSWORD: 'service-password-1' }, timeoutMs: 30_000 })
  bridge.stderr = bridge.stderr.replace(/^\{.*\}\n/gm, '')
  assert.equal(bridge.code, 3, bridge.stderr)
  assert.match(bridge.stderr, new RegExp(`^warbler: the data dir ${dataDir} is in use by the message service \\(warbler start or warbler bridge\\), pid ${node.pid};`))
  assert.equal(await node.stop(), 0)
})
