// `warbler start --workers N` serves the HTTP port from the primary: httpHost
// and metricsTokenFile apply there as in one process, and the admin API
// forwarded to worker 0 tells 401 from 403 the same way.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { test } from 'node:test'
import { startRedis } from '../helpers/redis.js'
import { addUser, CLI, connackCode, spawnNode, tempDir } from '../helpers/test-node.js'

const TOKEN = 'cluster-metrics-token-5f1e2d3c4b5a'

async function refused (host: string, port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = net.connect(port, host)
    s.once('connect', () => { s.destroy(); resolve(false) })
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'))
  })
}

test('a 2-worker node: HTTP on httpHost (127.0.0.2) apart from MQTT, /metrics behind the token, probes open, admin API 401/403/200', async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  const dataDir = tempDir()
  t.after(() => rmSync(dataDir, { recursive: true, force: true }))
  for (const u of [{ name: 'alice', password: 'alice-pw-1' }, { name: 'root', password: 'root-pw-12', admin: true }]) await addUser(dataDir, u)
  const file = path.join(tempDir('warbler-token-'), 'metrics-token')
  t.after(() => rmSync(path.dirname(file), { recursive: true, force: true }))
  writeFileSync(file, `${TOKEN}\n`, { mode: 0o600 })

  const node = await spawnNode(['--workers', '2', '--redis', redis.url, '--host', '127.0.0.1', '--http-host', '127.0.0.2', '--metrics-token-file', file], { dataDir, timeoutMs: 60_000 })
  t.after(() => node.stop('SIGKILL'))
  const port = node.ports.http ?? 0
  const http = `http://127.0.0.2:${port}`
  assert.ok(await refused('127.0.0.1', port), 'the primary\'s HTTP port is not on the MQTT address')
  assert.equal(await connackCode(`mqtt://127.0.0.1:${node.ports.mqtt ?? 0}`, { username: 'alice', password: 'alice-pw-1', clientId: 'alice' }), 0)

  const noToken = await fetch(`${http}/metrics`)
  assert.equal(noToken.status, 401)
  assert.equal(noToken.headers.get('www-authenticate'), 'Bearer')
  assert.equal((await fetch(`${http}/metrics`, { headers: { authorization: 'Bearer not-it' } })).status, 401)
  const ok = await fetch(`${http}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
  assert.equal(ok.status, 200)
  assert.match(await ok.text(), /^warbler_cluster_workers 2$/m, 'the aggregated metrics of the primary')
  assert.equal((await fetch(`${http}/healthz`)).status, 200)
  assert.equal((await fetch(`${http}/readyz`)).status, 200)

  // The admin API, forwarded to worker 0.
  const token = (user: string): string => {
    const r = spawnSync(process.execPath, [CLI, 'token', 'create', user, '--data-dir', dataDir], { encoding: 'utf8' })
    assert.equal(r.status, 0, r.stderr)
    return r.stdout.trim()
  }
  const unread = async (authorization?: string): Promise<number> =>
    (await fetch(`${http}/api/v1/users/alice/unread`, authorization === undefined ? {} : { headers: { authorization } })).status
  assert.equal(await unread(), 401)
  assert.equal(await unread(`Bearer ${TOKEN}`), 401, 'the metrics token is not an admin token')
  assert.equal(await unread(`Bearer ${token('alice')}`), 403)
  assert.equal(await unread(`Bearer ${token('root')}`), 200)

  assert.equal(await node.stop('SIGTERM'), 0)
  assert.ok(!node.stderr().includes(TOKEN), 'the token is not in the log')
})

test('--workers 2 with an unreadable metricsTokenFile is refused naming the setting', async (t) => {
  const dataDir = tempDir()
  t.after(() => rmSync(dataDir, { recursive: true, force: true }))
  await assert.rejects(
    spawnNode(['--workers', '2', '--redis', 'redis://127.0.0.1:1/0', '--metrics-token-file', path.join(dataDir, 'no-such-token')], { dataDir, timeoutMs: 10_000 }),
    /exited with 2 before ready[^]*invalid setting metricsTokenFile: cannot read/
  )
})
