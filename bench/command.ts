/**
 * `warbler bench <scenario> [options]`: option parsing (every bad option is
 * refused before anything starts, naming it), the runs (interleaved between
 * Warbler and the references: Mosquitto, a bare aedes), and the reports.
 */
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import os from 'node:os'
import path from 'node:path'
import { CliError, parseArgs } from '../shared/args.js'
import { type BenchOptions, REFERENCES, type Reference, SCENARIOS, type Scenario, type TargetName } from './bench-options.js'
import { Progress } from './progress.js'
import { buildReport, markdown, svg } from './report.js'
import { inRun, type RunContext, runCleanup } from './run-context.js'
import type { RunResult } from './run.js'
import { chat } from './scenarios/chat.js'
import { conns, WARMUP } from './scenarios/conns.js'
import { group } from './scenarios/group.js'
import { overload } from './scenarios/overload.js'
import { soak } from './scenarios/soak.js'
import { workers } from './scenarios/workers.js'
import type { ScenarioDef } from './scenarios/scenario.js'
import { installed, machine } from './targets.js'

const DEFS: Record<Scenario, ScenarioDef> = { conns, chat, group, overload, soak, workers }

export const BENCH_HELP = `Usage: warbler bench <scenario> [options]

Benchmarks Warbler (spawned with this CLI: auth on, embedded message service,
fresh temp data dir, loopback ports), optionally against a Mosquitto and a
bare aedes it starts itself, with a load generator in worker threads of this
process.

Scenarios:
  conns      idle authenticated sessions: connect rate, sessions held, memory per session
             (after ${WARMUP} warm-up sessions, not counted; Node targets read after a full GC)
  chat       1:1 QoS 1 chat: saturated throughput, then latency at a fixed rate
  group      fan-out to the members of one group: deliveries/s, latency
  overload   chat at twice the measured saturation: delivered vs peak, memory, no loss
  soak       steady mixed load for --duration seconds: RSS over time, errors
  workers    saturated 1:1 chat on one process, then on 1..--max-workers workers with Redis
             (a fresh node each): throughput, latency, CPU and Redis commands per message

Options:
  --against LIST        also run the scenario against mosquitto and/or aedes (comma-separated:
                        mosquitto,aedes), interleaved, with Warbler / each ratios
  --bridge off          conns: Warbler without its message service (default embedded)
  --runs N              runs per target, medians reported (default 3)
  --sessions N          conns: sessions (default 5000)
  --pairs N             chat, overload, soak, workers: sender/receiver pairs (default 16; workers 32)
  --window N            unacknowledged messages per sender (default 16; group 8)
  --rate N              chat, soak: fixed total rate in msg/s (default 5000; soak 1000)
  --members N           group, soak: group members (default 500; soak 50)
  --senders N           group: senders posting to the group (default 2)
  --duration S          seconds measured per phase (default 10; soak 60)
  --warmup S            seconds before measuring (default 2)
  --payload N           message body size in bytes (default 64)
  --workers N           Warbler broker processes (--workers N; more than 1 starts a redis-server)
  --max-workers N       workers: the most workers measured (default: the machine's cores)
  --generators N        load generator threads (default 2)
  --sources N           loopback source addresses 127.0.0.2... (default 8)
  --connect-concurrency N  connects in flight at once (default 128)
  --json FILE           write the JSON report
  --md FILE             write the markdown report (it is printed to stdout as well)
  --svg FILE            write an SVG chart
  --out DIR             write bench-<scenario>.json, .md and .svg in DIR
  --protocol 4|5        conns, chat, group: the load generator's MQTT protocol, 4 (MQTT 3.1.1,
                        default) or 5 (MQTT 5), against every target
  --numbered            chat, group: each send carries the numbering the SDK gives its sends
                        (epoch and n), so the archive checks their order as it does an app's
  --cpu-prof DIR        write a V8 CPU profile of each Warbler process there (node --cpu-prof;
                        read it with node dist/bench/profile.js FILE)
`

const VALUED = ['against', 'bridge', 'runs', 'sessions', 'pairs', 'window', 'rate', 'members', 'senders', 'duration', 'warmup', 'payload', 'workers', 'max-workers', 'generators', 'sources', 'connect-concurrency', 'json', 'md', 'svg', 'out', 'cpu-prof', 'protocol'] as const

/** Options that only some scenarios use (the others refuse them rather than ignore them). */
const ONLY: Record<string, readonly Scenario[]> = {
  sessions: ['conns'],
  bridge: ['conns'],
  pairs: ['chat', 'overload', 'soak', 'workers'],
  window: ['chat', 'group', 'overload', 'soak', 'workers'],
  rate: ['chat', 'soak'],
  members: ['group', 'soak'],
  senders: ['group'],
  duration: ['chat', 'group', 'overload', 'soak', 'workers'],
  warmup: ['chat', 'group', 'overload', 'soak', 'workers'],
  payload: ['chat', 'group', 'overload', 'soak', 'workers'],
  'max-workers': ['workers'],
  protocol: ['conns', 'chat', 'group'],
  numbered: ['chat', 'group'],
  // The workers scenario sets the workers of each configuration itself.
  workers: ['conns', 'chat', 'group', 'overload', 'soak']
}

