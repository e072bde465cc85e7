// Keeps docs/ and the code in step: every error code, setting, refusal reason,
// $SYS topic and metric the code defines is documented, and nothing documented
// is missing from the code.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { envName, flagName, settings } from '../../shared/config.js'
import { failureReasons } from '../../broker/login-log.js'
import { noticeReasonCodes } from '../../broker/reason-codes.js'
import { refusalReasons } from '../../broker/stats.js'
import { ErrorCodes } from '../../sdk/src/protocol.js'
import { EXIT } from '../../shared/start-error.js'
import { startNode } from '../helpers/test-node.js'

const doc = (name: string): string => readFileSync(new URL(`../../../docs/${name}`, import.meta.url), 'utf8')

test('docs/errors.md lists exactly the error codes of the protocol module', () => {
  const text = doc('errors.md')
  const documented = [...text.matchAll(/^\| `([a-z_]+)` \|/gm)].map((m) => m[1])
  assert.deepEqual([...documented].sort(), Object.keys(ErrorCodes).sort())
})

test('docs/errors.md gives each error code the MQTT 5 reason code the broker answers with', () => {
  const rows = [...doc('errors.md').matchAll(/^\| `([a-z_]+)` \|.*\| ([^|]+) \|$/gm)]
  assert.equal(rows.length, Object.keys(ErrorCodes).length)
  for (const [, code, column] of rows) {
    const reason = (noticeReasonCodes as Record<string, number>)[code as string]
    if (reason === undefined) assert.ok((column as string).startsWith('none'), `${code}: ${column as string}`)
    else assert.ok((column as string).includes(`0x${reason.toString(16).toUpperCase()}`), `${code}: ${column as string}`)
  }
})

test('docs/configuration.md documents every setting with its flag, variable and default', () => {
  const text = doc('configuration.md')
  for (const [key, spec] of Object.entries(settings)) {
    const row = text.split('\n').find((l) => l.startsWith(`| \`${key}\` |`))
    assert.ok(row !== undefined, `no row for ${key}`)
    assert.ok(row.includes(`\`${flagName(key)}\``), `${key}: flag`)
    assert.ok(row.includes(`\`${envName(key)}\``), `${key}: environment variable`)
    const def = Array.isArray(spec.default) ? '`[]`' : (spec.default === '' ? '(none)' : '`' + JSON.stringify(spec.default) + '`')
    assert.ok(row.includes(def), `${key}: default ${def}`)
  }
  const rows = [...text.matchAll(/^\| `([a-zA-Z]+)` \| `--/gm)].map((m) => m[1])
  assert.deepEqual(rows.sort(), Object.keys(settings).sort())
})

test('docs/operations.md lists exactly the reasons a refused login is logged with', () => {
  const text = doc('operations.md')
  const section = text.slice(text.indexOf('### Why can\'t my device connect?'))
  const table = section.slice(0, section.indexOf('\n\n', section.indexOf('| `')))
  const documented = [...table.matchAll(/^\| `([^`]+)` \((?:\d|HTTP \d{3})\) \|/gm)].map((m) => m[1])
  assert.deepEqual([...documented].sort(), [...failureReasons].sort())
})

test('docs/operations.md documents every refusal reason, $SYS topic and warbler metric', async (t) => {
  const text = doc('operations.md')
  for (const r of refusalReasons) assert.ok(text.includes(`\`${r}\``), `refusal reason ${r}`)
  const node = await startNode(['--dev'])
  t.after(() => node.close())
  for (const key of Object.keys(await node.sys())) {
    const general = key
      .replace(/^warbler\/refused\/[a-z_]+$/, 'warbler/refused/{reason}')
      .replace(/^warbler\/logins\/[a-z_]+$/, 'warbler/logins/{method}')
      .replace(/^warbler\/service\/refused\/[a-z_]+$/, 'warbler/service/refused/{code}')
      .replace(/^load\/(.+)\/(1|5|15)min$/, 'load/$1/{1,5,15}min')
    assert.ok(text.includes(`\`$SYS/broker/${general}\``), `$SYS topic ${key}`)
  }
  const metrics = await (await fetch(`${node.httpUrl}/metrics`)).text()
  const names = new Set([...metrics.matchAll(/^# TYPE (warbler_[a-z_]+) /gm)].map((m) => m[1] as string))
  for (const name of names) {
    if (/^warbler_(process_|nodejs_)/.test(name)) continue // prom-client's default process metrics
    assert.ok(new RegExp(`\`${name}(\\{[a-z]+\\})?\``).test(text), `metric ${name}`)
  }
})

test('docs/operations.md lists every exit code the CLI uses, and no other', () => {
  const text = doc('operations.md')
  const from = text.indexOf('### Exit codes')
  const table = text.slice(from, text.indexOf('\n#', from + 1))
  const documented = [...table.matchAll(/^\| (\d+) \|/gm)].map((m) => Number(m[1]))
  assert.deepEqual(documented, [...new Set(Object.values(EXIT))].sort((a, b) => a - b))
})
