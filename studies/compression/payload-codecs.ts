/** The codecs compared (the SDK's CompressionStream pipe, node:zlib, lz4js) and the async variants timed on small frames. */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { deflateRaw, deflateRawSync, inflateRawSync } from 'node:zlib'
import { ROOT } from './study-paths.js'

export interface Lz4 {
  compressBound: (n: number) => number
  compressBlock: (src: Uint8Array, dst: Uint8Array, sIndex: number, sLength: number, hashTable: Uint32Array) => number
  decompressBlock: (src: Uint8Array, dst: Uint8Array, sIndex: number, sLength: number, dIndex: number) => number
}
export const lz4: Lz4 | null = ((): Lz4 | null => {
  try { return createRequire(import.meta.url)('lz4js') as Lz4 } catch { return null }
})()
const LZ4_VERSION = ((): string => {
  try { return (JSON.parse(readFileSync(path.join(ROOT, 'node_modules', 'lz4js', 'package.json'), 'utf8')) as { version: string }).version } catch { return '?' }
})()
// lz4js's block encoder needs its 64 Ki-entry hash table zeroed for every frame (a stale entry can point at the
// current position: a match at offset 0, which the round-trip check catches), as lz4js.compress() does. That
// 256 KiB fill is part of what LZ4 costs per frame here.
const lz4Table = new Uint32Array(1 << 16)

/** The SDK's pipe (sdk/src/codec.ts), verbatim. */
async function pipe (data: Uint8Array, stream: CompressionStream | DecompressionStream): Promise<Uint8Array> {
  const out = new Response(new Blob([data as BlobPart]).stream().pipeThrough(stream))
  return new Uint8Array(await out.arrayBuffer())
}

/** The same CompressionStream without Blob and Response: one write, read to the end. */
async function pipeLean (data: Uint8Array, stream: CompressionStream | DecompressionStream): Promise<Uint8Array> {
  const w = stream.writable.getWriter()
  void w.write(data as BufferSource)
  void w.close()
  const r = stream.readable.getReader()
  const parts: Uint8Array[] = []
  let n = 0
  for (;;) {
    const { done, value } = await r.read()
    if (done) break
    parts.push(value)
    n += (value as Uint8Array).length
  }
  if (parts.length === 1) return parts[0] as Uint8Array
  const out = new Uint8Array(n)
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}

export interface Codec {
  name: string
  label: string
  async: boolean
  /** The compressed bytes, without the envelope byte (null: the codec found nothing to compress). */
  compress: (json: Uint8Array) => Uint8Array | null | Promise<Uint8Array | null>
  decompress: (packed: Uint8Array, length: number) => Uint8Array | Promise<Uint8Array>
  /** Envelope overhead besides the compressed bytes. */
  overhead: number
}

export const CODECS: Codec[] = [
  {
    name: 'cs-deflate',
    label: 'deflate, CompressionStream (the SDK)',
    async: true,
    compress: async (j) => await pipe(j, new CompressionStream('deflate-raw')),
    decompress: async (p) => await pipe(p, new DecompressionStream('deflate-raw')),
    overhead: 1
  },
  {
    name: 'zlib-6',
    label: 'deflate, zlib level 6 (sync)',
    async: false,
    compress: (j) => deflateRawSync(j, { level: 6 }),
    decompress: (p) => inflateRawSync(p),
    overhead: 1
  },
  {
    name: 'zlib-1',
    label: 'deflate, zlib level 1 (sync)',
    async: false,
    compress: (j) => deflateRawSync(j, { level: 1 }),
    decompress: (p) => inflateRawSync(p),
    overhead: 1
  }
]
if (lz4 !== null) {
  const l = lz4
  CODECS.push({
    name: 'lz4js',
    label: `LZ4 block, lz4js ${LZ4_VERSION} (pure JS)`,
    async: false,
    compress: (j) => {
      const dst = new Uint8Array(l.compressBound(j.length))
      lz4Table.fill(0)
      const n = l.compressBlock(j, dst, 0, j.length, lz4Table)
      return n === 0 ? null : dst.subarray(0, n)
    },
    decompress: (p, length) => {
      const dst = new Uint8Array(length)
      l.decompressBlock(p, dst, 0, p.length, 0)
      return dst
    },
    overhead: 5
  })
}

/** Extra variants for the cost of the async machinery on small frames. */
export const MACHINERY: Array<{ name: string, label: string, run: (j: Uint8Array) => unknown }> = [
  { name: 'json', label: 'JSON.stringify + TextEncoder only (no compression: the floor)', run: () => null },
  { name: 'cs-sdk', label: 'CompressionStream via Blob/Response (the SDK\'s pipe)', run: async (j) => await pipe(j, new CompressionStream('deflate-raw')) },
  { name: 'cs-lean', label: 'CompressionStream, writer/reader directly', run: async (j) => await pipeLean(j, new CompressionStream('deflate-raw')) },
  { name: 'zlib-async', label: 'zlib.deflateRaw (async, libuv pool)', run: async (j) => await new Promise((resolve, reject) => deflateRaw(j, (e, r) => { if (e !== null) reject(e); else resolve(r) })) },
  { name: 'zlib-6', label: 'zlib.deflateRawSync level 6', run: (j) => deflateRawSync(j) },
  ...(lz4 !== null ? [{ name: 'lz4js', label: 'lz4js compressBlock', run: (j: Uint8Array): unknown => { const l = lz4; lz4Table.fill(0); return l.compressBlock(j, new Uint8Array(l.compressBound(j.length)), 0, j.length, lz4Table) } }] : [])
]
