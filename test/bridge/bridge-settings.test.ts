// `warbler bridge` takes the settings of `warbler start` the message service
// uses (maxPayload, durability, retention, redis) from the settings table:
// the same defaults, the same checks, the same help. A bad value is refused
// by its flag before anything starts (no data dir is created).
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, rmSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { SERVICE_SETTINGS } from '../../cli/bridge.js'
import { ConfigError, envName, flagName, type SettingName, settings } from '../../shared/config.js'
import { resolveSettings } from '../../shared/flag-settings.js'
import { CLI, tempDir } from '../helpers/test-node.js'

/** Run `warbler bridge` to its exit (nothing listens on port 9; a bad setting stops it before it connects). */
async function bridge (args: string[], env: Record<string, string> = {}): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn(process.execPath, [CLI, 'bridge', ...args], {
    env: { ...process.env, WARBLER_BRIDGE_PASSWORD: 'bridge-password-123', ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const timer = setTimeout(() => child.kill('SIGKILL'), 15000)
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)))
  clearTimeout(timer)
  return { code, stdout, stderr }
}

const defaultText = (key: SettingName): string => JSON.stringify(settings[key].default)

test('warbler bridge takes the message service settings with the table\'s defaults', () => {
  assert.deepEqual([...SERVICE_SETTINGS].sort(), ['durability', 'maxPayload', 'redis', 'retentionDays', 'retentionMessages'])
  const resolved = resolveSettings(SERVICE_SETTINGS, {}, {})
  for (const key of SERVICE_SETTINGS) assert.equal(resolved[key], settings[key].default, key)
  // Flag over environment over default, as for warbler start.
  const given = resolveSettings(SERVICE_SETTINGS, { maxPayload: '1024' }, { WARBLER_MAX_PAYLOAD: '2048', WARBLER_DURABILITY: 'power', WARBLER_RETENTION_DAYS: '' })
  assert.equal(given.maxPayload, 1024)
  assert.equal(given.durability, 'power')
  assert.equal(given.retentionDays, 0, 'an empty variable is not set')
})

test('warbler bridge --help lists each setting with its flag, variable and the table\'s default and meaning', async () => {
  const r = await bridge(['--help'])
  assert.equal(r.code, 0, r.stderr)
  for (const key of SERVICE_SETTINGS) {
    assert.ok(r.stdout.includes(`  ${flagName(key)} VALUE\n      ${settings[key].doc}\n      env ${envName(key)}, default ${defaultText(key)}\n`), `${key} in:\n${r.stdout}`)
  }
})

test('a bad value of each setting is refused, naming the setting, by resolveSettings and by warbler bridge before it starts', async () => {
  const bad: Array<[SettingName, string, RegExp]> = [
    ['maxPayload', '0', /--max-payload must be a whole number from 1 to 268435456, got "0"/],
    ['maxPayload', 'big', /--max-payload must be a whole number from 1 to 268435456, got "big"/],
    ['retentionDays', '-1', /--retention-days must be a whole number from 0 to 36500, got "-1"/],
    ['retentionMessages', '1.5', /--retention-messages must be a whole number from 0 to 1000000000, got "1.5"/],
    ['durability', 'sometimes', /--durability must be process or power, got "sometimes"/],
    ['redis', 'http://127.0.0.1:6379', /--redis must be a redis:\/\/ or rediss:\/\/ URL, got "http:\/\/127.0.0.1:6379"/]
  ]
  for (const [key, value, message] of bad) {
    for (const [given, env] of [[{ [key]: value }, {}], [{}, { [envName(key)]: value }]] as const) {
      assert.throws(() => resolveSettings(SERVICE_SETTINGS, given, env), (err: unknown) => {
        assert.ok(err instanceof ConfigError)
        assert.equal(err.field, key)
        assert.match(err.message, message)
        return true
      }, `${key}=${value}`)
    }
  }
  const dir = tempDir()
  try {
    const runs = await Promise.all(bad.flatMap(([key, value]) => {
      const dataDir = path.join(dir, `${key}-${value.replace(/\W/g, '_')}`)
      const base = ['--mqtt', 'mqtt://127.0.0.1:9', '--username', 'bridge']
      return [
        bridge([...base, '--data-dir', dataDir + '-flag', flagName(key), value]),
        bridge([...base, '--data-dir', dataDir + '-env'], { [envName(key)]: value })
      ].map(async (p) => ({ ...await p, dataDir, key }))
    }))
    runs.forEach((r, i) => {
      const [key, value, message] = bad[Math.floor(i / 2)] as [SettingName, string, RegExp]
      const how = i % 2 === 0 ? `${flagName(key)} ${value}` : `${envName(key)}=${value}`
      assert.equal(r.code, 2, `${how}: ${r.stderr}`)
      assert.match(r.stderr, message, how)
      assert.equal(r.stdout, '', `${how}: no ready line`)
    })
    for (const r of runs) {
      assert.ok(!existsSync(r.dataDir + '-flag') && !existsSync(r.dataDir + '-env'), `${r.key}: no data dir created`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
