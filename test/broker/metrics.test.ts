/**
 * The operator's HTTP port: /metrics in the Prometheus text exposition
 * format (0.0.4), checked by a small parser, with counters that move with
 * traffic; /healthz and /readyz.
 */
import assert from 'node:assert/strict'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import { Registry } from 'prom-client'
import { createHttpServer } from '../../server/ops-http.js'
import { connect, connackCode, startNode } from '../helpers/test-node.js'

const USERS = [
  { name: 'alice', password: 'alice-pw-1' },
  { name: 'carol', password: 'carol-pw-1', admin: true }
]

interface Family { type: string, help: string, samples: Map<string, number> }

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped'])

/** Sample values as Prometheus reads them (Go's ParseFloat: NaN and Inf in any case; prom-client writes "Nan"). */
function parseValue (s: string): number {
  const l = s.toLowerCase()
  if (l === '+inf' || l === 'inf') return Infinity
  if (l === '-inf') return -Infinity
  if (l === 'nan') return NaN
  assert.match(s, /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/, `bad sample value ${s}`)
  return Number(s)
}

/** Parse labels `{a="x",b="y\"z"}` strictly; returns the canonical label string. */
function parseLabels (s: string, line: string): string {
  let i = 0
  const pairs: string[] = []
  while (i < s.length) {
    const eq = s.indexOf('=', i)
    assert.ok(eq > i, `bad labels in ${line}`)
    const name = s.slice(i, eq)
    assert.match(name, LABEL, `bad label name in ${line}`)
    assert.equal(s[eq + 1], '"', `label value not quoted in ${line}`)
    let j = eq + 2
    let value = ''
    for (;;) {
      assert.ok(j < s.length, `unterminated label value in ${line}`)
      const c = s[j] as string
      if (c === '\\') {
        const n = s[j + 1]
        assert.ok(n === '\\' || n === '"' || n === 'n', `bad escape in ${line}`)
        value += n === 'n' ? '\n' : n
        j += 2
        continue
      }
      if (c === '"') break
      value += c
      j++
    }
    pairs.push(`${name}=${JSON.stringify(value)}`)
    i = j + 1
    if (s[i] === ',') i++
  }
  const names = pairs.map((p) => p.slice(0, p.indexOf('=')))
  assert.equal(new Set(names).size, names.length, `duplicate label in ${line}`)
  return pairs.sort().join(',')
}

/** The family a sample belongs to (histograms and summaries add suffixes). */
function familyOf (name: string, families: Map<string, Family>): Family | undefined {
  const f = families.get(name)
  if (f !== undefined) return f
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue
    const base = families.get(name.slice(0, -suffix.length))
    if (base !== undefined && (base.type === 'histogram' || base.type === 'summary')) return base
  }
  return undefined
}

/** A strict reader of the text format: HELP and TYPE once per family and before its samples, no duplicate series. */
export function parseExposition (text: string): Map<string, Family> {
  assert.ok(text.endsWith('\n'), 'ends with a newline')
  const families = new Map<string, Family>()
  const sampled = new Set<string>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line)
      if (m === null) continue // a comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string]
      assert.match(name, NAME, `bad metric name ${name}`)
      assert.ok(!sampled.has(name), `${kind} for ${name} after its samples`)
      const f = families.get(name) ?? { type: 'untyped', help: '', samples: new Map() }
      if (kind === 'TYPE') {
        assert.ok(TYPES.has(rest), `bad type ${rest} for ${name}`)
        assert.equal(f.type, 'untyped', `second TYPE for ${name}`)
        f.type = rest
      } else {
        assert.equal(f.help, '', `second HELP for ${name}`)
        assert.ok(rest.length > 0, `empty HELP for ${name}`)
        f.help = rest
      }
      families.set(name, f)
      continue
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(line)
    assert.ok(m !== null, `bad sample line: ${line}`)
    const [, name, labels, value] = m as unknown as [string, string, string | undefined, string]
    const f = familyOf(name, families)
    assert.ok(f !== undefined, `sample ${name} has no TYPE line before it`)
    const key = `${name}{${labels === undefined ? '' : parseLabels(labels, line)}}`
    assert.ok(!f.samples.has(key), `duplicate series ${key}`)
    const v = parseValue(value)
    if (f.type === 'counter') assert.ok(v >= 0, `negative counter ${key}`)
    f.samples.set(key, v)
    for (const fam of families) if (fam[1] === f) sampled.add(fam[0])
  }
  return families
}

