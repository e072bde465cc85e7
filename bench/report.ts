/**
 * The reports of `warbler bench`: medians over runs per target, Warbler's
 * figures as ratios to each reference's (Mosquitto, bare aedes), as JSON, markdown and a hand-written SVG
 * chart (bars per compared figure; for runs with a timeline, throughput and
 * RSS over time).
 */
import { type BenchOptions, type Reference, TARGET_LABEL, type TargetName } from './bench-options.js'
import type { RunResult } from './run.js'
import type { Metric } from './scenarios/scenario.js'
import { GENEROUS_LIMITS, median } from './targets.js'

export interface Summary { median: number, min: number, max: number }

export interface Report {
  scenario: string
  about: string
  command: string
  machine: Record<string, string | number>
  options: BenchOptions
  targets: TargetName[]
  limitsRaised: Array<{ flag: string, value: string, why: string }>
  generator: string
  metrics: Metric[]
  summary: Partial<Record<TargetName, Record<string, Summary>>>
  /** Warbler / Mosquitto, per figure (medians); empty without Mosquitto. */
  ratios: Record<string, number>
  /** Warbler / each reference, per figure (medians). */
  ratiosTo: Partial<Record<Reference, Record<string, number>>>
  checks: { ok: boolean, lostAcked: number, gaps: number, dups: number, errors: number, undrained: number }
  runs: RunResult[]
}

export function buildReport (args: { o: BenchOptions, about: string, command: string, machine: Record<string, string | number>, metrics: Metric[], targets: TargetName[], runs: RunResult[] }): Report {
  const summary: Report['summary'] = {}
  for (const t of args.targets) {
    const rs = args.runs.filter((r) => r.target === t)
    const s: Record<string, Summary> = {}
    for (const m of args.metrics) {
      const xs = rs.map((r) => r.values[m.key] as number).filter((x) => Number.isFinite(x))
      s[m.key] = { median: median(xs), min: xs.length === 0 ? NaN : Math.min(...xs), max: xs.length === 0 ? NaN : Math.max(...xs) }
    }
    summary[t] = s
  }
  const ratiosTo: Report['ratiosTo'] = {}
  for (const ref of args.targets) {
    if (ref === 'warbler' || summary.warbler === undefined) continue
    const rs: Record<string, number> = {}
    for (const m of args.metrics) {
      const w = summary.warbler[m.key]?.median ?? NaN
      const q = summary[ref]?.[m.key]?.median ?? NaN
      rs[m.key] = q === 0 ? (w === 0 ? 1 : NaN) : w / q
    }
    ratiosTo[ref] = rs
  }
  const ratios = ratiosTo.mosquitto ?? {}
  const checked = args.runs.filter((r) => r.check !== null)
  const sum = (f: (r: RunResult) => number): number => checked.reduce((a, r) => a + f(r), 0)
  const checks = {
    lostAcked: sum((r) => r.check?.lostAcked ?? 0),
    gaps: sum((r) => r.check?.gaps ?? 0),
    dups: sum((r) => r.check?.dups ?? 0),
    errors: sum((r) => r.check?.errors ?? 0),
    undrained: checked.filter((r) => r.check?.drained === false).length,
    ok: false
  }
  checks.ok = checks.lostAcked === 0 && checks.gaps === 0 && checks.dups === 0 && checks.undrained === 0
  return {
    scenario: args.o.scenario,
    about: args.about,
    command: args.command,
    machine: args.machine,
    options: args.o,
    targets: args.targets,
    limitsRaised: [...GENEROUS_LIMITS],
    generator: `The load generator runs on the same machine, in ${args.o.generators} worker thread(s) of the bench process, and shares the machine's ${String(args.machine.nproc)} cores with the system under test; its event-loop load is reported (near 1, the generator, not the broker, is the limit).`,
    metrics: args.metrics,
    summary,
    ratios,
    ratiosTo,
    checks,
    runs: args.runs
  }
}

