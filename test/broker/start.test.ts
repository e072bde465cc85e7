import assert from 'node:assert/strict'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { connackCode, connect, nextMessage, spawnNode, tempDir } from '../helpers/warbler.js'

test('warbler start --dev prints exactly one ready line with the bound ports and stops on SIGTERM with 0', async (t) => {
  const node = await spawnNode(['--dev'])
  t.after(() => node.stop('SIGKILL'))
  const lines = node.stdout().split('\n').filter(Boolean)
  assert.equal(lines.length, 1)
  assert.match(lines[0] as string, /^warbler ready \{"mqtt":\d+,"ws":\d+,"http":\d+\}$/)
  for (const p of Object.values(node.ports)) assert.ok(p > 0)

  const sub = await connect(`mqtt://127.0.0.1:${node.ports.mqtt}`)
  await sub.subscribeAsync('test/hello', { qos: 1 })
  const pub = await connect(`ws://127.0.0.1:${node.ports.ws}/mqtt`)
  const got = nextMessage(sub)
  await pub.publishAsync('test/hello', 'hi', { qos: 1 })
  assert.equal((await got).payload.toString(), 'hi')
  await pub.endAsync()

  const res = await fetch(`http://127.0.0.1:${node.ports.http}/readyz`)
  assert.equal(res.status, 200)
  const closed = new Promise<void>((resolve) => sub.once('close', () => resolve()))
  assert.equal(await node.stop('SIGTERM'), 0)
  await closed
  sub.end(true)
})

test('SIGINT also stops gracefully with exit code 0', async (t) => {
  const node = await spawnNode(['--dev'])
  t.after(() => node.stop('SIGKILL'))
  assert.equal(await node.stop('SIGINT'), 0)
})

test('without --dev anonymous CONNECT is refused with return code 5 and a first admin is created', async (t) => {
  const dataDir = tempDir()
  const node = await spawnNode([], { dataDir })
  t.after(async () => { await node.stop('SIGKILL'); rmSync(dataDir, { recursive: true, force: true }) })
  assert.equal(await connackCode(`mqtt://127.0.0.1:${node.ports.mqtt}`), 5)
  const file = path.join(dataDir, 'initial-admin-password')
  assert.ok(existsSync(file))
  const password = /password: (\S+)/.exec(readFileSync(file, 'utf8'))?.[1] as string
  assert.ok(!node.stderr().includes(password), 'the password is never logged')
  assert.equal(await connackCode(`mqtt://127.0.0.1:${node.ports.mqtt}`, { username: 'admin', password, clientId: 'admin-cli' }), 0)
})

test('a bad setting stops the start with a message naming the field', async () => {
  await assert.rejects(spawnNode(['--mqtt-port', 'abc'], { timeoutMs: 5000 }), /mqttPort/)
  await assert.rejects(spawnNode(['--max-payload', '0'], { timeoutMs: 5000 }), /maxPayload/)
  await assert.rejects(spawnNode([], { env: { WARBLER_SYS_INTERVAL: 'often' }, timeoutMs: 5000 }), /sysInterval/)
})
