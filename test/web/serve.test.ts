/**
 * The web app as `warbler start` serves it (server/web-app.ts) from the build
 * in dist/web: index.html with the WebSocket ports filled in, a strict
 * Content-Security-Policy on every answer, content types, caching by content
 * hash, gzip, ETags.
 */
import assert from 'node:assert/strict'
import { gunzipSync } from 'node:zlib'
import { test } from 'node:test'
import { spawnNode } from '../helpers/test-node.js'

test('web app: / and its files come with a strict CSP, right types, caching headers and gzip', async (t) => {
  const node = await spawnNode(['--dev'])
  t.after(async () => { await node.stop() })
  const base = `http://127.0.0.1:${node.ports.http ?? 0}`
  const index = await fetch(`${base}/`)
  assert.equal(index.status, 200)
  assert.equal(index.headers.get('content-type'), 'text/html; charset=utf-8')
  assert.equal(index.headers.get('cache-control'), 'no-cache')
  assert.equal(index.headers.get('x-content-type-options'), 'nosniff')
  const csp = index.headers.get('content-security-policy') ?? ''
  assert.match(csp, /default-src 'none'/)
  assert.match(csp, /script-src 'self'(;|$)/, 'scripts from this origin only: no inline, no eval')
  assert.match(csp, /style-src 'self'(;|$)/)
  assert.match(csp, new RegExp(`connect-src 'self' ws://127\\.0\\.0\\.1:${node.ports.ws ?? 0}(;|$)`))
  assert.match(csp, /frame-ancestors 'none'/)
  assert.doesNotMatch(csp, /unsafe|\*/)
  const html = await index.text()
  assert.ok(html.includes(`<meta name="warbler-ws" content="ws:${node.ports.ws ?? 0}">`), html)
  assert.doesNotMatch(html, /<script>|<script [^>]*>[^<]|style=|<style/, 'no inline script or style')

  const script = /src="\/(app-[A-Z0-9]{8}\.js)"/.exec(html)?.[1]
  const style = /href="\/(style-[A-Z0-9]{8}\.css)"/.exec(html)?.[1]
  assert.ok(script !== undefined && style !== undefined, html)
  const js = await fetch(`${base}/${script}`, { headers: { 'accept-encoding': 'gzip' } })
  assert.equal(js.status, 200)
  assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8')
  assert.equal(js.headers.get('cache-control'), 'public, max-age=31536000, immutable')
  assert.equal(js.headers.get('vary'), 'Accept-Encoding')
  const css = await fetch(`${base}/${style}`)
  assert.equal(css.headers.get('content-type'), 'text/css; charset=utf-8')
  assert.match(await css.text(), /\.login/)

  // gzip on request (fetch decodes it; a raw request shows the encoding).
  const raw = await new Promise<{ encoding: string | undefined, body: Buffer }>((resolve, reject) => {
    import('node:http').then(({ get }) => {
      get(`${base}/${script}`, { headers: { 'accept-encoding': 'gzip' } }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ encoding: res.headers['content-encoding'], body: Buffer.concat(chunks) }))
      }).on('error', reject)
    }, reject)
  })
  assert.equal(raw.encoding, 'gzip')
  const plain = await (await fetch(`${base}/${script}`, { headers: { 'accept-encoding': 'identity' } })).text()
  assert.equal(gunzipSync(raw.body).toString('utf8'), plain)
  assert.ok(raw.body.length < plain.length / 2)

  const etag = index.headers.get('etag') ?? ''
  assert.notEqual(etag, '')
  assert.equal((await fetch(`${base}/`, { headers: { 'if-none-match': etag } })).status, 304)
  const head = await fetch(`${base}/`, { method: 'HEAD' })
  assert.equal(head.status, 200)
  assert.equal(await head.text(), '')
  assert.equal((await fetch(`${base}/nothing-here.js`)).status, 404)
  assert.equal((await fetch(`${base}/`, { method: 'POST' })).status, 404)
  // The probes are where they were.
  assert.equal((await fetch(`${base}/healthz`)).status, 200)
})
