/**
 * `warbler bench`: a short run of every scenario with tiny sizes against a
 * fresh node and Mosquitto (real processes on loopback), checking the exit
 * code, the JSON report's figures, the markdown and SVG files; and that a bad
 * option is refused with exit code 2, naming it.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { CLI, tempDir } from '../helpers/warbler.js'

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
  checks: { ok: boolean, lostAcked: number }
  runs: Array<{ target: string, values: Record<string, number | null> }>
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
  assert.ok(typeof report.ratios[throughputKey] === 'number' && (report.ratios[throughputKey] as number) > 0, 'a ratio to Mosquitto')
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

test('conns: sessions held, connect rate, memory per session', async (t) => {
  const r = await smoke(t, 'conns', ['--sessions', '200'], 'connect_rate')
  for (const target of ['warbler', 'mosquitto']) assert.equal(r.summary[target]?.sessions?.median, 200, `${target} holds every session`)
  assert.ok(typeof r.summary.warbler?.kb_per_session?.median === 'number')
})

test('chat: saturated and fixed rate, nothing acknowledged lost', async (t) => {
  const r = await smoke(t, 'chat', ['--pairs', '4', '--duration', '1', '--warmup', '0', '--rate', '500'], 'sat_msgs_per_s')
  assert.ok((r.summary.warbler?.rate_msgs_per_s?.median ?? 0) > 0)
  assert.ok((r.summary.warbler?.rate_p99_ms?.median ?? 0) > 0)
  assert.equal(r.checks.lostAcked, 0)
  assert.ok(r.checks.ok)
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

test('bad options exit 2 naming the option, and start nothing', async () => {
  const dir = tempDir('warbler-bench-bad-')
  try {
    for (const [args, re] of [
      [['chat', '--pairs', '0'], /--pairs/],
      [['chat', '--sessions', '10'], /--sessions/],
      [['conns', '--against', 'emqx'], /--against/],
      [['nope'], /scenario/],
      [['chat', '--frobnicate'], /--frobnicate/],
      [['chat', '--json', path.join(dir, 'missing', 'x.json')], /--json/]
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