function fmt (n: number, digits = 0): string {
  if (!Number.isFinite(n)) return '-'
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

export function markdown (r: Report): string {
  const m = r.machine
  const lines: string[] = []
  lines.push(`## warbler bench ${r.scenario}`, '')
  lines.push(`${r.about}.`, '')
  lines.push(`Command: \`${r.command}\``, '')
  lines.push(`Machine: ${String(m.nproc)} cores, ${String(m.cpu)}, ${String(m.ramGiB)} GiB RAM, Node ${String(m.node)}, ${String(m.os)}; ${String(m.mosquitto)}; commit ${String(m.commit)}.`, '')
  const runs = r.options.runs
  const refs = r.targets.filter((t): t is Reference => t !== 'warbler')
  lines.push(`Medians of ${runs} run(s) per target${refs.length > 0 ? ', interleaved' : ''}; each run on a fresh process and data dir.`, '')
  const head = ['figure', 'Warbler', ...refs.map((t) => TARGET_LABEL[t]), ...refs.map((t) => `Warbler / ${TARGET_LABEL[t]}`)]
  lines.push(`| ${head.join(' | ')} |`)
  lines.push(`| --- |${head.slice(1).map(() => ' ---: |').join('')}`)
  for (const x of r.metrics) {
    const unit = x.unit === '' ? '' : ` (${x.unit})`
    const cell = (t: TargetName): string => {
      const s = r.summary[t]?.[x.key]
      if (s === undefined) return '-'
      const range = runs > 1 && Number.isFinite(s.min) && s.min !== s.max ? ` (${fmt(s.min, x.digits ?? 0)}–${fmt(s.max, x.digits ?? 0)})` : ''
      return fmt(s.median, x.digits ?? 0) + range
    }
    const row = [`${x.label}${unit}`, cell('warbler')]
    for (const t of refs) row.push(cell(t))
    for (const t of refs) row.push(fmt(r.ratiosTo[t]?.[x.key] ?? NaN, 2))
    lines.push(`| ${row.join(' | ')} |`)
  }
  lines.push('')
  const c = r.checks
  if (r.runs.some((x) => x.check !== null)) {
    lines.push(c.ok
      ? 'Checks: every run drained; every acknowledged message reached its receiver(s) exactly once and in order.'
      : `Checks FAILED: ${c.lostAcked} acknowledged deliveries lost, ${c.gaps} gaps, ${c.dups} duplicates or reorderings, ${c.undrained} run(s) not drained.`)
    if (c.errors > 0) lines.push('', `Error notices from the service: ${c.errors} (first: ${r.runs.find((x) => x.check?.firstError != null)?.check?.firstError ?? '-'}).`)
    lines.push('')
  }
  const notes = [...new Set(r.runs.flatMap((x) => x.notes))]
  for (const n of notes) lines.push(`- ${n}`)
  if (notes.length > 0) lines.push('')
  if (refs.includes('aedes')) lines.push('Bare aedes: `Aedes.createBroker()` with its defaults (in-memory persistence, anonymous, no hooks) on a net server, in a process of its own (bench/aedes.ts).', '')
  lines.push(`Warbler runs with auth on (device tokens), ${r.options.bridge === 'off' ? 'no message service (`--bridge off`)' : 'the embedded message service'}, and these limits raised so that they do not refuse the load: ${r.limitsRaised.map((l) => `\`${l.flag} ${l.value}\``).join(', ')}.`, '')
  lines.push(r.generator)
  return lines.join('\n') + '\n'
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
const COLORS: Record<TargetName, string> = { warbler: '#2b6cb0', mosquitto: '#c05621', aedes: '#2f855a' }

/** Bars per charted figure (each scaled to the larger target), then a timeline if there is one. */
export function svg (r: Report): string {
  const charted = r.metrics.filter((m) => m.chart === true)
  const W = 760
  const rowH = 46
  const left = 250
  const barW = W - left - 110
  const parts: string[] = []
  let y = 30
  parts.push(`<text x="20" y="${y}" font-size="16" font-weight="bold">warbler bench ${esc(r.scenario)}: ${r.targets.map(esc).join(' vs ')} (medians of ${r.options.runs} run(s))</text>`)
  y += 14
  r.targets.forEach((t, i) => {
    parts.push(`<rect x="${20 + i * 130}" y="${y}" width="12" height="12" fill="${COLORS[t]}"/><text x="${36 + i * 130}" y="${y + 11}" font-size="12">${esc(t)}</text>`)
  })
  y += 28
  for (const m of charted) {
    const vals = r.targets.map((t) => r.summary[t]?.[m.key]?.median ?? NaN)
    const max = Math.max(...vals.filter((v) => Number.isFinite(v)), 1e-9)
    parts.push(`<text x="20" y="${y + 14}" font-size="12">${esc(m.label)}${m.unit !== '' ? ` (${esc(m.unit)})` : ''}</text>`)
    r.targets.forEach((t, i) => {
      const v = vals[i] as number
      const w = Number.isFinite(v) ? Math.max(1, (v / max) * barW) : 0
      const by = y + i * 18
      parts.push(`<rect x="${left}" y="${by}" width="${w.toFixed(1)}" height="14" fill="${COLORS[t]}"/>`)
      parts.push(`<text x="${(left + w + 6).toFixed(1)}" y="${by + 11}" font-size="11">${esc(fmt(v, m.digits ?? 0))}</text>`)
    })
    y += Math.max(rowH, r.targets.length * 18 + 10)
  }
  // Time series (overload, soak...): the first run of each target.
  const series = r.targets.map((t) => ({ t, s: r.runs.find((x) => x.target === t)?.timeline ?? [] })).filter((x) => x.s.length > 1)
  if (series.length > 0) {
    for (const [field, label] of [['msgsPerSec', 'delivered msg/s'], ['rssMb', 'RSS (MB)']] as const) {
      y += 20
      const h = 150
      const tMax = Math.max(...series.flatMap((x) => x.s.map((p) => p.t)), 1)
      const vMax = Math.max(...series.flatMap((x) => x.s.map((p) => p[field])), 1e-9)
      parts.push(`<text x="20" y="${y}" font-size="13" font-weight="bold">${label} over time (first run; s)</text>`)
      y += 10
      const x0 = 70
      const pw = W - x0 - 30
      parts.push(`<rect x="${x0}" y="${y}" width="${pw}" height="${h}" fill="none" stroke="#999"/>`)
      parts.push(`<text x="${x0 - 6}" y="${y + 10}" font-size="10" text-anchor="end">${esc(fmt(vMax))}</text><text x="${x0 - 6}" y="${y + h}" font-size="10" text-anchor="end">0</text>`)
      parts.push(`<text x="${x0 + pw}" y="${y + h + 14}" font-size="10" text-anchor="end">${esc(fmt(tMax, 0))} s</text>`)
      for (const { t, s } of series) {
        const pts = s.map((p) => `${(x0 + (p.t / tMax) * pw).toFixed(1)},${(y + h - (p[field] / vMax) * h).toFixed(1)}`).join(' ')
        parts.push(`<polyline points="${pts}" fill="none" stroke="${COLORS[t]}" stroke-width="1.5"/>`)
      }
      y += h + 24
    }
  }
  y += 10
  return `<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${parts.join('\n')}\n</svg>\n`
}
