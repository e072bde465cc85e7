#!/usr/bin/env node
// Bundles the SDK for browsers: @warbler/sdk (compiled in sdk/dist) with the
// IndexedDB outbox and mqtt.js's own browser build, as one ES module.
//
//   node examples/web/build.mjs [OUTFILE]     default: dist/browser/warbler.js
//   npm run build:browser                     compiles the SDK first, then this
//
// esbuild's `platform: 'browser'` picks mqtt's "browser" export
// (mqtt/dist/mqtt.esm.js, which carries its own Buffer and stream shims), so
// no Node built-in ends up in the bundle. Your own app can bundle the SDK the
// same way: import from '@warbler/sdk' and '@warbler/sdk/idb-outbox'.
import { existsSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const sdkDist = path.join(root, 'sdk', 'dist')
// Outside sdk/dist, so that it does not end up in the SDK's npm package.
export const defaultOutfile = path.join(root, 'dist', 'browser', 'warbler.js')

/** Write the bundle (and its source map) to `outfile`; resolves to its size in bytes. */
export async function bundleSdk (outfile = defaultOutfile, { minify = true } = {}) {
  if (!existsSync(path.join(sdkDist, 'index.js'))) {
    throw new Error('sdk/dist is missing: run `npx tsc -p sdk/tsconfig.json` (npm ci does it) first')
  }
  const result = await build({
    stdin: {
      contents: "export * from './index.js'\nexport { IndexedDbOutbox } from './idb-outbox.js'\n",
      resolveDir: sdkDist,
      sourcefile: 'warbler-browser.js',
      loader: 'js'
    },
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2022'],
    minify,
    sourcemap: true,
    legalComments: 'eof',
    metafile: true,
    logLevel: 'warning',
    outfile
  })
  const inputs = Object.keys(result.metafile.inputs)
  const nodeOnly = inputs.filter((p) => p.includes('node_modules/mqtt/build/') || p.startsWith('node:'))
  if (nodeOnly.length > 0) throw new Error(`the browser bundle pulled in Node-only code: ${nodeOnly.join(', ')}`)
  return result.metafile.outputs[path.relative(process.cwd(), outfile)]?.bytes ?? 0
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = path.resolve(process.argv[2] ?? defaultOutfile)
  const bytes = await bundleSdk(out)
  console.log(`${path.relative(process.cwd(), out)} (${Math.round(bytes / 1024)} KB)`)
}