function sample (families: Map<string, Family>, series: string): number {
  for (const f of families.values()) {
    const v = f.samples.get(series)
    if (v !== undefined) return v
  }
  throw new Error(`no series ${series}`)
}

async function scrape (url: string): Promise<Map<string, Family>> {
  const res = await fetch(`${url}/metrics`)
  assert.equal(res.status, 200)
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/)
  return parseExposition(await res.text())
}

test('the parser rejects what Prometheus rejects', () => {
  assert.throws(() => parseExposition('foo 1\n'), /no TYPE/)
  assert.throws(() => parseExposition('# TYPE foo counter\nfoo{a="1",a="2"} 1\n'), /duplicate label/)
  assert.throws(() => parseExposition('# TYPE foo counter\nfoo 1\nfoo 2\n'), /duplicate series/)
  assert.throws(() => parseExposition('# TYPE foo gauge\nfoo{a=1} 1\n'), /not quoted/)
  assert.throws(() => parseExposition('# TYPE foo gauge\nfoo one\n'), /bad sample value/)
  assert.throws(() => parseExposition('# TYPE foo gauge\nfoo 1\n# HELP foo late\n'), /after its samples/)
  const ok = parseExposition('# HELP h a histogram\n# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 0.5\nh_count 2\n# TYPE g gauge\ng{x="a\\"b"} NaN\n')
  assert.equal(ok.get('h')?.samples.get('h_count{}'), 2)
})

