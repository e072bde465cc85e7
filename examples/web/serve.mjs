#!/usr/bin/env node
// Serves the web chat example: bundles the SDK for browsers (build.mjs), then
// serves index.html, app.js and the bundle on http://127.0.0.1:8000/.
//
//   node examples/web/serve.mjs [--port 8000] [--host 127.0.0.1]
//
// Open the printed address in two tabs (or two browsers), log in as two users
// and chat. Warbler itself must be running, with its WebSocket listener
// (ws://127.0.0.1:8083/mqtt by default; the page lets you change it).
import { readFile } from 'node:fs/promises'
import http from 'node:http'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { bundleSdk, defaultOutfile } from './build.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const { values: args } = parseArgs({ options: { port: { type: 'string', default: '8000' }, host: { type: 'string', default: '127.0.0.1' } } })

await bundleSdk(defaultOutfile)

const files = {
  '/': [path.join(here, 'index.html'), 'text/html; charset=utf-8'],
  '/index.html': [path.join(here, 'index.html'), 'text/html; charset=utf-8'],
  '/app.js': [path.join(here, 'app.js'), 'text/javascript; charset=utf-8'],
  '/warbler.js': [defaultOutfile, 'text/javascript; charset=utf-8'],
  '/warbler.js.map': [defaultOutfile + '.map', 'application/json']
}

const server = http.createServer(async (req, res) => {
  const f = files[new URL(req.url ?? '/', 'http://x').pathname]
  if (f === undefined) return res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
  try {
    res.writeHead(200, { 'content-type': f[1], 'cache-control': 'no-cache' }).end(await readFile(f[0]))
  } catch {
    res.writeHead(500, { 'content-type': 'text/plain' }).end('cannot read file\n')
  }
})
server.listen(Number(args.port), args.host, () => {
  const { port } = server.address()
  console.log(`web chat on http://${args.host}:${port}/  (Ctrl-C stops)`)
})
const stop = () => server.close(() => process.exit(0))
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
