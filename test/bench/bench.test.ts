/**
 * `warbler bench`: a short run of every scenario with tiny sizes against a
 * fresh node and Mosquitto (real processes on loopback), checking the exit
 * code, the JSON report's figures, the markdown and SVG files; conns also
 * against a bare aedes, with its memory read after a full GC; and that a bad
 * option is refused with exit code 2, naming it.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { CLI, tempDir } from '../helpers/test-node.js'

interface Run { code: number | null, stdout: string, stderr: string }

function bench (args: string[], timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'bench', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const timer = setTimeout(() => { child.kill('SIGINT') }, timeoutMs)
    child.once('error', reject)
    child.once('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

interface Report {
  scenario: string
  targets: string[]
  summary: Record<string, Record<string, { median: number | null }>>
  ratios: Record<string, number | null>
  ratiosTo: Record<string, Record<string, number | null>>
  checks: { ok: boolean, lostAcked: number, errors: number }
  runs: Array<{ target: string, values: Record<string, number | null>, notes: string[] }>
  limitsRaised: unknown[]
  generator: string
}

async function smoke (t: { after: (fn: () => void) => void }, scenario: string, args: string[], throughputKey: string): Promise<Report> {
  const dir = tempDir('warbler-bench-test-')
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const r = await bench([scenario, ...args, '--against', 'mosquitto', '--runs', '1', '--out', dir])
  assert.equal(r.code, 0, `bench ${scenario} exit ${String(r.code)}\nstderr:\n${r.stderr.slice(-3000)}`)
  const report = JSON.parse(readFileSync(path.join(dir, `bench-${scenario}.json`), 'utf8')) as Report
  assert.equal(report.scenario, scenario)
  assert.deepEqual(report.targets, ['warbler', 'mosquitto'])
  assert.equal(report.runs.length, 2)
  for (const target of ['warbler', 'mosquitto']) {
    const v = report.summary[target]?.[throughputKey]?.median
    assert.ok(typeof v === 'number' && v > 0, `${target} ${throughputKey} = ${String(v)}`)
  }
  assert.ok(typeof report.ratios[throughputKey] === 'number' && (report.ratios[throughputKey]) > 0, 'a ratio to Mosquitto')
  assert.ok(report.limitsRaised.length > 0)
  assert.match(report.generator, /shares the machine/)
  const md = readFileSync(path.join(dir, `bench-${scenario}.md`), 'utf8')
  assert.match(md, /\| figure \| Warbler \| Mosquitto \| Warbler \/ Mosquitto \|/)
  assert.ok(r.stdout.includes('| figure |'), 'the markdown is printed too')
  const svg = readFileSync(path.join(dir, `bench-${scenario}.svg`), 'utf8')
  assert.match(svg, /^<\?xml[^>]*\?>\s*<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/)
  assert.match(svg, /<\/svg>\s*$/)
  assert.equal((svg.match(/<svg\b/g) ?? []).length, 1)
  return report
}

test('conns: sessions held, connect rate, memory per session after a warm-up and a full GC', async (t) => {
  const r = await smoke(t, 'conns', ['--sessions', '200'], 'connect_rate')
  for (const target of ['warbler', 'mosquitto']) assert.equal(r.summary[target]?.sessions?.median, 200, `${target} holds every session`)
  assert.ok(typeof r.summary.warbler?.kb_per_session?.median === 'number')
  // Read after a full GC: V8 heap per session is there and positive.
  const heap = r.summary.warbler?.heap_kb_per_session?.median
  assert.ok(typeof heap === 'number' && heap > 0, `warbler heap KB/session = ${String(heap)}`)
  assert.ok((r.summary.warbler?.cpu_us_per_connect?.median ?? 0) > 0)
  assert.equal(r.summary.mosquitto?.heap_kb_per_session?.median, null, 'no heap figure for Mosquitto')
  const notes = r.runs.flatMap((x) => x.notes).join('\n')
  assert.match(notes, /200 warm-up sessions are opened first and not counted/)
  assert.match(notes, /Warbler: memory read after a full GC/)
  assert.match(notes, /Mosquitto: VmRSS/)
})

test('conns against a bare aedes (and --bridge off): GC\'d readings and Warbler / aedes ratios', async (t) => {
  const dir = tempDir('warbler-bench-test-')
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const r = await bench(['conns', '--sessions', '150', '--against', 'aedes', '--bridge', 'off', '--runs', '1', '--json', path.join(dir, 'r.json')])
  assert.equal(r.code, 0, `exit ${String(r.code)}\nstderr:\n${r.stderr.slice(-3000)}`)
  const report = JSON.parse(readFileSync(path.join(dir, 'r.json'), 'utf8')) as Report
  assert.deepEqual(report.targets, ['warbler', 'aedes'])
  for (const target of ['warbler', 'aedes']) {
    assert.equal(report.summary[target]?.sessions?.median, 150, `${target} holds every session`)
    const heap = report.summary[target]?.heap_kb_per_session?.median
    assert.ok(typeof heap === 'number' && heap > 0, `${target} heap KB/session = ${String(heap)}`)
    assert.ok((report.summary[target]?.connect_rate?.median ?? 0) > 0)
  }
  const ratio = report.ratiosTo.aedes?.heap_kb_per_session
  assert.ok(typeof ratio === 'number' && ratio > 0, 'a Warbler / aedes ratio')
  assert.deepEqual(report.ratios, {}, 'no Warbler / Mosquitto ratios without Mosquitto')
  assert.match(r.stdout, /\| figure \| Warbler \| bare aedes \| Warbler \/ bare aedes \|/)
  assert.match(r.stdout, /bare aedes: memory read after a full GC/)
  assert.match(r.stdout, /--bridge off/)
})

test('chat: saturated and fixed rate, nothing acknowledged lost', async (t) => {
  const r = await smoke(t, 'chat', ['--pairs', '4', '--duration', '1', '--warmup', '0', '--rate', '500'], 'sat_msgs_per_s')
  assert.ok((r.summary.warbler?.rate_msgs_per_s?.median ?? 0) > 0)
  assert.ok((r.summary.warbler?.rate_p99_ms?.median ?? 0) > 0)
  assert.equal(r.checks.lostAcked, 0)
  assert.ok(r.checks.ok)
  // Memory before the load beside its peak under the fixed rate, for every target.
  for (const x of r.runs) {
    const idle = x.values.rss_idle_mb ?? 0
    assert.ok(idle > 0, `${x.target} idle RSS`)
    assert.ok(Math.abs((x.values.rate_rss_vs_idle ?? 0) - (x.values.rate_rss_peak_mb ?? 0) / idle) < 1e-9, `${x.target} peak / idle`)
    assert.ok((x.values.rate_cpu_vs_sat ?? 0) > 0)
  }
  // Where Warbler's time went at the fixed rate, from its /metrics and /proc; nothing of the kind for Mosquitto.
  for (const key of ['rate_sends_per_commit', 'rate_commit_ms', 'rate_stored_ms', 'rate_routed_ms', 'rate_loop_delay_p99_ms', 'rate_loop_cpu_us_per_msg']) {
    const v = r.summary.warbler?.[key]?.median
    assert.ok(typeof v === 'number' && v > 0, `warbler ${key} = ${String(v)}`)
    assert.equal(r.summary.mosquitto?.[key]?.median, null, `no ${key} for Mosquitto`)
  }
})

test('chat: --pairs sets the number of senders at the same total rate', async (t) => {
  const dir = tempDir('warbler-bench-test-')
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  // A second of warm-up first, so that the saturated phase's backlog is delivered before the window.
  const r = await bench(['chat', '--pairs', '40', '--rate', '400', '--duration', '2', '--warmup', '1', '--runs', '1', '--json', path.join(dir, 'r.json')])
  assert.equal(r.code, 0, `exit ${String(r.code)}\nstderr:\n${r.stderr.slice(-3000)}`)
  const report = JSON.parse(readFileSync(path.join(dir, 'r.json'), 'utf8')) as Report
  const v = report.runs[0]?.values ?? {}
  assert.equal(v.rate_target, 400)
  // 40 senders share 400 msg/s (10/s each), not 400/s each (16,000/s).
  assert.ok((v.rate_msgs_per_s ?? 0) > 200 && (v.rate_msgs_per_s ?? 0) < 800, `delivered ${String(v.rate_msgs_per_s)} msg/s`)
  assert.equal(report.checks.lostAcked, 0)
})

test('chat and conns with --protocol 5: the generator speaks MQTT 5 to Warbler and Mosquitto, nothing acknowledged lost', async (t) => {
  const r = await smoke(t, 'chat', ['--pairs', '4', '--duration', '1', '--warmup', '0', '--rate', '500', '--protocol', '5'], 'sat_msgs_per_s')
  assert.equal(r.checks.lostAcked, 0)
  assert.ok(r.checks.ok)
  const c = await smoke(t, 'conns', ['--sessions', '50', '--protocol', '5'], 'connect_rate')
  for (const target of ['warbler', 'mosquitto']) assert.equal(c.summary[target]?.sessions?.median, 50, `${target} holds every MQTT 5 session`)
})

test('chat and group with --numbered: sends carry the SDK\'s numbering, the archive takes them in order, no error notice', async (t) => {
  for (const [scenario, args, key] of [['chat', ['--pairs', '4', '--duration', '1', '--warmup', '0', '--rate', '500'], 'sat_msgs_per_s'], ['group', ['--members', '20', '--duration', '1', '--warmup', '0'], 'deliveries_per_s']] as const) {
    const r = await smoke(t, scenario, ['--numbered', ...args], key)
    assert.equal(r.checks.lostAcked, 0, scenario)
    // A send the archive refused (out of order, or malformed numbering) is an error notice, and fails the checks.
    assert.equal(r.checks.errors, 0, `${scenario}: ${JSON.stringify(r.checks)}`)
    assert.ok(r.checks.ok, `${scenario}: ${JSON.stringify(r.checks)}`)
  }
})

test('group: fan-out to the members', async (t) => {
  const r = await smoke(t, 'group', ['--members', '20', '--duration', '1', '--warmup', '0'], 'deliveries_per_s')
  assert.equal(r.checks.lostAcked, 0)
})

test('overload: delivered vs peak, no acknowledged message lost', async (t) => {
  const r = await smoke(t, 'overload', ['--pairs', '4', '--duration', '1', '--warmup', '0'], 'overload_msgs_per_s')
  assert.ok((r.summary.warbler?.ratio_to_peak?.median ?? 0) > 0)
  assert.equal(r.checks.lostAcked, 0)
  assert.ok(r.checks.ok)
})

test('soak: RSS over time, reconnects', async (t) => {
  const r = await smoke(t, 'soak', ['--duration', '3', '--pairs', '2', '--members', '5', '--rate', '200', '--warmup', '0'], 'msgs_per_s')
  assert.ok(r.runs.every((x) => (x.values.rss_peak_mb ?? 0) > 0))
  assert.equal(r.checks.lostAcked, 0)
})

test('workers: one process, then 1 and 2 workers with Redis, then 1 and 2 workers with the service in its own process, against Mosquitto; JSON, markdown and chart written', async (t) => {
  const r = await smoke(t, 'workers', ['--max-workers', '2', '--pairs', '4', '--duration', '1', '--warmup', '0'], 'w0_msgs_per_s')
  for (const w of ['0', '1', '2', '1s', '2s']) {
    for (const key of ['msgs_per_s', 'p50_ms', 'p99_ms', 'cpu_us_per_msg', 'node_cpu_us_per_msg']) {
      const v = r.summary.warbler?.[`w${w}_${key}`]?.median
      assert.ok(typeof v === 'number' && v > 0, `warbler w${w}_${key} = ${String(v)}`)
    }
    assert.ok(typeof r.ratios[`w${w}_cpu_us_per_msg`] === 'number', `a ratio to Mosquitto for ${w} workers`)
  }
  // Redis is there with workers only: its CPU and commands are counted then, and not in one process.
  assert.ok((r.summary.warbler?.w1_redis_cmds_per_msg?.median ?? -1) >= 0)
  assert.equal(r.summary.warbler?.w0_redis_cmds_per_msg?.median, null, 'no Redis in one process')
  assert.equal(r.summary.mosquitto?.w2_msgs_per_s?.median, r.summary.mosquitto?.w0_msgs_per_s?.median, 'Mosquitto\'s one configuration on every row')
  assert.ok(r.checks.ok)
  assert.equal(r.checks.lostAcked, 0)
})

test('bad options exit 2 naming the option, and start nothing', async () => {
  const dir = tempDir('warbler-bench-bad-')
  try {
    for (const [args, re] of [
      [['chat', '--pairs', '0'], /--pairs/],
      [['chat', '--pairs', '5001'], /--pairs must be a whole number in 1\.\.5000, got "5001"/],
      [['chat', '--pairs', 'many'], /--pairs must be a whole number/],
      [['chat', '--sessions', '10'], /--sessions/],
      [['conns', '--against', 'emqx'], /--against/],
      [['conns', '--against', 'mosquitto,mosquitto'], /--against/],
      [['conns', '--against', 'aedes,'], /--against/],
      [['chat', '--bridge', 'off'], /--bridge/],
      [['conns', '--bridge', 'maybe'], /--bridge/],
      [['nope'], /scenario/],
      [['chat', '--frobnicate'], /--frobnicate/],
      [['chat', '--json', path.join(dir, 'missing', 'x.json')], /--json/],
      [['chat', '--max-workers', '2'], /--max-workers/],
      [['workers', '--workers', '2'], /--workers/],
      [['workers', '--max-workers', '0'], /--max-workers/],
      [['chat', '--protocol', '3'], /--protocol must be 4 \(MQTT 3\.1\.1\) or 5 \(MQTT 5\), got "3"/],
      [['conns', '--protocol', 'v5'], /--protocol.*"v5"/],
      [['soak', '--protocol', '5'], /--protocol does not apply to the soak scenario/],
      [['conns', '--numbered'], /--numbered does not apply to the conns scenario/]
    ] as Array<[string[], RegExp]>) {
      const r = await bench(args, 10_000)
      assert.equal(r.code, 2, `${args.join(' ')}: exit ${String(r.code)}`)
      assert.match(r.stderr, re)
      assert.equal(r.stdout, '')
    }
    assert.ok(!existsSync(path.join(dir, 'missing')))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