test('/metrics serves the broker\'s figures and process metrics, and counters rise with traffic', { timeout: 20_000 }, async (t) => {
  const node = await startNode([], { users: USERS })
  t.after(() => node.close())
  const first = await scrape(node.httpUrl)
  for (const [name, type] of [
    ['warbler_clients_connected', 'gauge'],
    ['warbler_clients_maximum', 'gauge'],
    ['warbler_publish_inflight', 'gauge'],
    ['warbler_publish_waiting', 'gauge'],
    ['warbler_connections_total', 'counter'],
    ['warbler_messages_received_total', 'counter'],
    ['warbler_messages_sent_total', 'counter'],
    ['warbler_bytes_received_total', 'counter'],
    ['warbler_bytes_sent_total', 'counter'],
    ['warbler_publish_dropped_total', 'counter'],
    ['warbler_refusals_total', 'counter'],
    ['warbler_logins_total', 'counter'],
    ['warbler_process_cpu_seconds_total', 'counter'],
    ['warbler_process_resident_memory_bytes', 'gauge'],
    ['warbler_process_start_time_seconds', 'gauge'],
    ['warbler_nodejs_heap_size_used_bytes', 'gauge'],
    ['warbler_nodejs_eventloop_lag_seconds', 'gauge']
  ]) {
    assert.equal(first.get(name as string)?.type, type, `${name} is a ${type}`)
  }
  for (const [name, f] of first) {
    if (name.startsWith('warbler_') && f.type === 'counter') assert.ok(name.endsWith('_total'), `counter ${name} ends in _total`)
  }
  // Every refusal reason and login method is there from the start, at zero.
  assert.equal(sample(first, 'warbler_refusals_total{reason="not_authorized"}'), 0)
  assert.equal(sample(first, 'warbler_refusals_total{reason="login_failed"}'), 0)
  assert.equal(sample(first, 'warbler_logins_total{method="password"}'), 0)
  assert.equal(sample(first, 'warbler_clients_connected{}'), 0)

  assert.equal(await connackCode(node.mqttUrl, { username: 'alice', password: 'wrong', clientId: 'alice' }), 4)
  const alice = await connect(node.mqttUrl, { username: 'alice', password: 'alice-pw-1', clientId: 'alice-phone' })
  t.after(() => alice.endAsync(true))
  for (let i = 0; i < 3; i++) await alice.publishAsync('wb/u/alice/out', '{"t":"msg"}', { qos: 1 })
  await alice.publishAsync('wb/u/carol/out', '{"t":"msg"}', { qos: 1 })
  await alice.subscribeAsync('$SYS/#').catch(() => {})

  const second = await scrape(node.httpUrl)
  assert.equal(sample(second, 'warbler_clients_connected{}'), 1)
  assert.ok(sample(second, 'warbler_clients_maximum{}') >= 1)
  assert.equal(sample(second, 'warbler_connections_total{}'), 1)
  assert.equal(sample(second, 'warbler_logins_total{method="password"}'), 1)
  assert.equal(sample(second, 'warbler_messages_received_total{}'), 4)
  assert.equal(sample(second, 'warbler_refusals_total{reason="not_authorized"}'), 1)
  assert.equal(sample(second, 'warbler_refusals_total{reason="login_failed"}'), 1)
  assert.equal(sample(second, 'warbler_refusals_total{reason="subscribe_denied"}'), 1)
  assert.ok(sample(second, 'warbler_bytes_received_total{}') > sample(first, 'warbler_bytes_received_total{}'))
  assert.ok(sample(second, 'warbler_publish_dropped_total{}') >= 1)

  // Counters never go down between scrapes; the maximum stays when clients leave.
  const gone = new Promise<void>((resolve) => node.broker.once('clientDisconnect', () => resolve()))
  await alice.endAsync()
  await gone
  const third = await scrape(node.httpUrl)
  assert.equal(sample(third, 'warbler_clients_connected{}'), 0)
  assert.equal(sample(third, 'warbler_clients_maximum{}'), 1)
  for (const [name, f] of second) {
    if (f.type !== 'counter') continue
    for (const [series, v] of f.samples) assert.ok((third.get(name)?.samples.get(series) ?? -1) >= v, `${series} went down`)
  }
})

test('/healthz and /readyz answer 200 when up; unknown paths and methods are refused', { timeout: 20_000 }, async (t) => {
  const node = await startNode([], { users: USERS })
  t.after(() => node.close())
  for (const p of ['/healthz', '/readyz', '/readyz?verbose=1']) {
    const res = await fetch(`${node.httpUrl}${p}`)
    assert.equal(res.status, 200, p)
    await res.text()
  }
  // `/` is the web app (test/web); other paths are refused.
  for (const p of ['/index.html', '/metricsx', '/healthz/x']) {
    const res = await fetch(`${node.httpUrl}${p}`)
    assert.equal(res.status, 404, p)
    await res.text()
  }
  const post = await fetch(`${node.httpUrl}/metrics`, { method: 'POST' })
  assert.notEqual(post.status, 200)
  await post.text()
})

test('createHttpServer: /readyz follows the readiness check (503 while starting or stopping), /healthz does not', { timeout: 20_000 }, async (t) => {
  let ready = false
  const registry = new Registry()
  const server = createHttpServer({ registry, ready: () => ready })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  t.after(() => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections() }))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const status = async (p: string): Promise<number> => {
    const res = await fetch(url + p)
    await res.text()
    return res.status
  }
  assert.equal(await status('/readyz'), 503)
  assert.equal(await status('/healthz'), 200)
  ready = true
  assert.equal(await status('/readyz'), 200)
  ready = false
  assert.equal(await status('/readyz'), 503)
  assert.equal(await status('/metrics'), 200)
})
