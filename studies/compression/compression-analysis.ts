/**
 * The study's measurements, one step each: sizes by content class, by kind
 * and script, by frame size, what each threshold would save and cost, and the
 * async machinery on small frames.
 */
import type { Corpus, Frame, FrameClass } from './chat-corpus.js'
import { te } from './chat-corpus.js'
import type { Codec } from './payload-codecs.js'
import { CODECS, MACHINERY } from './payload-codecs.js'
import type { Measured, Timing, TimingOptions } from './codec-timing.js'
import { calibrate, measure, median, timeLoop, wire } from './codec-timing.js'

const BINS = [0, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, Infinity]
const THRESHOLDS = [128, 256, 512, 1024, 2048, 4096]

export const kb = (n: number): string => n >= 1024 ? `${(n / 1024).toFixed(n >= 10240 ? 0 : 1)} KiB` : `${Math.round(n)} B`
const binLabel = (i: number): string => {
  const a = BINS[i] as number
  const b = BINS[i + 1] as number
  return b === Infinity ? `≥ ${kb(a)}` : `${kb(a)}–${kb(b)}`
}

type Packed = Map<string, Array<Uint8Array | null>>

/** Every frame compressed once by every codec, and where each frame sits in those lists. */
export interface Packing {
  corpus: Corpus
  packed: Packed
  index: Map<Frame, number>
  /** CompressionStream produced exactly zlib level 6's bytes on every frame. */
  sameAsZ6: boolean
}

export interface ClassRow { label: string, n: number, medianBytes: number, meanBytes: number, share: number, codecs: Record<string, { ratio: number, comp: Timing, decomp: Timing }> }
export interface KindRow { kind: string, n: number, medianBytes: number, ratio: Record<string, number> }
export interface ScriptRow { script: 'latin' | 'cyrillic' | 'cjk', n: number, medianBytes: number, ratio: number }
export interface BinRow { label: string, lo: number, n: number, sends: number, medianBytes: number, codecs: Record<string, { saved: number, ratio: number, comp: Timing, decomp: Timing }> }
export interface SendBin { b: BinRow, n: number, plain: number, wires: Record<string, number> }
export interface ThresholdRow { T: number, frames: number, codecs: Record<string, { saved: number, sdkCpu: number, serverCpu: number }> }
export interface MachineryRow { size: string, n: number, medianBytes: number, rows: Array<{ name: string, label: string, cpu: number, wall: number }> }

/** Compress everything once: sizes, and a round-trip check of every codec on every frame. */
export async function packAll (corpus: Corpus): Promise<Packing> {
  const all = [...corpus.sends, ...corpus.replies]
  const packed: Packed = new Map()
  for (const c of CODECS) {
    const ps: Array<Uint8Array | null> = []
    for (const f of all) {
      const p = await c.compress(f.json)
      if (p !== null) {
        const back = await c.decompress(p, f.json.length)
        if (Buffer.compare(Buffer.from(back.buffer, back.byteOffset, back.byteLength), Buffer.from(f.json.buffer, f.json.byteOffset, f.json.byteLength)) !== 0) {
          throw new Error(`${c.name}: round trip differs on a ${f.json.length}-byte ${f.cls} frame`)
        }
      }
      ps.push(p)
    }
    packed.set(c.name, ps)
  }
  const cs = packed.get('cs-deflate') as Array<Uint8Array | null>
  const z6 = packed.get('zlib-6') as Array<Uint8Array | null>
  const sameAsZ6 = cs.every((p, i) => p !== null && Buffer.compare(Buffer.from(p), Buffer.from(z6[i] as Uint8Array)) === 0)
  const index = new Map<Frame, number>(all.map((f, i) => [f, i]))
  return { corpus, packed, index, sameAsZ6 }
}

/** A frame's bytes on the wire with codec c. */
function wireOf (k: Packing, c: Codec, f: Frame): number {
  return wire(c, f.json, (k.packed.get(c.name) as Array<Uint8Array | null>)[k.index.get(f) as number] ?? null)
}

/** The packed forms of some frames, codec by codec, in their order. */
function packedOf (k: Packing, frames: Frame[]): Packed {
  return new Map(CODECS.map((c) => [c.name, frames.map((f) => (k.packed.get(c.name) as Array<Uint8Array | null>)[k.index.get(f) as number] as Uint8Array | null)]))
}

