// `npm start`, as a service manager or a script runs it: with the real npm.
// A signal to npm's own pid stops the whole service within its shutdown
// bound, and a server whose npm dies without passing a signal on stops too:
// nothing is left holding the ports.
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { test } from 'node:test'
import { tempDir } from '../helpers/test-node.js'
import { alive } from '../helpers/cluster-procs.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
/** The server's own shutdown bound is well under this; the rest is a loaded machine's slack. */
const STOP_BOUND_MS = 20_000

interface NpmStart { npm: ChildProcess, serverPid: number, ports: Record<string, number>, stderr: () => string }

async function npmStart (dataDir: string): Promise<NpmStart> {
  const npm = spawn('npm', ['start', '--', '--dev', '--data-dir', dataDir, '--mqtt-port', '0', '--ws-port', '0', '--http-port', '0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  npm.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  npm.stderr?.on('data', (d: Buffer) => { err += d.toString() })
  const ports = await new Promise<Record<string, number>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line; stderr:\n${err}`)), 30_000)
    npm.stdout?.on('data', () => {
      const m = /^warbler ready (\{.*\})$/m.exec(out)
      if (m !== null) { clearTimeout(timer); resolve(JSON.parse(m[1] as string) as Record<string, number>) }
    })
    npm.once('exit', (code) => { clearTimeout(timer); reject(new Error(`npm exited with ${String(code)}; stderr:\n${err}`)) })
  })
  // The server names itself in the data dir while it holds it.
  const serverPid = Number(readFileSync(path.join(dataDir, 'warbler.pid'), 'utf8').trim())
  return { npm, serverPid, ports, stderr: () => err }
}

async function gone (pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (!alive(pid)) return true
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return !alive(pid)
}

function refused (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve(false) })
    s.once('error', () => resolve(true))
  })
}

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`${signal} to the pid of npm start stops the server it started, and frees its ports`, async (t) => {
    const s = await npmStart(tempDir())
    t.after(() => { if (alive(s.serverPid)) process.kill(s.serverPid, 'SIGKILL'); s.npm.kill('SIGKILL') })
    assert.notEqual(s.serverPid, s.npm.pid)
    assert.ok(alive(s.serverPid))
    s.npm.kill(signal)
    assert.ok(await gone(s.serverPid, STOP_BOUND_MS), `the server (pid ${s.serverPid}) still runs after ${signal} to npm (pid ${String(s.npm.pid)})`)
    assert.match(s.stderr(), new RegExp(`"msg":"stopping","signal":"${signal}"`))
    assert.match(s.stderr(), /"msg":"stopped"/)
    for (const port of Object.values(s.ports)) assert.ok(await refused(port), `port ${port} is free`)
  })
}

test('a server whose npm is SIGKILLed (no signal passed on) stops by itself', async (t) => {
  const s = await npmStart(tempDir())
  t.after(() => { if (alive(s.serverPid)) process.kill(s.serverPid, 'SIGKILL') })
  s.npm.kill('SIGKILL')
  assert.ok(await gone(s.serverPid, STOP_BOUND_MS), `the server (pid ${s.serverPid}) outlived its npm`)
  for (const port of Object.values(s.ports)) assert.ok(await refused(port), `port ${port} is free`)
})
