// Keeps docs/sdk.md and the SDK in step: every connect option has a row with
// the default the SDK really uses, and every error code the SDK raises is named.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { ClientErrorCodes } from '../../sdk/src/errors.js'
import { resolveOptions } from '../../sdk/src/client-options.js'

const text = readFileSync(new URL('../../../docs/sdk.md', import.meta.url), 'utf8')

/** The rows of the "Connect options" table: option -> its default cell. */
function optionRows (): Map<string, string> {
  const section = text.split('\n## Connect options')[1]?.split('\n## ')[0] ?? ''
  const rows = new Map<string, string>()
  for (const m of section.matchAll(/^\| `([a-zA-Z]+)` \| [^|]+ \| ([^|]+) \|/gm)) rows.set(m[1] as string, (m[2] as string).trim())
  return rows
}

test('docs/sdk.md has a row for every connect option, with the default the SDK uses', () => {
  const resolved = resolveOptions({ url: 'ws://127.0.0.1:8083/mqtt', username: 'alice', password: 'secret-123' }) as unknown as Record<string, unknown>
  const rows = optionRows()
  assert.deepEqual([...rows.keys()].sort(), Object.keys(resolved).sort(), 'documented options')
  const shown = (v: unknown): string => {
    if (typeof v === 'string') return `\`'${v}'\``
    if (typeof v === 'object' && v !== null && v.constructor === Object) {
      const entries = Object.entries(v)
      return entries.length === 0 ? '`{}`' : `\`{ ${entries.map(([k, x]) => `${k}: ${String(x)}`).join(', ')} }\``
    }
    return `\`${String(v)}\``
  }
  for (const key of ['device', 'since', 'startAt', 'reconnect', 'keepalive', 'connectTimeout', 'requestTimeout', 'compressThreshold', 'syncLimit', 'waitOnFirstConnect']) {
    assert.equal(rows.get(key), shown(resolved[key]), `default of ${key}`)
  }
  assert.equal(rows.get('outbox'), '`new MemoryOutbox()`')
  assert.equal((resolved.outbox as object).constructor.name, 'MemoryOutbox')
})

test('docs/sdk.md names every error code the SDK raises itself', () => {
  for (const code of Object.keys(ClientErrorCodes)) assert.match(text, new RegExp(`\\| \`${code}\` \\|`), code)
})