/** 1. By content class: size after compression and CPU per frame. */
export async function measureClasses (k: Packing, o: TimingOptions): Promise<ClassRow[]> {
  const { corpus } = k
  const classes: Array<{ cls: FrameClass, label: string, frames: Frame[] }> = [
    { cls: 'short', label: 'short send (body 5-200 B)', frames: corpus.sends.filter((f) => f.cls === 'short') },
    { cls: 'medium', label: 'paragraph send (200-1000 B)', frames: corpus.sends.filter((f) => f.cls === 'medium') },
    { cls: 'long', label: 'long send (logs, code, JSON, links)', frames: corpus.sends.filter((f) => f.cls === 'long') },
    { cls: 'history', label: 'history/sync reply (50-100 messages)', frames: corpus.replies }
  ]
  const byClass: ClassRow[] = []
  for (const c of classes) {
    process.stderr.write(`measuring class ${c.cls} (${c.frames.length} frames)...\n`)
    const m = await measure(c.frames.map((f) => f.json), o, packedOf(k, c.frames))
    const plain = c.frames.reduce((s, f) => s + f.json.length, 0)
    const codecs: ClassRow['codecs'] = {}
    for (const codec of CODECS) {
      const w = c.frames.reduce((s, f) => s + wireOf(k, codec, f), 0)
      const t = m.get(codec.name) as Measured
      codecs[codec.name] = { ratio: w / plain, comp: t.comp, decomp: t.decomp }
    }
    byClass.push({ label: c.label, n: c.frames.length, medianBytes: median(c.frames.map((f) => f.json.length)), meanBytes: plain / c.frames.length, share: c.cls === 'history' ? NaN : c.frames.length / corpus.sends.length, codecs })
  }
  return byClass
}

/** Long sends by kind: ratio only. */
export function longKinds (k: Packing): KindRow[] {
  return ['log', 'code', 'json', 'links'].map((kind) => {
    const fs = k.corpus.sends.filter((f) => f.kind === kind)
    const plain = fs.reduce((s, f) => s + f.json.length, 0)
    const r: Record<string, number> = {}
    for (const c of CODECS) r[c.name] = fs.reduce((s, f) => s + wireOf(k, c, f), 0) / plain
    return { kind, n: fs.length, medianBytes: median(fs.map((f) => f.json.length)), ratio: r }
  })
}

/** Short sends by script: CJK and emoji compress differently. */
export function shortScripts (k: Packing): ScriptRow[] {
  return (['latin', 'cyrillic', 'cjk'] as const).map((s) => {
    const fs = k.corpus.sends.filter((f) => f.cls === 'short' && (s === 'cjk' ? f.lang === 'zh' || f.lang === 'ja' : s === 'cyrillic' ? f.lang === 'ru' : !['zh', 'ja', 'ru'].includes(f.lang)))
    const plain = fs.reduce((x, f) => x + f.json.length, 0)
    const c = CODECS[1] as Codec
    return { script: s, n: fs.length, medianBytes: median(fs.map((f) => f.json.length)), ratio: fs.reduce((x, f) => x + wireOf(k, c, f), 0) / plain }
  })
}

/** 2. By frame size (every frame of the corpus): what a threshold decides. */
export async function measureBins (k: Packing, o: TimingOptions): Promise<BinRow[]> {
  const all = [...k.corpus.sends, ...k.corpus.replies]
  const bins: BinRow[] = []
  for (let i = 0; i < BINS.length - 1; i++) {
    const fs = all.filter((f) => f.json.length >= (BINS[i] as number) && f.json.length < (BINS[i + 1] as number))
    if (fs.length === 0) continue
    process.stderr.write(`measuring size ${binLabel(i)} (${fs.length} frames)...\n`)
    const m = await measure(fs.map((f) => f.json), o, packedOf(k, fs))
    const plain = fs.reduce((s, f) => s + f.json.length, 0)
    const codecs: BinRow['codecs'] = {}
    for (const c of CODECS) {
      const w = fs.reduce((s, f) => s + wireOf(k, c, f), 0)
      const t = m.get(c.name) as Measured
      codecs[c.name] = { saved: (plain - w) / fs.length, ratio: w / plain, comp: t.comp, decomp: t.decomp }
    }
    bins.push({ label: binLabel(i), lo: BINS[i] as number, n: fs.length, sends: fs.filter((f) => f.cls !== 'history').length, medianBytes: median(fs.map((f) => f.json.length)), codecs })
  }
  return bins
}