function int (p: Map<string, string | true>, name: string, dflt: number, min: number, max: number): number {
  const v = p.get(name)
  if (v === undefined) return dflt
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : NaN
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new CliError(`--${name} must be a whole number in ${min}..${max}, got ${JSON.stringify(v)}`)
  return n
}

function outFile (p: Map<string, string | true>, name: string): string | null {
  const v = p.get(name)
  if (typeof v !== 'string') return null
  const f = path.resolve(v)
  if (!existsSync(path.dirname(f)) || !statSync(path.dirname(f)).isDirectory()) throw new CliError(`--${name}: no directory ${path.dirname(f)}`)
  return f
}

function nofileLimit (): number {
  const r = spawnSync('sh', ['-c', 'ulimit -n'], { encoding: 'utf8' })
  const n = Number(r.stdout.trim())
  return Number.isFinite(n) && n > 0 ? n : Infinity
}

/** `--against mosquitto,aedes`: each at most once, in the order given. */
function referencesOf (v: string | true | undefined): Reference[] {
  if (v === undefined) return []
  const names = typeof v === 'string' ? v.split(',').map((x) => x.trim()) : ['']
  const out: Reference[] = []
  for (const x of names) {
    if (!(REFERENCES as readonly string[]).includes(x)) throw new CliError(`--against takes ${REFERENCES.join(', ')} or both comma-separated, got ${JSON.stringify(v)}`)
    if (out.includes(x as Reference)) throw new CliError(`--against names ${x} twice`)
    out.push(x as Reference)
  }
  return out
}

function protocolOf (v: string | true | undefined): 4 | 5 {
  if (v === undefined) return 4
  if (v !== '4' && v !== '5') throw new CliError(`--protocol must be 4 (MQTT 3.1.1) or 5 (MQTT 5), got ${JSON.stringify(v)}`)
  return v === '5' ? 5 : 4
}

function bridgeOf (v: string | true | undefined): 'embedded' | 'off' {
  if (v === undefined) return 'embedded'
  if (v !== 'off' && v !== 'embedded') throw new CliError(`--bridge must be off or embedded, got ${JSON.stringify(v)}`)
  return v
}

export function parseBench (argv: string[]): BenchOptions | 'help' {
  const p = parseArgs(argv, VALUED, ['help', 'numbered'])
  if (p.options.has('help')) return 'help'
  const [name, ...extra] = p.positional
  if (name === undefined) throw new CliError(`bench needs a scenario (${SCENARIOS.join(', ')})\n\n${BENCH_HELP}`)
  if (!(SCENARIOS as readonly string[]).includes(name)) throw new CliError(`unknown scenario ${JSON.stringify(name)} (one of ${SCENARIOS.join(', ')})`)
  if (extra.length > 0) throw new CliError(`unexpected argument ${JSON.stringify(extra[0])}`)
  const scenario = name as Scenario
  for (const [opt, where] of Object.entries(ONLY)) {
    if (p.options.has(opt) && !where.includes(scenario)) throw new CliError(`--${opt} does not apply to the ${scenario} scenario (only ${where.join(', ')})`)
  }
  const o: BenchOptions = {
    scenario,
    against: referencesOf(p.options.get('against')),
    bridge: bridgeOf(p.options.get('bridge')),
    runs: int(p.options, 'runs', 3, 1, 50),
    sessions: int(p.options, 'sessions', 5000, 1, 200_000),
    pairs: int(p.options, 'pairs', scenario === 'workers' ? 32 : 16, 1, 5000),
    window: int(p.options, 'window', scenario === 'group' ? 8 : 16, 1, 10_000),
    rate: int(p.options, 'rate', scenario === 'soak' ? 1000 : 5000, 1, 10_000_000),
    members: int(p.options, 'members', scenario === 'soak' ? 50 : 500, 1, 990),
    senders: int(p.options, 'senders', 2, 1, 9),
    duration: int(p.options, 'duration', scenario === 'soak' ? 60 : 10, 1, 86_400),
    warmup: int(p.options, 'warmup', 2, 0, 600),
    payload: int(p.options, 'payload', 64, 0, 100_000),
    workers: int(p.options, 'workers', 0, 0, 64),
    maxWorkers: int(p.options, 'max-workers', os.availableParallelism(), 1, 64),
    generators: int(p.options, 'generators', 2, 1, 64),
    sources: int(p.options, 'sources', 8, 1, 250),
    connectConcurrency: int(p.options, 'connect-concurrency', 128, 1, 10_000),
    json: outFile(p.options, 'json'),
    md: outFile(p.options, 'md'),
    svg: outFile(p.options, 'svg'),
    cpuProf: null,
    protocol: protocolOf(p.options.get('protocol')),
    numbered: p.options.has('numbered')
  }
  const prof = p.options.get('cpu-prof')
  if (prof !== undefined) {
    if (typeof prof !== 'string') throw new CliError('--cpu-prof needs a directory')
    const dir = path.resolve(prof)
    if (existsSync(dir) && !statSync(dir).isDirectory()) throw new CliError(`--cpu-prof: ${dir} is not a directory`)
    if (!existsSync(path.dirname(dir))) throw new CliError(`--cpu-prof: no directory ${path.dirname(dir)}`)
    o.cpuProf = dir
  }
  const out = p.options.get('out')
  if (typeof out === 'string') {
    const dir = path.resolve(out)
    if (existsSync(dir) && !statSync(dir).isDirectory()) throw new CliError(`--out: ${dir} is not a directory`)
    if (!existsSync(path.dirname(dir))) throw new CliError(`--out: no directory ${path.dirname(dir)}`)
    o.json ??= path.join(dir, `bench-${scenario}.json`)
    o.md ??= path.join(dir, `bench-${scenario}.md`)
    o.svg ??= path.join(dir, `bench-${scenario}.svg`)
  }
  // Every client is a socket in this process (and one in the broker): check the descriptor limit first.
  const clients = scenario === 'conns' ? o.sessions + WARMUP : scenario === 'group' ? o.members + o.senders : 2 * o.pairs + (scenario === 'soak' ? o.members + 101 : 0)
  const limit = nofileLimit()
  if (clients + 200 > limit) throw new CliError(`${scenario === 'conns' ? '--sessions' : scenario === 'group' ? '--members' : '--pairs'}: ${clients} connections need more open files than this shell allows (ulimit -n is ${limit}); raise it or lower the count`)
  return o
}

