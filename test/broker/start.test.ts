import assert from 'node:assert/strict'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { ConfigError, resolveConfig } from '../../shared/config.js'
import { connackCode, connect, nextMessage, spawnNode, tempDir } from '../helpers/test-node.js'

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

test('one worker by default, with Redis too (more carry less today); 0 asks for one per core', () => {
  const dir = tempDir()
  assert.equal(resolveConfig(['--data-dir', dir], {}).workers, 1)
  assert.equal(resolveConfig(['--data-dir', dir, '--redis', 'redis://127.0.0.1:6379'], {}).workers, 1)
  assert.equal(resolveConfig(['--data-dir', dir, '--redis', 'redis://127.0.0.1:6379', '--workers', '0'], {}).workers, os.availableParallelism())
  assert.equal(resolveConfig(['--data-dir', dir, '--workers', '0'], {}).workers, 1)
  rmSync(dir, { recursive: true, force: true })
})

test('a bad setting stops the start with a message naming the field', async () => {
  await assert.rejects(spawnNode(['--mqtt-port', 'abc'], { timeoutMs: 5000 }), /mqttPort/)
  await assert.rejects(spawnNode(['--max-payload', '0'], { timeoutMs: 5000 }), /maxPayload/)
  await assert.rejects(spawnNode([], { env: { WARBLER_SYS_INTERVAL: 'often' }, timeoutMs: 5000 }), /sysInterval/)
})

test('config file values must have their JSON type: a string where a number or boolean belongs is refused, naming key, file, type and value', (t) => {
  const dir = tempDir()
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'cfg.json')
  const resolve = (data: Record<string, unknown>, argv: string[] = [], env: NodeJS.ProcessEnv = {}): ReturnType<typeof resolveConfig> => {
    writeFileSync(file, JSON.stringify(data))
    return resolveConfig(['--config', file, ...argv], env)
  }
  const refused: Array<[Record<string, unknown>, string, RegExp]> = [
    [{ dev: 'yes' }, 'dev', /^invalid setting dev: expected a JSON boolean \(true or false\) in .*cfg\.json, got the string "yes"$/],
    [{ dev: 'false' }, 'dev', /expected a JSON boolean \(true or false\) in .*cfg\.json, got the string "false"$/],
    [{ dev: 1 }, 'dev', /expected a JSON boolean \(true or false\) in .*cfg\.json, got the number 1$/],
    [{ proxyProtocol: null }, 'proxyProtocol', /expected a JSON boolean \(true or false\) in .*cfg\.json, got null$/],
    [{ mqttPort: '1884' }, 'mqttPort', /^invalid setting mqttPort: expected a JSON number \(an integer, not in quotes\) in .*cfg\.json, got the string "1884"$/],
    [{ maxPayload: '65536' }, 'maxPayload', /expected a JSON number .* in .*cfg\.json, got the string "65536"$/],
    [{ workers: true }, 'workers', /expected a JSON number .* in .*cfg\.json, got the boolean true$/],
    [{ acl: 'read public/#' }, 'acl', /expected a JSON array of strings in .*cfg\.json, got the string "read public\/#"$/],
    [{ acl: ['read a/#', 3] }, 'acl', /expected a JSON array of strings in .*cfg\.json, got the array \["read a\/#",3\]$/],
    [{ logLevel: 2 }, 'logLevel', /expected a JSON string in .*cfg\.json, got the number 2$/],
    [{ durability: ['power'] }, 'durability', /expected a JSON string in .*cfg\.json, got the array \["power"\]$/],
    [{ dataDir: { path: 'x' } }, 'dataDir', /expected a JSON string in .*cfg\.json, got an object$/]
  ]
  for (const [data, field, message] of refused) {
    assert.throws(() => resolve(data), (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err))
      assert.equal(err.field, field)
      assert.match(err.message, message)
      return true
    }, JSON.stringify(data))
  }
  // A flag or variable for the same setting does not make a wrong file right.
  assert.throws(() => resolve({ dev: 'yes' }, ['--dev']), /invalid setting dev: expected a JSON boolean/)
  assert.throws(() => resolve({ mqttPort: '1884' }, [], { WARBLER_MQTT_PORT: '1884' }), /invalid setting mqttPort: expected a JSON number/)

  // The right JSON types are taken as they are ...
  const cfg = resolve({ dev: true, mqttPort: 1884, maxPayload: 65536, acl: ['read public/#'], logLevel: 'debug', durability: 'power', proxyProtocol: false })
  assert.equal(cfg.dev, true)
  assert.equal(cfg.mqttPort, 1884)
  assert.equal(cfg.maxPayload, 65536)
  assert.deepEqual(cfg.acl, ['read public/#'])
  assert.equal(cfg.logLevel, 'debug')
  assert.equal(cfg.durability, 'power')
  assert.equal(resolve({ dev: false }).dev, false)
  // ... and range checks still apply to file numbers.
  assert.throws(() => resolve({ mqttPort: 70000 }), /invalid setting mqttPort: 70000 is out of range -1..65535/)
  assert.throws(() => resolve({ connRate: 1.5 }), /invalid setting connRate: expected an integer, got 1.5/)
  // Flags and environment variables are text and are still parsed from strings.
  assert.equal(resolve({}, ['--mqtt-port', '1885']).mqttPort, 1885)
  assert.equal(resolve({}, [], { WARBLER_DEV: 'yes', WARBLER_MQTT_PORT: '1886' }).dev, true)
  assert.equal(resolve({ dev: true }, [], { WARBLER_DEV: 'no' }).dev, false)
})

test('warbler start with {"dev": "yes"} in its config file exits 2 before ready, naming dev and the file', async (t) => {
  const dir = tempDir()
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'cfg.json')
  writeFileSync(file, '{"dev": "yes"}')
  await assert.rejects(spawnNode(['--config', file], { timeoutMs: 5000 }),
    /exited with 2 before ready[\s\S]*invalid setting dev: expected a JSON boolean \(true or false\) in \S*cfg\.json, got the string "yes"/)
})