/** 3. Thresholds over the sends (what compressThreshold governs), from the per-bin costs. */
export function sendThresholds (k: Packing, bins: BinRow[]): { sendBins: SendBin[], sendPlain: number, thresholds: ThresholdRow[] } {
  const { corpus } = k
  const sendBins = bins.map((b) => {
    const fs = corpus.sends.filter((f) => f.json.length >= b.lo && f.json.length < (BINS[BINS.indexOf(b.lo) + 1] as number))
    const plain = fs.reduce((s, f) => s + f.json.length, 0)
    const wires: Record<string, number> = {}
    for (const c of CODECS) wires[c.name] = fs.reduce((s, f) => s + wireOf(k, c, f), 0)
    return { b, n: fs.length, plain, wires }
  })
  const sendPlain = corpus.sends.reduce((s, f) => s + f.json.length, 0)
  const thresholds = [0, ...THRESHOLDS].map((T) => {
    const on = sendBins.filter((x) => x.b.lo >= T)
    const frames = on.reduce((s, x) => s + x.n, 0)
    const r: ThresholdRow['codecs'] = {}
    for (const c of CODECS) {
      const saved = on.reduce((s, x) => s + x.plain - (x.wires[c.name] as number), 0)
      const compCpu = on.reduce((s, x) => s + x.n * (x.b.codecs[c.name] as { comp: Timing }).comp.cpu, 0)
      // The server inflates with zlib (sync) whatever the client used to deflate.
      const dec = c.name === 'cs-deflate' ? 'zlib-6' : c.name
      const decCpu = on.reduce((s, x) => s + x.n * (x.b.codecs[dec] as { decomp: Timing }).decomp.cpu, 0)
      r[c.name] = { saved: saved / sendPlain, sdkCpu: compCpu / corpus.sends.length, serverCpu: decCpu / corpus.sends.length }
    }
    return { T, frames: frames / corpus.sends.length, codecs: r }
  })
  return { sendBins, sendPlain, thresholds }
}

/** 4. The async machinery on small frames. */
export async function measureMachinery (corpus: Corpus, o: TimingOptions): Promise<MachineryRow[]> {
  process.stderr.write('measuring the async machinery on small frames...\n')
  const machinery: MachineryRow[] = []
  const smallSets = [
    { size: 'short send, < 128 B', fs: corpus.sends.filter((f) => f.json.length < 128) },
    { size: 'send, 256–512 B', fs: corpus.sends.filter((f) => f.json.length >= 256 && f.json.length < 512) },
    { size: 'send, 1–2 KiB', fs: corpus.sends.filter((f) => f.json.length >= 1024 && f.json.length < 2048) }
  ]
  for (const s of smallSets) {
    const objs = s.fs.map((f) => JSON.parse(Buffer.from(f.json).toString('utf8')) as unknown)
    const rows: MachineryRow['rows'] = []
    const plan = MACHINERY.map((mc) => ({ mc, fn: (x: unknown) => { const j = te.encode(JSON.stringify(x)); return mc.run(j) }, reps: 0, runs: [] as Timing[] }))
    for (const p of plan) p.reps = await calibrate(objs, p.fn, p.mc.name.startsWith('cs') || p.mc.name === 'zlib-async', o.minMs)
    for (let run = 0; run < o.runs; run++) {
      for (let k = 0; k < plan.length; k++) {
        const p = plan[(k + run) % plan.length] as typeof plan[number]
        p.runs.push(await timeLoop(objs, p.fn, p.mc.name.startsWith('cs') || p.mc.name === 'zlib-async', p.reps))
      }
    }
    for (const p of plan) rows.push({ name: p.mc.name, label: p.mc.label, cpu: median(p.runs.map((r) => r.cpu)), wall: median(p.runs.map((r) => r.wall)) })
    machinery.push({ size: s.size, n: s.fs.length, medianBytes: median(s.fs.map((f) => f.json.length)), rows })
  }
  return machinery
}