function shownCommand (argv: string[]): string {
  const shown: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string
    if (['--json', '--md', '--svg', '--out'].includes(a)) { i++; continue }
    if (/^--(json|md|svg|out)=/.test(a)) continue
    shown.push(a)
  }
  return `warbler bench ${shown.join(' ')}`
}

export async function runBench (argv: string[]): Promise<number> {
  const parsed = parseBench(argv)
  if (parsed === 'help') { process.stdout.write(BENCH_HELP); return 0 }
  const o = parsed
  if (o.against.includes('mosquitto') && !installed('mosquitto')) {
    process.stderr.write('warbler: --against mosquitto: mosquitto is not installed (on Debian: apt-get install mosquitto)\n')
    return 1
  }
  if ((o.workers > 1 || o.scenario === 'workers') && !installed('redis-server')) {
    process.stderr.write('warbler: --workers needs redis-server, which is not installed (on Debian: apt-get install redis-server)\n')
    return 1
  }
  const def = DEFS[o.scenario]
  const targets: TargetName[] = ['warbler', ...o.against]
  const active = new Set<RunContext>()
  let interrupted = false
  const onSignal = (): void => {
    if (interrupted) return
    interrupted = true
    process.stderr.write('\ninterrupted: stopping what was started\n')
    void Promise.all([...active].map((c) => runCleanup(c))).finally(() => process.exit(130))
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  const results: RunResult[] = []
  try {
    for (let run = 1; run <= o.runs; run++) {
      // Alternate the order, so that neither target always runs first on a warming machine.
      const order = run % 2 === 1 ? targets : [...targets].reverse()
      for (const t of order) {
        const progress = new Progress(`${o.scenario}  ${t}  run ${run}/${o.runs}`)
        try {
          const r = await inRun(t, run, o, progress, active, (ctx) => def.run(ctx))
          results.push(r)
          const v = Object.entries(r.values).slice(0, 4).map(([k, x]) => `${k} ${Number.isInteger(x) ? x.toLocaleString('en-US') : x.toFixed(2)}`).join(', ')
          progress.say(`done: ${v}`)
        } catch (err) {
          progress.say(`failed: ${(err as Error).message}`)
          throw err
        }
      }
    }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
  const metrics = typeof def.metrics === 'function' ? def.metrics(o) : def.metrics
  const report = buildReport({ o, about: def.about, command: shownCommand(argv), machine: machine(), metrics, targets, runs: results })
  const md = markdown(report)
  process.stdout.write(md)
  for (const f of [o.json, o.md, o.svg]) if (f !== null) mkdirSync(path.dirname(f), { recursive: true })
  if (o.json !== null) writeFileSync(o.json, JSON.stringify(report, (_k, v: unknown) => typeof v === 'number' && !Number.isFinite(v) ? null : v, 2) + '\n')
  if (o.md !== null) writeFileSync(o.md, md)
  if (o.svg !== null) writeFileSync(o.svg, svg(report))
  if (!report.checks.ok) {
    process.stderr.write('warbler: bench: checks failed (see the report)\n')
    return 1
  }
  return 0
}
