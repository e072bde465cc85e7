/* eslint-disable max-lines -- the scenarios of one feature, kept side by side with their shared setup */
/**
 * The deploy files, checked by the real tools where this machine has them:
 * promtool (config, rules and rule unit tests), a real Prometheus evaluating
 * the alert rules and every dashboard query against a running node and a
 * real Redis exporter, haproxy -c and a real HAProxy in front of two nodes,
 * systemd-analyze verify and security on the units as install.sh places them
 * in a temp root, bash -n and shellcheck on the scripts, install.sh's dry run
 * and its idempotent re-run, the memory budget, the backup script against a
 * live data dir, docker-compose's schema check of the compose file, and the
 * Dockerfile statically (no Docker engine here: it cannot be built).
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process'
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { readMetricsToken, resolveConfig } from '../../shared/config.js'
import { startHaproxy } from '../helpers/haproxy.js'
import { freePort, waitForPort } from '../helpers/ports.js'
import { startRedis } from '../helpers/redis.js'
import net from 'node:net'
import { MqttClient } from 'mqtt'
import { connectedClients } from '../../broker/aedes-internals.js'
import { remoteAddress } from '../../broker/session.js'
import { CLI, connect, startNode, tempDir, type TestNode } from '../helpers/test-node.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const DEPLOY = path.join(ROOT, 'deploy')
const PI = path.join(DEPLOY, 'pi')
const COMPOSE = path.join(DEPLOY, 'compose')
const UNITS = ['warbler.service', 'warbler-bridge.service', 'warbler-backup.service', 'warbler-backup.timer']
const SERVICES = UNITS.filter((u) => u.endsWith('.service'))

const read = (...p: string[]): string => readFileSync(path.join(...p), 'utf8')

/** Fail (never skip) with the apt line when a program the check needs is missing. */
function need (bin: string, pkg: string): void {
  const r = spawnSync('sh', ['-c', `command -v ${bin}`])
  assert.equal(r.status, 0, `${bin} is not installed; install it with: sudo apt-get install -y ${pkg}`)
}

function run (cmd: string, args: string[], opts: { cwd?: string, env?: NodeJS.ProcessEnv, input?: string } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, input: opts.input, timeout: 120_000 })
}

function ok (r: SpawnSyncReturns<string>, what: string): string {
  assert.equal(r.status, 0, `${what} failed (exit ${String(r.status)}):\n${r.stdout}\n${r.stderr}`)
  return r.stdout
}

/** A YAML file as plain data, through Debian's python3-yaml (promtool and haproxy do not print what they parsed). */
// Parsed YAML is free-form: each caller says which fields it reads.
function yaml (file: string): unknown {
  const r = run('/usr/bin/python3', ['-c', 'import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))', file])
  assert.equal(r.status, 0, `cannot parse ${file} as YAML (needs: sudo apt-get install -y python3-yaml):\n${r.stderr}`)
  return JSON.parse(r.stdout) as unknown
}

function budget (...args: string[]): Record<string, number> {
  const out = ok(run(path.join(PI, 'memory-budget.sh'), args), `memory-budget.sh ${args.join(' ')}`)
  return Object.fromEntries(out.trim().split('\n').map((l) => { const [k, v] = l.split('='); return [k as string, Number(v)] }))
}

// ---------------------------------------------------------------------------
// PromQL: the metric names an expression uses.

const PROMQL_KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'bool', 'and', 'or', 'unless', 'inf', 'nan'])

function metricNames (expr: string): string[] {
  let e = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""') // strings
  e = e.replace(/\{[^}]*\}/g, ' ') // label matchers (and Grafana's $variables in them)
  e = e.replace(/\[[^\]]*\]/g, ' ') // range and subquery durations
  e = e.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ') // label lists
  const names: string[] = []
  for (const m of e.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const word = m[0]
    const at = m.index ?? 0
    if (at > 0 && /[0-9.$]/.test(e[at - 1] as string)) continue // 1e3, 5m after offset, $var
    if (e.slice(at + word.length).trimStart().startsWith('(')) continue // a function or aggregation
    if (PROMQL_KEYWORDS.has(word.toLowerCase())) continue
    names.push(word)
  }
  return [...new Set(names)]
}

test('the PromQL name extraction finds metric names and nothing else', () => {
  assert.deepEqual(metricNames('histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{x="1,2"}[5m]))) > 0.25'), ['a_bucket'])
  assert.deepEqual(metricNames('b > on() group_left() (0.9 * rec:budget_bytes) unless c offset 1h'), ['b', 'rec:budget_bytes', 'c'])
  assert.deepEqual(metricNames('sum(rate(d{instance=~"$instance"}[$__rate_interval])) / 1e3'), ['d'])
})

/** Every metric name a Warbler node exposes (histograms with their series suffixes). */
async function warblerNames (node: TestNode): Promise<Set<string>> {
  const text = await (await fetch(`${node.httpUrl}/metrics`)).text()
  const names = new Set<string>()
  for (const m of text.matchAll(/^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)$/gm)) {
    const [, name, type] = m as unknown as [string, string, string]
    names.add(name)
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s)
    if (type === 'summary') for (const s of ['_sum', '_count']) names.add(name + s)
  }
  for (const m of text.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/gm)) names.add(m[1] as string)
  return names
}

interface Exporter { port: number, stop: () => Promise<void> }

/** Debian's prometheus-redis-exporter against a real redis-server. */
async function startRedisExporter (redisUrl: string): Promise<Exporter> {
  need('prometheus-redis-exporter', 'prometheus-redis-exporter')
  const port = await freePort()
  const child = spawn('prometheus-redis-exporter', ['-redis.addr', redisUrl, '-web.listen-address', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] })
  child.stderr?.resume()
  await waitForPort(port)
  return { port, stop: async () => { await stopChild(child) } }
}

async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const done = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  await done
}

interface Rule { alert?: string, record?: string, expr: string, labels?: Record<string, string>, annotations?: Record<string, string> }
const alertRules = (): Rule[] => (yaml(path.join(COMPOSE, 'prometheus', 'alerts.yml')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap((g) => g.rules)

interface Panel { type: string, title: string, targets?: Array<{ expr: string }>, panels?: Panel[] }
interface Dashboard { panels: Panel[], templating: { list: Array<{ name: string, query: { query: string } | string }> } }
const dashboard = (): Dashboard => JSON.parse(read(COMPOSE, 'grafana', 'dashboards', 'warbler.json')) as Dashboard
const dashboardExprs = (): Array<{ title: string, expr: string }> =>
  dashboard().panels.flatMap((p) => [p, ...(p.panels ?? [])]).flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr })))
