#!/usr/bin/env node
// Builds the chat web app into dist/web, which `warbler start` serves at /
// (server/web-app.ts). `npm run build` runs it, so `npm ci` (through
// `prepare`) does too: users never build it themselves.
//
//   node web/build.mjs [--sizes]   --sizes: print each file and the gzip size of the app
//
// esbuild bundles web/src/main.ts with the SDK (sdk/dist, compiled first) and
// mqtt's own browser build into one ES module, and the style sheet beside it;
// both get a content hash in their names, so the server may cache them for a
// year, and index.html is written with those names. Nothing is fetched from
// elsewhere at run time: the app works with no network but the node's.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import { build } from 'esbuild'

const here = path.dirname(fileURLToPath(import.meta.url))
const root = path.resolve(here, '..')
const outdir = path.join(root, 'dist', 'web')

/** Build into `dir`; resolves to each output's name with its size and gzip size in bytes. */
export async function buildWeb (dir = outdir) {
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  const result = await build({
    entryPoints: { app: path.join(here, 'src', 'main.ts'), style: path.join(here, 'src', 'app.css') },
    entryNames: '[name]-[hash]',
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2022'],
    minify: true,
    sourcemap: 'linked',
    legalComments: 'eof',
    metafile: true,
    logLevel: 'warning',
    outdir: dir
  })
  const nodeOnly = Object.keys(result.metafile.inputs).filter((p) => p.includes('node_modules/mqtt/build/') || p.startsWith('node:'))
  if (nodeOnly.length > 0) throw new Error(`the web app pulled in Node-only code: ${nodeOnly.join(', ')}`)
  const outputs = Object.entries(result.metafile.outputs)
  const named = (entry, ext) => {
    const o = outputs.find(([file, meta]) => file.endsWith(ext) && meta.entryPoint !== undefined && path.basename(file).startsWith(`${entry}-`))
    if (o === undefined) throw new Error(`esbuild wrote no ${entry}${ext}`)
    return path.basename(o[0])
  }
  const html = readFileSync(path.join(here, 'index.html'), 'utf8')
    .replace('href="/app.css"', `href="/${named('style', '.css')}"`)
    .replace('src="/app.js"', `src="/${named('app', '.js')}"`)
  writeFileSync(path.join(dir, 'index.html'), html)
  const sizes = {}
  for (const name of ['index.html', named('app', '.js'), named('style', '.css')]) {
    const body = readFileSync(path.join(dir, name))
    sizes[name] = { bytes: body.length, gzip: gzipSync(body, { level: 9 }).length }
  }
  return sizes
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const sizes = await buildWeb()
  let total = 0
  for (const [name, s] of Object.entries(sizes)) {
    total += s.gzip
    if (process.argv.includes('--sizes')) console.log(`dist/web/${name}: ${s.bytes} bytes, ${s.gzip} gzipped`)
  }
  if (process.argv.includes('--sizes')) console.log(`web app: ${total} bytes gzipped (${(total / 1024).toFixed(1)} KiB)`)
}
