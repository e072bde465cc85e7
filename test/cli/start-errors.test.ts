// Expected start-up failures end with one line naming the problem and the
// fix, a documented exit code, no stack trace, and nothing changed; nothing
// hangs, and a signal stops a start that is still under way.
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { checkBuild, digestSources } from '../../cli/build-info.js'
import { EXIT } from '../../shared/start-error.js'
import { Database } from '../../shared/sqlite.js'
import { CLI, tempDir } from '../helpers/test-node.js'

const PORTS = ['--mqtt-port', '0', '--ws-port', '0', '--http-port', '0']

interface Run { code: number | null, stdout: string, stderr: string, pid: number }

/** Start `warbler start` and wait for its exit (bounded); `during` runs once it is up. */
async function start (args: string[], opts: { timeoutMs?: number, during?: (pid: number) => void | Promise<void>, uid?: number } = {}): Promise<Run> {
  const child = spawn(process.execPath, [CLI, 'start', ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}) })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)))
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 20_000)
  if (opts.during !== undefined) await opts.during(child.pid ?? -1)
  const code = await exited
  clearTimeout(timer)
  return { code, stdout, stderr, pid: child.pid ?? -1 }
}

/** The one `warbler: ...` line, after the JSON log lines. */
function refusal (r: Run): string {
  const lines = r.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('{'))
  assert.equal(lines.length, 1, `one line, no stack trace:\n${r.stderr}`)
  return lines[0] as string
}

/** A TCP server that accepts and never answers: a Redis that hangs. */
async function blackHole (t: { after: (fn: () => unknown) => void }): Promise<number> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((s) => { sockets.add(s) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => { for (const s of sockets) s.destroy(); server.close() })
  return (server.address() as net.AddressInfo).port
}

test('a port in use: exit 4 naming the listener, the address, the flag, and who may hold it', async (t) => {
  const busy = net.createServer()
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve))
  t.after(() => busy.close())
  const port = (busy.address() as net.AddressInfo).port
  for (const [flag, name] of [['--mqtt-port', 'mqtt'], ['--ws-port', 'ws'], ['--http-port', 'http']] as const) {
    const args = ['--dev', '--data-dir', tempDir(), ...PORTS]
    args[args.indexOf(flag) + 1] = String(port)
    const r = await start(args)
    assert.equal(r.code, EXIT.listen, r.stderr)
    assert.equal(refusal(r), `warbler: cannot listen for ${name} on 127.0.0.1:${port}: the port is in use (is another Warbler or Mosquitto running?); stop it, or choose another port with ${flag} (-1 turns this listener off)`)
  }
})

test('a data dir that is a file, cannot be created, or holds a file that is not a Warbler database: exit 5, the file untouched', async () => {
  const file = path.join(tempDir(), 'not-a-dir')
  writeFileSync(file, 'x')
  let r = await start(['--dev', '--data-dir', file, ...PORTS])
  assert.equal(r.code, EXIT.dataDir)
  assert.equal(refusal(r), `warbler: the data dir ${file} is a file, not a directory; choose another --data-dir`)

  // Node's own recursive mkdir spins forever here; this must end at once.
  r = await start(['--dev', '--data-dir', '/proc/warbler-test/x', ...PORTS], { timeoutMs: 10_000 })
  assert.equal(r.code, EXIT.dataDir)
  assert.match(refusal(r), /^warbler: the data dir \/proc\/warbler-test\/x does not exist and \/proc\/warbler-test cannot be created there \(ENOENT\); choose another --data-dir$/)

  const dir = tempDir()
  writeFileSync(path.join(dir, 'warbler.db'), 'my notes, not a database\n'.repeat(100))
  r = await start(['--data-dir', dir, ...PORTS])
  assert.equal(r.code, EXIT.dataDir)
  assert.equal(refusal(r), `warbler: ${path.join(dir, 'warbler.db')} is not a SQLite database, so not a Warbler database; move it away, restore a backup (warbler restore), or choose another --data-dir`)
  assert.equal(readFileSync(path.join(dir, 'warbler.db'), 'utf8'), 'my notes, not a database\n'.repeat(100))

  const other = tempDir()
  const db = await Database.open(path.join(other, 'warbler.db'))
  await db.exec('CREATE TABLE recipes (name TEXT)')
  await db.close()
  r = await start(['--data-dir', other, ...PORTS])
  assert.equal(r.code, EXIT.dataDir)
  assert.match(refusal(r), /is a SQLite database but not a Warbler one \(its tables: recipes\)/)
  const check = await Database.open(path.join(other, 'warbler.db'), { readonly: true })
  assert.deepEqual(await check.all("SELECT name FROM sqlite_master WHERE type = 'table'"), [{ name: 'recipes' }], 'no Warbler table added to it')
  await check.close()
})