/** Grafana's variables, as the dashboard's defaults expand them. */
const expand = (expr: string): string => expr.replaceAll('$__rate_interval', '1m').replaceAll('$__interval', '15s').replaceAll('$instance', '.*')

// ---------------------------------------------------------------------------
// Prometheus

test('promtool: the Prometheus config and its alert rules are valid', () => {
  need('promtool', 'prometheus')
  ok(run('promtool', ['check', 'config', path.join(COMPOSE, 'prometheus', 'prometheus.yml')]), 'promtool check config')
  ok(run('promtool', ['check', 'rules', path.join(COMPOSE, 'prometheus', 'alerts.yml')]), 'promtool check rules')
})

test('promtool test rules: the alerts fire on synthetic series as intended', () => {
  need('promtool', 'prometheus')
  const dir = tempDir('warbler-promtool-')
  try {
    cpSync(path.join(COMPOSE, 'prometheus', 'alerts.yml'), path.join(dir, 'alerts.yml'))
    cpSync(path.join(ROOT, 'test', 'deploy', 'alerts.test.yml'), path.join(dir, 'alerts.test.yml'))
    ok(run('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: dir }), 'promtool test rules')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('every rule has a summary and a description, and every alert a severity', () => {
  for (const r of alertRules()) {
    if (r.record !== undefined) continue
    assert.ok(r.annotations?.summary !== undefined && r.annotations.summary !== '', `${r.alert ?? '?'}: summary`)
    assert.ok(r.annotations?.description !== undefined && r.annotations.description.length > 40, `${r.alert ?? '?'}: description`)
    assert.match(r.labels?.severity ?? '', /^(warning|critical)$/, `${r.alert ?? '?'}: severity`)
  }
  const names = new Set(alertRules().map((r) => r.alert))
  for (const a of ['WarblerDown', 'WarblerMemoryNearBudget', 'WarblerRefusalsRising', 'WarblerStoreSlow', 'WarblerRedisDown']) assert.ok(names.has(a), `alert ${a}`)
})

test('the dashboard and the alert rules use only metrics that a real node and the Redis exporter expose', async (t) => {
  // With --redis, as in the compose stack: the node then exports warbler_redis_connected.
  const redis = await startRedis()
  t.after(() => redis.stop())
  const node = await startNode(['--dev', '--redis', redis.url])
  t.after(() => node.close())
  const exporter = await startRedisExporter(redis.url)
  t.after(() => exporter.stop())

  const warbler = await warblerNames(node)
  const redisText = await (await fetch(`http://127.0.0.1:${exporter.port}/metrics`)).text()
  const redisNames = new Set([...redisText.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/gm)].map((m) => m[1] as string))
  const rules = alertRules()
  const recorded = new Set(rules.flatMap((r) => r.record !== undefined ? [r.record] : []))
  const known = (name: string): boolean => name === 'up' || recorded.has(name) || (name.startsWith('warbler_') ? warbler.has(name) : redisNames.has(name))

  const uses: Array<{ where: string, expr: string }> = [
    ...rules.map((r) => ({ where: `rule ${r.alert ?? r.record ?? '?'}`, expr: r.expr })),
    ...dashboardExprs().map((d) => ({ where: `panel "${d.title}"`, expr: d.expr }))
  ]
  assert.ok(uses.length > 20)
  for (const u of uses) {
    const names = metricNames(u.expr)
    if (!u.where.startsWith('rule warbler:')) assert.ok(names.length > 0, `${u.where}: no metric in ${u.expr}`) // a recorded constant may have none
    for (const n of names) assert.ok(known(n), `${u.where}: ${n} is not exposed (expr: ${u.expr})`)
  }
  for (const v of dashboard().templating.list) {
    const q = typeof v.query === 'string' ? v.query : v.query.query
    const m = /^label_values\((\w+),\s*(\w+)\)$/.exec(q)
    assert.ok(m !== null && warbler.has(m[1] as string), `variable ${v.name}: ${q}`)
  }
  // The panels an operator needs are there.
  const all = dashboardExprs().map((d) => d.expr).join('\n')
  for (const n of ['warbler_clients_connected', 'warbler_messages_received_total', 'warbler_messages_sent_total', 'warbler_refusals_total', 'warbler_store_latency_seconds_bucket', 'warbler_store_batch_size_bucket', 'warbler_nodejs_heap_size_used_bytes', 'warbler_process_resident_memory_bytes', 'warbler_backpressure_waits_total']) {
    assert.ok(all.includes(n), `the dashboard shows ${n}`)
  }
})

/** Prometheus' HTTP API answers this test reads: an instant query, and the rules. */
interface PromQuery { status: string, data: { result: Array<{ metric: Record<string, string>, value: [number, string] }> } }
interface PromRules { data: { groups: Array<{ rules: Array<{ name: string, health: string, lastError?: string, state?: string, lastEvaluation: string }> }> } }

test('a real Prometheus scrapes a node, evaluates every alert rule without error and answers every dashboard query', async (t) => {
  need('prometheus', 'prometheus')
  // With --redis, as in the compose stack: the node then exports warbler_redis_connected.
  const redis = await startRedis()
  t.after(() => redis.stop())
  const node = await startNode(['--dev', '--redis', redis.url])
  t.after(() => node.close())
  const exporter = await startRedisExporter(redis.url)
  t.after(() => exporter.stop())

  const dir = tempDir('warbler-prometheus-')
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  cpSync(path.join(COMPOSE, 'prometheus', 'alerts.yml'), path.join(dir, 'alerts.yml'))
  // prometheus.yml's own targets are Docker names; the same rules, with loopback targets (JSON is YAML).
  writeFileSync(path.join(dir, 'prometheus.yml'), JSON.stringify({
    global: { scrape_interval: '1s', evaluation_interval: '1s' },
    rule_files: ['alerts.yml'],
    scrape_configs: [
      { job_name: 'warbler', static_configs: [{ targets: [`127.0.0.1:${node.ports.http ?? 0}`] }] },
      { job_name: 'redis', static_configs: [{ targets: [`127.0.0.1:${exporter.port}`] }] }
    ]
  }))
  const port = await freePort()
  const prom = spawn('prometheus', [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  prom.stderr?.on('data', (d: Buffer) => { log += d.toString() })
  t.after(() => stopChild(prom))
  // Prometheus' JSON answers: the caller says which one it asked for.
  const api = async <T>(p: string): Promise<T> => {
    const res = await fetch(`http://127.0.0.1:${port}${p}`)
    return await res.json() as T
  }
  const until = async (what: string, fn: () => Promise<boolean>, ms = 30_000): Promise<void> => {
    const end = Date.now() + ms
    for (;;) {
      try { if (await fn()) return } catch { /* not up yet */ }
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; prometheus log:\n${log.slice(-3000)}`)
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
  }
  const query = async (q: string): Promise<PromQuery> => await api<PromQuery>(`/api/v1/query?query=${encodeURIComponent(q)}`)
  await until('both targets up', async () => {
    const r = await query('up')
    const up = (r.data?.result ?? []) as Array<{ metric: { job: string }, value: [number, string] }>
    return up.length === 2 && up.every((s) => s.value[1] === '1')
  })
  // Some traffic, so that rates and the store histograms have samples.
  const c = await connect(node.mqttUrl, { clientId: 'deploy-check' })
  for (let i = 0; i < 20; i++) await c.publishAsync('hello/deploy', `m${i}`, { qos: 1 })
  await c.endAsync()
  await new Promise((resolve) => setTimeout(resolve, 3000))

  for (const d of dashboardExprs()) {
    const r = await query(expand(d.expr))
    assert.equal(r.status, 'success', `panel "${d.title}": ${d.expr}: ${JSON.stringify(r)}`)
  }
  const connected = await query('sum(warbler_clients_connected)')
  assert.equal(connected.data.result.length, 1)
  assert.equal((await query('redis_up')).data.result[0]?.value[1], '1', 'the Redis exporter reaches Redis')

  await until('every rule evaluated', async () => {
    const r = await api<PromRules>('/api/v1/rules')
    const rules = r.data.groups.flatMap((g) => g.rules)
    return rules.length === alertRules().length && rules.every((x) => !x.lastEvaluation.startsWith('0001'))
  })
  const groups = (await api<PromRules>('/api/v1/rules')).data.groups
  for (const rule of groups.flatMap((g) => g.rules)) {
    assert.equal(rule.health, 'ok', `rule ${rule.name}: ${rule.lastError ?? ''}`)
    // A healthy test node with a reachable Redis fires nothing.
    assert.notEqual(rule.state, 'firing', `alert ${rule.name} fires on a healthy node`)
  }
  const budgetNow = await query('warbler:memory_budget_bytes')
  assert.equal(Number(budgetNow.data.result[0]?.value[1]), 2272 * 1024 * 1024)
})

test('a real Prometheus scrapes a node whose /metrics needs a token, with credentials_file as on the Pi; without it the target is down with 401', async (t) => {
  need('prometheus', 'prometheus')
  need('promtool', 'prometheus')
  const dir = tempDir('warbler-prometheus-token-')
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  // As install.sh writes it: 64 hex digits, no newline.
  const tokenFile = path.join(dir, 'metrics-token')
  writeFileSync(tokenFile, 'a'.repeat(32) + '0123456789abcdef0123456789abcdef', { mode: 0o600 })
  const node = await startNode(['--dev', '--metrics-token-file', tokenFile])
  t.after(() => node.close())
  const target = { targets: [`127.0.0.1:${node.ports.http ?? 0}`] }
  writeFileSync(path.join(dir, 'prometheus.yml'), JSON.stringify({
    global: { scrape_interval: '1s' },
    scrape_configs: [
      { job_name: 'warbler', authorization: { credentials_file: tokenFile }, static_configs: [target] },
      { job_name: 'no-token', static_configs: [target] }
    ]
  }))
  ok(run('promtool', ['check', 'config', path.join(dir, 'prometheus.yml')]), 'promtool check config')
  const port = await freePort()
  const prom = spawn('prometheus', [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  prom.stderr?.on('data', (d: Buffer) => { log += d.toString() })
  t.after(() => stopChild(prom))
  interface Target { labels: { job: string }, health: string, lastError: string }
  let targets: Target[] = []
  const end = Date.now() + 30_000
  for (;;) {
    try {
      targets = (await (await fetch(`http://127.0.0.1:${port}/api/v1/targets`)).json() as { data: { activeTargets: Target[] } }).data.activeTargets
    } catch { /* not up yet */ }
    if (targets.length === 2 && targets.every((x) => x.health !== 'unknown')) break
    if (Date.now() > end) throw new Error(`targets not scraped: ${JSON.stringify(targets)}\n${log.slice(-3000)}`)
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
  const byJob = new Map(targets.map((x) => [x.labels.job, x]))
  assert.equal(byJob.get('warbler')?.health, 'up', JSON.stringify(byJob.get('warbler')))
  assert.equal(byJob.get('no-token')?.health, 'down')
  assert.match(byJob.get('no-token')?.lastError ?? '', /401/)
})

// ---------------------------------------------------------------------------
// HAProxy

function haproxyCheck (file: string): void {
  need('haproxy', 'haproxy')
  const r = run('haproxy', ['-c', '-f', file])
  assert.equal(r.status, 0, `haproxy -c -f ${file}:\n${r.stdout}\n${r.stderr}`)
  // Only the node names, which do not resolve here, may be warned about.
  const warnings = (r.stdout + r.stderr).split('\n').filter((l) => /WARNING|ALERT/.test(l) && !/could not resolve address/.test(l))
  assert.deepEqual(warnings, [], `haproxy -c -f ${file} warns`)
}

test('haproxy -c: both HAProxy configs are valid', () => {
  haproxyCheck(path.join(DEPLOY, 'haproxy', 'haproxy.cfg'))
  haproxyCheck(path.join(COMPOSE, 'haproxy', 'haproxy.cfg'))
  const cfg = read(DEPLOY, 'haproxy', 'haproxy.cfg')
  assert.match(cfg, /timeout client 15m/)
  assert.match(cfg, /timeout server 15m/)
  assert.match(cfg, /timeout tunnel/)
  assert.match(cfg, /http-check send meth GET uri \/readyz/)
})

async function haproxyStatus (statsPort: number): Promise<Map<string, string>> {
  const csv = await (await fetch(`http://127.0.0.1:${statsPort}/stats;csv`)).text()
  const lines = csv.trim().split('\n')
  const head = (lines[0] as string).replace(/^# /, '').split(',')
  const col = head.indexOf('status')
  return new Map(lines.slice(1).map((l) => { const f = l.split(','); return [`${f[0] as string}/${f[1] as string}`, f[col] as string] }))
}

const clientsOf = async (n: TestNode): Promise<number> => {
  const m = /^warbler_clients_connected (\d+)/m.exec(await (await fetch(`${n.httpUrl}/metrics`)).text())
  return Number(m?.[1] ?? NaN)
}

test('HAProxy with deploy/haproxy/haproxy.cfg balances MQTT and WebSocket over two real nodes and drops a stopped one', async (t) => {
  need('haproxy', 'haproxy')
  // The nodes read HAProxy's PROXY protocol header (send-proxy-v2 in the file).
  const a = await startNode(['--dev', '--proxy-protocol'])
  t.after(() => a.close())
  const b = await startNode(['--dev', '--proxy-protocol'])
  t.after(() => b.close())
  const [lbMqtt, lbWs, stats, dead] = [await freePort(), await freePort(), await freePort(), await freePort()]
  let cfg = read(DEPLOY, 'haproxy', 'haproxy.cfg')
  const sub = (from: string | RegExp, to: string): void => {
    const next = cfg.replace(from, to)
    assert.notEqual(next, cfg, `haproxy.cfg no longer has ${String(from)}`)
    cfg = next
  }
  // The same file with loopback addresses, and limits this sandbox allows
  // (its hard limit on open files is lower than the config's fd-hard-limit).
  sub('bind :1883', `bind 127.0.0.1:${lbMqtt}`)
  sub('bind :8083', `bind 127.0.0.1:${lbWs}`)
  sub('bind 127.0.0.1:8404', `bind 127.0.0.1:${stats}`)
  sub(/maxconn 100000/, 'maxconn 2000')
  sub(/fd-hard-limit \d+/, 'fd-hard-limit 8000')
  sub(/maxconn 90000/, 'maxconn 1000')
  sub(/maxconn 10000/, 'maxconn 500')
  sub('warbler1:1883 check port 8080', `127.0.0.1:${a.ports.mqtt ?? 0} check port ${a.ports.http ?? 0}`)
  sub('warbler2:1883 check port 8080', `127.0.0.1:${b.ports.mqtt ?? 0} check port ${b.ports.http ?? 0}`)
  sub('warbler3:1883 check port 8080', `127.0.0.1:${dead} check port ${dead}`)
  sub('warbler1:8083 check port 8080', `127.0.0.1:${a.ports.ws ?? 0} check port ${a.ports.http ?? 0}`)
  sub('warbler2:8083 check port 8080', `127.0.0.1:${b.ports.ws ?? 0} check port ${b.ports.http ?? 0}`)
  sub('warbler3:8083 check port 8080', `127.0.0.1:${dead} check port ${dead}`)
  const hap = startHaproxy(cfg)
  t.after(hap.stop)
  await waitForPort(stats)

  const waitStatus = async (want: Record<string, string>): Promise<void> => {
    const end = Date.now() + 20_000
    for (;;) {
      const s = await haproxyStatus(stats)
      if (Object.entries(want).every(([k, v]) => s.get(k) === v)) return
      if (Date.now() > end) throw new Error(`HAProxy status ${JSON.stringify(Object.fromEntries(s))}, wanted ${JSON.stringify(want)}\n${hap.log()}`)
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  }
  // The node with nothing on its HTTP port fails its /readyz check.
  await waitStatus({ 'warbler_mqtt/node1': 'UP', 'warbler_mqtt/node2': 'UP', 'warbler_mqtt/node3': 'DOWN', 'warbler_ws/node1': 'UP', 'warbler_ws/node2': 'UP' })

  const clients: MqttClient[] = []
  for (let i = 0; i < 4; i++) clients.push(await connect(`mqtt://127.0.0.1:${lbMqtt}`, { clientId: `lb-${i}` }))
  clients.push(await connect(`ws://127.0.0.1:${lbWs}/mqtt`, { clientId: 'lb-ws' }))
  t.after(() => Promise.all(clients.map(async (c) => await c.endAsync(true))))
  // A client from 127.0.0.7 is seen as 127.0.0.7 by its node, not as HAProxy (127.0.0.1).
  const from7 = new MqttClient(() => net.connect({ port: lbMqtt, host: '127.0.0.1', localAddress: '127.0.0.7' }), { protocolVersion: 4, reconnectPeriod: 0, clientId: 'lb-from7' })
  clients.push(from7)
  await new Promise<void>((resolve, reject) => { from7.once('connect', () => resolve()); from7.once('error', reject) })
  const held = [a, b].map((n) => connectedClients(n.broker)['lb-from7']).find((c) => c !== undefined)
  assert.ok(held !== undefined, 'lb-from7 reached a node')
  assert.equal(remoteAddress(held), '127.0.0.7')
  const [na, nb] = [await clientsOf(a), await clientsOf(b)]
  assert.equal(na + nb, 6, 'every client reached a node')
  assert.ok(na > 0 && nb > 0, `leastconn spreads clients over both nodes (${na} and ${nb})`)

  // A message through the balancer reaches a subscriber on the same node.
  const sub1 = await connect(`mqtt://127.0.0.1:${lbMqtt}`, { clientId: 'lb-sub' })
  clients.push(sub1)
  await sub1.subscribeAsync('lb/t', { qos: 1 })
  const got = new Promise<string>((resolve) => sub1.once('message', (_t, p) => resolve(p.toString())))
  await sub1.publishAsync('lb/t', 'through haproxy', { qos: 1 })
  assert.equal(await got, 'through haproxy')

  // Node a stops: new clients still get in (retries and redispatch), and its check goes DOWN.
  await a.close()
  const late = await connect(`mqtt://127.0.0.1:${lbMqtt}`, { clientId: 'lb-late' })
  clients.push(late)
  await waitStatus({ 'warbler_mqtt/node1': 'DOWN', 'warbler_mqtt/node2': 'UP' })
  const again = await connect(`mqtt://127.0.0.1:${lbMqtt}`, { clientId: 'lb-again' })
  clients.push(again)
  assert.ok(await clientsOf(b) >= 2, 'the clients after the stop are on the remaining node')
})

// ---------------------------------------------------------------------------
// Raspberry Pi: scripts, install into a temp root, units

test('bash -n and shellcheck on the Pi scripts', (t) => {
  const scripts = ['install.sh', 'memory-budget.sh', 'warbler-backup.sh'].map((s) => path.join(PI, s))
  for (const s of scripts) {
    ok(run('bash', ['-n', s]), `bash -n ${s}`)
    assert.ok((statSync(s).mode & 0o111) !== 0, `${s} is executable`)
  }
  if (spawnSync('sh', ['-c', 'command -v shellcheck']).status !== 0) {
    t.skip('shellcheck is not installed (sudo apt-get install -y shellcheck)')
    return
  }
  ok(run('shellcheck', scripts), 'shellcheck')
})

test('install.sh --dry-run prints the whole plan and changes nothing', () => {
  const dir = tempDir('warbler-dry-')
  try {
    const out = ok(run(path.join(PI, 'install.sh'), ['--dry-run', '--root', dir, '--with-redis', '--separate-bridge', '--ram-mb', '4096']), 'install.sh --dry-run --root')
    assert.deepEqual(readdirSync(dir), [], 'a dry run writes nothing')
    for (const s of ['npm ci', 'npm prune --omit=dev', 'warbler.service.d/10-install.conf', '99-warbler.conf', 'MemoryMax=2688M', 'max-old-space-size=1600', 'maxmemory 512mb', '(a secret, not shown)', '/etc/warbler/metrics-token (0600)']) {
      assert.ok(out.includes(s), `the plan mentions ${s}`)
    }
    // On the real root: the system steps are printed, not run.
    const sys = ok(run(path.join(PI, 'install.sh'), ['--dry-run', '--ram-mb', '4096']), 'install.sh --dry-run')
    for (const s of ['+ env DEBIAN_FRONTEND=noninteractive apt-get install', 'build-essential python3', '+ systemctl enable warbler.service warbler-backup.timer', '+ systemctl restart systemd-sysctl.service']) {
      assert.ok(sys.includes(s), `the system plan has: ${s}\n${sys}`)
    }
    assert.ok(/\+ useradd --system .* warbler|user warbler exists/.test(sys), 'the plan creates the warbler user')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

function installInto (dir: string, ...args: string[]): string {
  return ok(run(path.join(PI, 'install.sh'), ['--root', dir, '--no-build', '--ram-mb', '4096', ...args]), `install.sh --root ${args.join(' ')}`)
}

/** systemd's own units, so that verify can resolve the targets the Warbler units name. */
function withSystemdUnits (dir: string): void {
  for (const d of ['/usr/lib/systemd/system', '/lib/systemd/system']) {
    if (existsSync(d)) { cpSync(d, path.join(dir, d), { recursive: true, verbatimSymlinks: true }); return }
  }
  assert.fail('no systemd unit directory on this machine (sudo apt-get install -y systemd)')
}

test('install.sh into a temp root: files, modes, budget drop-ins, idempotent re-run that keeps the config', () => {
  const dir = tempDir('warbler-root-')
  try {
    installInto(dir, '--with-redis', '--separate-bridge')
    const mode = (p: string): string => (statSync(path.join(dir, p)).mode & 0o7777).toString(8)
    assert.equal(mode('var/lib/warbler'), '700')
    assert.equal(mode('var/backups/warbler'), '700')
    assert.equal(mode('etc/warbler'), '750')
    assert.equal(mode('etc/warbler/warbler.json'), '640')
    assert.equal(mode('etc/warbler/bridge-password'), '600')
    assert.equal(mode('usr/local/bin/warbler'), '755')
    assert.equal(mode('usr/local/bin/warbler-backup'), '755')
    for (const u of UNITS) assert.ok(existsSync(path.join(dir, 'etc/systemd/system', u)), u)
    assert.ok(existsSync(path.join(dir, 'etc/sysctl.d/99-warbler.conf')))
    assert.ok(existsSync(path.join(dir, 'etc/security/limits.d/warbler.conf')))
    const b = budget('--ram-mb', '4096', '--redis', '--bridge')
    const dropIn = read(dir, 'etc/systemd/system/warbler.service.d/10-install.conf')
    assert.match(dropIn, new RegExp(`^MemoryMax=${b.BROKER_MEMORY_MAX_MB}M$`, 'm'))
    assert.match(dropIn, new RegExp(`^Environment=NODE_OPTIONS=--max-old-space-size=${b.BROKER_HEAP_MB}$`, 'm'))
    assert.match(dropIn, /^Environment=WARBLER_BRIDGE=off$/m)
    assert.match(dropIn, /^Environment=WARBLER_REDIS=redis:\/\/127\.0\.0\.1:6379\/0$/m)
    assert.match(read(dir, 'etc/redis/warbler.conf'), new RegExp(`^maxmemory ${b.REDIS_MAXMEMORY_MB}mb$`, 'm'))
    assert.match(read(dir, 'etc/warbler/bridge-password'), /^[0-9a-f]{48}$/)
    // The metrics token, root only (the unit hands it over as a credential), and one the broker accepts.
    assert.equal(mode('etc/warbler/metrics-token'), '600')
    assert.match(read(dir, 'etc/warbler/metrics-token'), /^[0-9a-f]{64}$/)
    assert.equal(readMetricsToken(path.join(dir, 'etc/warbler/metrics-token')), read(dir, 'etc/warbler/metrics-token'))
    assert.match(read(dir, 'usr/local/bin/warbler'), /^exec \S+ \/opt\/warbler\/dist\/cli\/warbler\.js "\$@"$/m)

    // Re-run with other options: config and password kept, generated files follow the options.
    writeFileSync(path.join(dir, 'etc/warbler/warbler.json'), '{"logLevel":"debug"}\n')
    const password = read(dir, 'etc/warbler/bridge-password')
    const metricsToken = read(dir, 'etc/warbler/metrics-token')
    const out = installInto(dir)
    assert.match(out, /kept .*warbler\.json \(exists\)/)
    assert.match(out, /kept .*metrics-token \(exists\)/)
    assert.equal(read(dir, 'etc/warbler/metrics-token'), metricsToken, 'the token Prometheus holds stays valid')
    assert.equal(read(dir, 'etc/warbler/warbler.json'), '{"logLevel":"debug"}\n')
    assert.equal(read(dir, 'etc/warbler/bridge-password'), password)
    const plain = read(dir, 'etc/systemd/system/warbler.service.d/10-install.conf')
    assert.doesNotMatch(plain, /WARBLER_BRIDGE|WARBLER_REDIS/)
    assert.match(plain, new RegExp(`^MemoryMax=${budget('--ram-mb', '4096').BROKER_MEMORY_MAX_MB}M$`, 'm'))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('systemd-analyze verify and security: the units as install.sh places them', () => {
  need('systemd-analyze', 'systemd')
  const dir = tempDir('warbler-units-')
  try {
    installInto(dir, '--with-redis', '--separate-bridge')
    withSystemdUnits(dir)
    for (const u of UNITS) {
      // verify exits 0 even for unknown keys and bad values, which it only
      // prints: any output is a failure.
      const r = run('systemd-analyze', ['verify', `--root=${dir}`, `/etc/systemd/system/${u}`], { cwd: '/' })
      assert.equal(r.status, 0, `systemd-analyze verify ${u}:\n${r.stderr}`)
      assert.equal((r.stdout + r.stderr).trim(), '', `systemd-analyze verify ${u} says:\n${r.stdout}${r.stderr}`)
    }
    for (const u of SERVICES) {
      // Exposure level at most 2.0 of 10 ("OK").
      const r = run('systemd-analyze', ['security', '--offline=yes', `--root=${dir}`, '--threshold=20', `/etc/systemd/system/${u}`], { cwd: '/' })
      assert.equal(r.status, 0, `systemd-analyze security ${u}:\n${r.stdout.split('\n').slice(-3).join('\n')}${r.stderr}`)
    }
    // And verify does catch a broken unit (this check is not vacuous).
    writeFileSync(path.join(dir, 'etc/systemd/system/warbler.service'), read(PI, 'systemd', 'warbler.service').replace('Restart=on-failure', 'Restart=sometimes'))
    const bad = run('systemd-analyze', ['verify', `--root=${dir}`, '/etc/systemd/system/warbler.service'], { cwd: '/' })
    assert.match(bad.stdout + bad.stderr, /restart specifier/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('the units: hardening, graceful stop, limits and the 4 GB budget as defaults', () => {
  const unit = read(PI, 'systemd', 'warbler.service')
  for (const line of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes', 'ReadWritePaths=/var/lib/warbler', 'CapabilityBoundingSet=', 'Restart=on-failure', 'StateDirectoryMode=0700']) {
    assert.match(unit, new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'), line)
  }
  assert.doesNotMatch(unit, /^MemoryDenyWriteExecute=yes/m, 'V8 needs W+X memory')
  assert.ok(Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)?.[1]) >= 30, 'time for a graceful stop')
  assert.ok(Number(/^LimitNOFILE=(\d+)$/m.exec(unit)?.[1]) > 50_000 * 2, 'descriptors for maxConnections')
  const b = budget('--ram-mb', '4096', '--redis')
  assert.match(unit, new RegExp(`^MemoryMax=${b.BROKER_MEMORY_MAX_MB}M$`, 'm'))
  assert.match(unit, new RegExp(`^MemoryHigh=${b.BROKER_MEMORY_HIGH_MB}M$`, 'm'))
  assert.match(unit, new RegExp(`^Environment=NODE_OPTIONS=--max-old-space-size=${b.BROKER_HEAP_MB}$`, 'm'))
  assert.match(unit, /^Environment=WARBLER_WORKERS=1$/m, 'one broker process until cluster mode is budgeted')
  // /metrics behind the token install.sh writes, handed over as a credential (never in the command line).
  assert.match(unit, /^LoadCredential=metrics-token:\/etc\/warbler\/metrics-token$/m)
  assert.match(unit, /^Environment=WARBLER_METRICS_TOKEN_FILE=%d\/metrics-token$/m)
  assert.doesNotMatch(unit, /^Environment=WARBLER_HTTP_HOST=/m, 'HAProxy on another board must reach /readyz')
  const timer = read(PI, 'systemd', 'warbler-backup.timer')
  assert.match(timer, /^OnCalendar=/m)
  assert.match(timer, /^Persistent=true$/m)
})

test('memory-budget.sh: the parts add up on every board size, and the heap fits the broker', () => {
  const cases: Array<[number, string[]]> = [[1024, []], [1024, ['--redis']]]
  for (const ram of [2048, 3796, 4096, 8192, 16384]) {
    for (const flags of [[], ['--redis'], ['--redis', '--bridge'], ['--redis', '--monitoring'], ['--redis', '--bridge', '--monitoring']]) cases.push([ram, flags])
  }
  for (const [ram, flags] of cases) {
    {
      const b = budget('--ram-mb', String(ram), ...flags)
      const sum = (b.OS_RESERVE_MB ?? 0) + (b.REDIS_MEMORY_MAX_MB ?? 0) + (b.BRIDGE_MEMORY_MAX_MB ?? 0) + (b.MONITORING_MB ?? 0) + (b.BROKER_MEMORY_MAX_MB ?? 0)
      assert.equal(sum, ram, `${ram} ${flags.join(' ')}`)
      assert.ok((b.BROKER_HEAP_MB ?? 0) < (b.BROKER_MEMORY_HIGH_MB ?? 0) && (b.BROKER_MEMORY_HIGH_MB ?? 0) < (b.BROKER_MEMORY_MAX_MB ?? 0))
      assert.ok((b.BROKER_HEAP_MB ?? 0) >= 128)
      if (flags.includes('--redis')) assert.ok((b.REDIS_MAXMEMORY_MB ?? 0) >= 64 && (b.REDIS_MAXMEMORY_MB ?? 0) < (b.REDIS_MEMORY_MAX_MB ?? 0))
    }
  }
  assert.notEqual(run(path.join(PI, 'memory-budget.sh'), ['--ram-mb', '512']).status, 0, 'a 512 MB board is refused')
  const tight = run(path.join(PI, 'memory-budget.sh'), ['--ram-mb', '1024', '--redis', '--bridge'])
  assert.notEqual(tight.status, 0, 'too little left for the broker is refused')
  assert.match(tight.stderr, /left for the broker/)
})

test('docs/operations.md has the memory budget table the script prints, and the deploy sections', () => {
  const doc = read(ROOT, 'docs', 'operations.md')
  const table = ok(run(path.join(PI, 'memory-budget.sh'), ['--ram-mb', '4096', '--redis', '--table']), 'memory-budget.sh --table')
  assert.ok(doc.includes(table.trim()), `the docs' budget table is the script's:\n${table}`)
  for (const h of ['## Install on a Raspberry Pi', '## Containers', '## Several nodes behind HAProxy', '## Alerts']) assert.ok(doc.includes(`\n${h}\n`), h)
  for (const r of alertRules()) if (r.alert !== undefined) assert.ok(doc.includes(`\`${r.alert}\``), `alert ${r.alert} is in the docs' table`)
})

test('the config template and the sysctl file', () => {
  const cfg = resolveConfig(['--config', path.join(PI, 'warbler.json')], {})
  assert.equal(cfg.mqttPort, 1883)
  assert.equal(cfg.dev, false)
  const lines = read(PI, '99-warbler.conf').split('\n')
  const keys = new Set<string>()
  for (let i = 0; i < lines.length; i++) {
    const l = (lines[i] as string).trim()
    if (l === '' || l.startsWith('#')) continue
    const m = /^(-?)([a-z0-9_.-]+) = (.+)$/.exec(l)
    assert.ok(m !== null, `99-warbler.conf line ${i + 1}: ${l}`)
    const [, optional, key] = m as unknown as [string, string, string]
    assert.ok(!keys.has(key), `${key} twice`)
    keys.add(key)
    // Each setting is explained: a comment directly above it or above its group.
    let j = i - 1
    while (j >= 0 && /^-?[a-z]/.test(lines[j] as string)) j--
    assert.ok(j >= 0 && (lines[j] as string).startsWith('#'), `${key} has no comment`)
    const proc = path.join('/proc/sys', key.replaceAll('.', '/'))
    if (optional === '') assert.ok(existsSync(proc), `${key} is not a kernel setting (${proc})`)
  }
  for (const k of ['net.core.somaxconn', 'net.ipv4.tcp_max_syn_backlog', 'fs.file-max', 'fs.nr_open', 'net.ipv4.ip_local_port_range', 'net.ipv4.tcp_mem', 'net.ipv4.tcp_rmem', 'net.ipv4.tcp_wmem', 'net.ipv4.tcp_keepalive_time']) {
    assert.ok(keys.has(k), k)
  }
})

test('warbler-backup.sh writes a checked backup of a live node and removes only old ones', async (t) => {
  const node = await startNode([], { users: [{ name: 'alice', password: 'alice-pw-1' }] })
  t.after(() => node.close())
  const dir = tempDir('warbler-backups-')
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const bin = path.join(dir, 'warbler-bin')
  writeFileSync(bin, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)} "$@"\n`)
  chmodSync(bin, 0o755)
  const backups = path.join(dir, 'backups')
  mkdirSync(backups)
  const old = path.join(backups, 'warbler-20200101T000000Z.db')
  const recent = path.join(backups, 'warbler-20200102T000000Z.db')
  writeFileSync(old, 'x')
  writeFileSync(recent, 'x')
  const days = (n: number): Date => new Date(Date.now() - n * 86_400_000)
  utimesSync(old, days(30), days(30))
  utimesSync(recent, days(2), days(2))
  ok(run(path.join(PI, 'warbler-backup.sh'), [], { env: { WARBLER_BIN: bin, WARBLER_DATA_DIR: node.dataDir, WARBLER_BACKUP_DIR: backups, WARBLER_BACKUP_KEEP_DAYS: '14' } }), 'warbler-backup.sh')
  const files = readdirSync(backups).sort()
  assert.ok(!files.includes(path.basename(old)), 'the 30-day-old backup is removed')
  assert.ok(files.includes(path.basename(recent)), 'the 2-day-old backup is kept')
  const made = files.filter((f) => f !== path.basename(recent))
  assert.equal(made.length, 1)
  assert.match(made[0] as string, /^warbler-\d{8}T\d{6}Z\.db$/)
  // The backup is a real Warbler database: restore accepts it into an empty data dir.
  const restoreDir = tempDir('warbler-restore-')
  t.after(() => rmSync(restoreDir, { recursive: true, force: true }))
  ok(run(process.execPath, [CLI, 'restore', path.join(backups, made[0] as string), '--data-dir', restoreDir]), 'warbler restore of the backup')
  const users = ok(run(process.execPath, [CLI, 'user', 'list', '--data-dir', restoreDir]), 'user list')
  assert.match(users, /alice/)
})

// ---------------------------------------------------------------------------
// Containers (no Docker engine here: the compose file is checked by
// docker-compose's schema, the Dockerfile statically)

const dockerfile = (): string => read(COMPOSE, 'Dockerfile')
const appSources = (): string[] => {
  const m = /^APP_SOURCES=\(([^)]*)\)/m.exec(read(PI, 'install.sh'))
  assert.ok(m !== null, 'install.sh has APP_SOURCES=(...)')
  return (m[1] as string).trim().split(/\s+/)
}

test('Dockerfile: multi-stage on node:20-bookworm-slim, sqlite3 from source, non-root, /readyz health check, no arch-specific step', () => {
  // Comments out, continuation lines joined: one instruction a line.
  const code = dockerfile().split('\n').filter((l) => !l.trimStart().startsWith('#')).join('\n').replace(/\\\n\s*/g, ' ')
  const froms = [...code.matchAll(/^FROM (\S+)(?: AS (\w+))?$/gm)]
  assert.equal(froms.length, 2, 'two stages')
  for (const f of froms) assert.equal(f[1], 'node:20-bookworm-slim')
  assert.equal(froms[0]?.[2], 'build')
  const [buildStage, runStage] = code.split(/^FROM .*$/m).slice(1) as [string, string]
  assert.match(buildStage, /build-essential/)
  assert.match(buildStage, /python3/)
  assert.match(buildStage, /npm_config_build_from_source=true/)
  assert.match(buildStage, /npm prune --omit=dev/)
  assert.match(buildStage, /npx tsc -p tsconfig\.json +&& node dist\/cli\/build-info\.js/, 'records what dist/ was built from')
  assert.doesNotMatch(runStage, /build-essential|apt-get install/, 'no compiler in the image that runs')
  const user = /^USER (\S+)$/m.exec(runStage)
  assert.ok(user !== null && user[1] !== 'root' && user[1] !== '0', 'runs as a non-root user')
  assert.match(runStage, /^HEALTHCHECK .*\/readyz/m)
  assert.doesNotMatch(code, /--platform|amd64|x86_64|aarch64|arm64|armv7|https?:\/\/(?!127\.0\.0\.1)/, 'nothing tied to one architecture, nothing downloaded by hand')
  // Every instruction is one Docker knows.
  const known = new Set(['FROM', 'RUN', 'CMD', 'LABEL', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT', 'VOLUME', 'USER', 'WORKDIR', 'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL'])
  const logical = code.split('\n').filter((l) => l.trim() !== '')
  for (const l of logical) assert.ok(known.has((l.trim().split(/\s+/)[0] as string)), `unknown instruction: ${l}`)
  // The sources it copies are install.sh's, they exist, and the ignore file lets them through.
  const copied = [...buildStage.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => (m[1] as string).split(/\s+/))
  assert.deepEqual([...copied].sort(), [...appSources()].sort())
  for (const s of copied) assert.ok(existsSync(path.join(ROOT, s)), `${s} exists`)
  const ignore = read(COMPOSE, 'Dockerfile.dockerignore').split('\n').filter((l) => l.startsWith('!')).map((l) => l.slice(1))
  assert.deepEqual([...ignore].sort(), [...copied].sort())
})

test('the Dockerfile health check command, run for real, passes on a ready node and fails with none', async (t) => {
  const m = /^HEALTHCHECK .*CMD (\[.*\])$/m.exec(dockerfile().replace(/\\\n\s*/g, ''))
  assert.ok(m !== null, 'HEALTHCHECK ... CMD [exec form]')
  const argv = JSON.parse(m[1] as string) as string[]
  assert.equal(argv[0], 'node')
  const node = await startNode(['--dev'])
  t.after(() => node.close())
  // Asynchronously: the node answers from this very process.
  const check = async (port: number): Promise<number | null> => await new Promise((resolve) => {
    const c = spawn(process.execPath, argv.slice(1), { env: { ...process.env, WARBLER_HTTP_PORT: String(port) }, stdio: 'ignore', timeout: 10_000 })
    c.once('exit', (code) => resolve(code))
  })
  assert.equal(await check(node.ports.http ?? 0), 0)
  assert.equal(await check(await freePort()), 1)
})

test('the sources install.sh and the Dockerfile copy are enough to build and run the app', () => {
  const dir = tempDir('warbler-build-')
  try {
    for (const s of appSources()) cpSync(path.join(ROOT, s), path.join(dir, s), { recursive: true })
    // The dependencies as installed here (npm ci is the part that needs the network).
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'))
    for (const p of ['sdk/tsconfig.json', 'tsconfig.json']) ok(run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', p], { cwd: dir }), `tsc -p ${p} in a copy of the sources`)
    // As the Dockerfile does after tsc (install.sh's npm ci runs `npm run build`, which does the same).
    ok(run(process.execPath, [path.join(dir, 'dist', 'cli', 'build-info.js')], { cwd: dir }), 'build-info in the copy')
    const help = ok(run(process.execPath, [path.join(dir, 'dist', 'cli', 'warbler.js'), 'start', '--help'], { cwd: dir }), 'warbler start --help from the copy')
    assert.match(help, /--data-dir/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

/** The fields of docker-compose.yml this test reads: any service's, and those it checks on three of them. */
interface ComposeService { mem_limit?: string, environment?: Record<string, string>, command?: string[], volumes?: string[], profiles?: string[] }
interface Compose {
  services: Record<string, ComposeService> & {
    warbler: ComposeService & { mem_limit: string, environment: Record<string, string> }
    redis: ComposeService & { mem_limit: string, command: string[] }
    bridge: ComposeService & { profiles: string[] }
  }
}

test('docker-compose config: the compose file is valid, and its limits follow the memory budget', () => {
  need('docker-compose', 'docker-compose')
  ok(run('docker-compose', ['config', '-q'], { cwd: COMPOSE }), 'docker-compose config')
  ok(run('docker-compose', ['--profile', 'split-bridge', 'config', '-q'], { cwd: COMPOSE }), 'docker-compose --profile split-bridge config')
  const c = yaml(path.join(COMPOSE, 'docker-compose.yml')) as Compose
  for (const s of ['warbler', 'bridge', 'redis', 'redis-exporter', 'haproxy', 'prometheus', 'grafana']) assert.ok(c.services[s] !== undefined, `service ${s}`)
  const b = budget('--ram-mb', '4096', '--redis', '--monitoring')
  const w = c.services.warbler
  assert.equal(w.mem_limit, `${b.BROKER_MEMORY_MAX_MB}m`)
  assert.equal(w.environment.NODE_OPTIONS, `--max-old-space-size=${b.BROKER_HEAP_MB}`)
  assert.equal(w.environment.WARBLER_WORKERS, '1')
  assert.equal(c.services.redis.mem_limit, `${b.REDIS_MEMORY_MAX_MB}m`)
  const redisCmd = c.services.redis.command.join(' ')
  assert.match(redisCmd, new RegExp(`--maxmemory ${b.REDIS_MAXMEMORY_MB}mb`))
  assert.match(redisCmd, /--maxmemory-policy volatile-lru/)
  assert.match(redisCmd, /--appendonly yes/)
  const mon = ['prometheus', 'grafana', 'haproxy', 'redis-exporter'].reduce((s, n) => s + Number(/^(\d+)m$/.exec(c.services[n]?.mem_limit ?? '')?.[1]), 0)
  assert.equal(mon, b.MONITORING_MB)
  // The alert's budget is the compose broker's.
  const rec = alertRules().find((r) => r.record === 'warbler:memory_budget_bytes')
  assert.equal(rec?.expr, `vector(${b.BROKER_MEMORY_MAX_MB} * 1024 * 1024)`)
  // Mounted files exist.
  for (const [svc, spec] of Object.entries(c.services)) {
    for (const v of spec.volumes ?? []) {
      const src = v.split(':')[0] as string
      if (src.startsWith('.')) assert.ok(existsSync(path.join(COMPOSE, src)), `${svc}: ${src}`)
    }
  }
  assert.equal(c.services.bridge.profiles[0], 'split-bridge')
  const ds = yaml(path.join(COMPOSE, 'grafana', 'provisioning', 'datasources', 'prometheus.yml')) as { datasources: Array<{ uid?: string }> }
  assert.equal(ds.datasources[0]?.uid, 'prometheus')
  const used = new Set(JSON.stringify(dashboard()).match(/"uid":\s*"[^"]+"/g) ?? [])
  assert.deepEqual([...used].filter((u) => !u.includes('"prometheus"') && !u.includes('"warbler"')), [], 'the dashboard uses the provisioned datasource')
})
