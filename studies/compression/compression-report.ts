/** The study's report: the machine it ran on, and the markdown block of docs/benchmarks.md. */
import { readFileSync } from 'node:fs'
import os from 'node:os'
import { spawnSync } from 'node:child_process'
import type { Corpus } from './chat-corpus.js'
import type { Measured } from './codec-timing.js'
import { CODECS, MACHINERY, lz4 } from './payload-codecs.js'
import type { BinRow, ClassRow, KindRow, MachineryRow, ScriptRow, SendBin, ThresholdRow } from './compression-analysis.js'
import { kb } from './compression-analysis.js'
import { ROOT } from './study-paths.js'

/** A rough factor for a Raspberry Pi 4 (Cortex-A72, 1.5 GHz) against this machine's core; an assumption, not measured here. */
export const PI_FACTOR = 4

export function machine (): Record<string, string | number> {
  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? os.cpus()[0]?.model ?? 'unknown'
  const git = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout.trim()
  const dirty = spawnSync('git', ['-C', ROOT, 'status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).stdout.trim() !== ''
  return {
    nproc: os.availableParallelism(),
    cpu,
    ramGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    zlib: process.versions.zlib ?? '?',
    os: `${os.type()} ${os.release()}`,
    commit: git + (dirty ? ' (with local changes)' : '')
  }
}

const f0 = (n: number): string => Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-'
const f1 = (n: number): string => Number.isFinite(n) ? n.toFixed(1) : '-'
const pct = (n: number): string => Number.isFinite(n) ? `${(n * 100).toFixed(0)} %` : '-'
const us = (n: number): string => !Number.isFinite(n) ? '-' : n < 10 ? n.toFixed(1) : f0(n)

/** Everything the report shows. */
export interface Findings {
  mach: Record<string, string | number>
  command: string
  options: { seed: number, runs: number, minMs: number }
  seconds: number
  corpus: Corpus
  sameAsZ6: boolean
  byClass: ClassRow[]
  kinds: KindRow[]
  scripts: ScriptRow[]
  bins: BinRow[]
  sendBins: SendBin[]
  sendPlain: number
  thresholds: ThresholdRow[]
  machinery: MachineryRow[]
}

/** The results block: one table after another, in the order the doc reads them. */
export function renderMarkdown (findings: Findings): string {
  const { mach, command, corpus, sameAsZ6, byClass, kinds, scripts, bins, sendBins, sendPlain, thresholds, machinery, seconds } = findings
  const o = findings.options
  const L: string[] = []
  const cn = CODECS.map((c) => c.name)
  const cell = (ratio: number, t: Measured): string => `${pct(ratio)} · ${us(t.comp.cpu)} / ${us(t.decomp.cpu)}`
  L.push(`Machine: ${mach.nproc} cores, ${mach.cpu}, ${mach.ramGiB} GiB RAM, Node ${mach.node} (zlib ${mach.zlib}), ${mach.os}; commit ${mach.commit}.`)
  L.push('')
  L.push(`Command: \`${command}\` (seed ${o.seed}; ${f0(corpus.sends.length)} sends, ${corpus.replies.length} history/sync replies holding ${f0(corpus.inboxFrames)} MessageFrames; ${o.runs} runs of at least ${o.minMs} ms (CompressionStream ${o.minMs * 4} ms) per codec and set of frames, interleaved; medians; ${f0(seconds)} s in all).`)
  L.push('')
  L.push(`Codecs: ${CODECS.map((c) => `**${c.name}**: ${c.label}`).join('; ')}. ${sameAsZ6 ? 'CompressionStream produced exactly the bytes of zlib level 6 on every frame.' : 'CompressionStream and zlib level 6 differ in output bytes on some frames.'} Each cell: size on the wire (envelope included; a frame goes plain when compression does not make it smaller) · compress / decompress CPU in µs per frame.`)
  L.push('')
  L.push(`| frames | share of sends | n | median / mean JSON | ${cn.join(' | ')} |`)
  L.push(`| --- | ---: | ---: | ---: | ${cn.map(() => '---:').join(' | ')} |`)
  for (const r of byClass) {
    L.push(`| ${r.label} | ${Number.isFinite(r.share) ? pct(r.share) : '-'} | ${f0(r.n)} | ${kb(r.medianBytes)} / ${kb(r.meanBytes)} | ${cn.map((c) => { const x = r.codecs[c] as { ratio: number } & Measured; return cell(x.ratio, x) }).join(' | ')} |`)
  }
  L.push('')
  L.push(`Long sends by kind, size after compression: ${kinds.map((k) => `${k.kind} (n ${k.n}, median ${kb(k.medianBytes)}): deflate-6 ${pct(k.ratio['zlib-6'] as number)}, zlib-1 ${pct(k.ratio['zlib-1'] as number)}${lz4 !== null ? `, lz4js ${pct(k.ratio.lz4js as number)}` : ''}`).join('; ')}. ` +
    `Short sends by script (deflate-6): ${scripts.map((s) => `${s.script} (n ${s.n}, median ${kb(s.medianBytes)}) ${pct(s.ratio)}`).join(', ')}.`)
  L.push('')
  L.push('**By frame size** (every frame of the corpus, sends and replies), with the average bytes saved per frame:')
  L.push('')
  L.push(`| JSON size | n (of them sends) | share of send bytes | ${cn.join(' | ')} | saved per frame: deflate-6 / zlib-1${lz4 !== null ? ' / lz4js' : ''} |`)
  L.push(`| --- | ---: | ---: | ${cn.map(() => '---:').join(' | ')} | ---: |`)
  for (const [i, b] of bins.entries()) {
    const sb = sendBins[i] as { plain: number }
    const sv = (c: string): string => f0((b.codecs[c] as { saved: number }).saved)
    L.push(`| ${b.label} | ${f0(b.n)} (${f0(b.sends)}) | ${pct(sb.plain / sendPlain)} | ${cn.map((c) => { const x = b.codecs[c] as { ratio: number } & Measured; return cell(x.ratio, x) }).join(' | ')} | ${sv('zlib-6')} / ${sv('zlib-1')}${lz4 !== null ? ` / ${sv('lz4js')}` : ''} B |`)
  }
  L.push('')
  L.push(`**Thresholds**, over the sends only (what \`compressThreshold\` governs: ${f0(corpus.sends.length)} frames, ${kb(sendPlain)} of JSON): the share of frames compressed, the share of bytes saved, and the CPU per send averaged over all sends, on the sender (compress) / on the server (zlib inflate; lz4js decode for LZ4). The Pi column multiplies the SDK's figures by ${PI_FACTOR}, a rough factor for a Raspberry Pi 4 core against this one, not a measurement.`)
  L.push('')
  L.push(`| threshold | frames compressed | bytes saved: deflate-6 | zlib-1 |${lz4 !== null ? ' lz4js |' : ''} µs per send, SDK (cs-deflate) | zlib-6 | zlib-1 |${lz4 !== null ? ' lz4js |' : ''} SDK on a Pi 4 (×${PI_FACTOR}) |`)
  L.push(`| ---: | ---: | ---: | ---: |${lz4 !== null ? ' ---: |' : ''} ---: | ---: | ---: |${lz4 !== null ? ' ---: |' : ''} ---: |`)
  for (const t of thresholds) {
    const x = (c: string): { saved: number, sdkCpu: number, serverCpu: number } => t.codecs[c] as { saved: number, sdkCpu: number, serverCpu: number }
    const cpu = (c: string): string => `${f1(x(c).sdkCpu)} / ${f1(x(c).serverCpu)}`
    L.push(`| ${t.T === 0 ? 'every frame' : f0(t.T)}${t.T === 1024 ? ' (default)' : ''} | ${pct(t.frames)} | ${pct(x('zlib-6').saved)} | ${pct(x('zlib-1').saved)} |${lz4 !== null ? ` ${pct(x('lz4js').saved)} |` : ''} ${cpu('cs-deflate')} | ${cpu('zlib-6')} | ${cpu('zlib-1')} |${lz4 !== null ? ` ${cpu('lz4js')} |` : ''} ${f0(x('cs-deflate').sdkCpu * PI_FACTOR)} / ${f0(x('cs-deflate').serverCpu * PI_FACTOR)} |`)
  }
  L.push('')
  L.push('**The async machinery on small frames**: µs per frame, JSON.stringify and TextEncoder included, CPU (all threads) / wall time, one frame at a time awaited:')
  L.push('')
  L.push(`| | ${machinery.map((m) => `${m.size} (n ${m.n}, median ${kb(m.medianBytes)})`).join(' | ')} |`)
  L.push(`| --- | ${machinery.map(() => '---:').join(' | ')} |`)
  for (let i = 0; i < MACHINERY.length; i++) {
    L.push(`| ${(MACHINERY[i] as { label: string }).label} | ${machinery.map((m) => { const r = m.rows[i] as { cpu: number, wall: number }; return `${us(r.cpu)} / ${us(r.wall)}` }).join(' | ')} |`)
  }
  L.push('')
  L.push(`Inbox MessageFrames in the replies: ${f0(corpus.inboxFrames)}, mean ${kb(corpus.inboxBytes / corpus.inboxFrames)}. Checks: every codec round-tripped every frame.`)
  return L.join('\n')
}