test('a data dir this user may not write: exit 5 naming the uid and the fix', { skip: process.getuid?.() !== 0 ? 'needs root to run the start as another user' : false }, async () => {
  // A service user and a data dir left owned by root: the usual mistake.
  const dir = fs0755(tempDir())
  const r = await start(['--dev', '--data-dir', dir, ...PORTS], { uid: 65534 })
  assert.equal(r.code, EXIT.dataDir, r.stderr)
  assert.equal(refusal(r), `warbler: the data dir ${dir} is not writable by this user (uid 65534, EACCES); give it to the user that runs Warbler (chown), or choose another --data-dir`)
})

function fs0755 (dir: string): string {
  // The test's temp dirs are 0700: let the other user in, but not write.
  for (let d = dir; d !== path.dirname(d) && d.startsWith(os.tmpdir()) && d !== os.tmpdir(); d = path.dirname(d)) chmodSync(d, 0o755)
  mkdirSync(path.join(dir, 'data'), { mode: 0o755 })
  return path.join(dir, 'data')
}

test('a start that hangs (a Redis that never answers) ends after --start-timeout with exit 6 naming the step', async (t) => {
  const port = await blackHole(t)
  const r = await start(['--dev', '--data-dir', tempDir(), ...PORTS, '--redis', `redis://127.0.0.1:${port}`, '--workers', '1', '--start-timeout', '2'], { timeoutMs: 30_000 })
  assert.equal(r.code, EXIT.startTimeout, r.stderr)
  assert.equal(refusal(r), 'warbler: start-up did not finish within 2 s (--start-timeout): stuck starting the broker (connecting to Redis); is Redis reachable at the --redis URL?')
  assert.equal(r.stdout, '')
})

test('SIGTERM during start-up stops it with exit 0 and releases the data dir', async (t) => {
  const port = await blackHole(t)
  const dataDir = tempDir()
  const r = await start(['--dev', '--data-dir', dataDir, ...PORTS, '--redis', `redis://127.0.0.1:${port}`, '--workers', '1'], {
    timeoutMs: 30_000,
    during: async (pid) => {
      // Signal once it holds the data dir, that is, once it is in start-up proper.
      const deadline = Date.now() + 15_000
      while (Date.now() < deadline) {
        try { if (readFileSync(path.join(dataDir, 'warbler.pid'), 'utf8').trim() === String(pid)) break } catch { /* no pid file yet */ }
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      process.kill(pid, 'SIGTERM')
    }
  })
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stderr, /"msg":"stopped during start-up","stage":"starting the broker \(connecting to Redis\)"/)
  assert.equal(r.stdout, '')
  // Released: the next start takes the data dir.
  const again = await start(['--dev', '--data-dir', dataDir, ...PORTS, '--start-timeout', '1', '--redis', `redis://127.0.0.1:${port}`, '--workers', '1'], { timeoutMs: 30_000 })
  assert.equal(again.code, EXIT.startTimeout, again.stderr)
})

test('every warbler command refuses a dist/ built from other sources (exit 7), naming a changed file', () => {
  // A copy of the layout the check reads: sources, tsconfig.json and dist/build-info.json.
  const root = tempDir()
  mkdirSync(path.join(root, 'broker'))
  mkdirSync(path.join(root, 'dist'))
  writeFileSync(path.join(root, 'tsconfig.json'), '{}')
  writeFileSync(path.join(root, 'broker', 'a.ts'), 'export const a = 1\n')
  assert.throws(() => checkBuild(root), (err: Error & { exitCode?: number }) => err.exitCode === EXIT.staleBuild && /no record of the sources it was built from; run `npm run build`/.test(err.message))
  writeFileSync(path.join(root, 'dist', 'build-info.json'), JSON.stringify({ files: digestSources(root) }))
  checkBuild(root)
  writeFileSync(path.join(root, 'broker', 'a.ts'), 'export const a = 2\n')
  assert.throws(() => checkBuild(root), (err: Error & { exitCode?: number }) => err.exitCode === EXIT.staleBuild && err.message === 'the compiled code in dist/ is older than the sources (changed since the last build: broker/a.ts); run `npm run build`')
  // The same text again, with a newer time: not stale.
  writeFileSync(path.join(root, 'broker', 'a.ts'), 'export const a = 1\n')
  checkBuild(root)
  // This checkout's own build is current (npm test builds first).
  const own = spawnSync(process.execPath, [CLI, 'user', 'list', '--data-dir', path.join(tempDir(), 'none')], { encoding: 'utf8' })
  assert.doesNotMatch(own.stderr, /older than the sources/)
})
