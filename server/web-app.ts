/**
 * The chat web app on the HTTP port: the files `npm run build` wrote to
 * dist/web (web/build.mjs), read once at start and kept in memory with their
 * gzip (a few tens of KB: compressing each once is cheaper than per request).
 *
 * - `/` is index.html, revalidated on every load (`no-cache` and an ETag), so a
 *   new build is picked up at once; the script and style it names carry a
 *   content hash in their names and are cached for a year (`immutable`).
 * - Every answer has a strict Content-Security-Policy: scripts, styles and
 *   images only from this origin, no inline script or style, no eval, and
 *   connections only to this origin and the node's MQTT-over-WebSocket port
 *   on the host the page was loaded from. The page learns those ports from a
 *   `<meta name="warbler-ws" content="ws:8083 wss:8084">` tag written into
 *   index.html here.
 */
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import type http from 'node:http'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'

const WEB_DIR = fileURLToPath(new URL('../web', import.meta.url))

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml'
}

interface WebFile { body: Buffer, gz: Buffer | null, type: string, etag: string, immutable: boolean }

/** The node's bound ports by listener name (ws, wss...); known once the listeners are bound. */
type Ports = () => Readonly<Record<string, number>>

/** The WebSocket ports for the page: `ws:8083 wss:8084`, either left out when not listening. */
function socketPorts (ports: Ports): string {
  const p = ports()
  return (['ws', 'wss'] as const).filter((n) => p[n] !== undefined).map((n) => `${n}:${p[n] as number}`).join(' ')
}

function load (dir: string): Map<string, WebFile> {
  const files = new Map<string, WebFile>()
  if (!existsSync(dir)) return files
  for (const name of readdirSync(dir)) {
    const type = TYPES[path.extname(name)]
    if (type === undefined) continue
    const body = readFileSync(path.join(dir, name))
    const gz = gzipSync(body, { level: 9 })
    files.set(name === 'index.html' ? '/' : `/${name}`, {
      body,
      gz: gz.length < body.length ? gz : null,
      type,
      etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
      // esbuild names them NAME-HASH.js (web/build.mjs)
      immutable: /-[A-Z0-9]{8}\.(js|css)$/.test(name)
    })
  }
  return files
}

/** A host name fit for a CSP source (the request's Host header without its port), or null. */
function hostOf (req: http.IncomingMessage): string | null {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::\d+)?$/.exec(req.headers.host ?? '')
  return m === null ? null : m[1] as string
}

function policy (req: http.IncomingMessage, ports: Ports): string {
  const host = hostOf(req)
  const p = ports()
  const socket = host === null ? '' : (['ws', 'wss'] as const).filter((n) => p[n] !== undefined).map((n) => ` ${n}://${host}:${p[n] as number}`).join('')
  return [
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    `connect-src 'self'${socket}`, "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'"
  ].join('; ')
}

/** A route for createHttpServer that serves the built app; true when it answered. */
export function webAppRoutes (ports: Ports, dir = WEB_DIR): (req: http.IncomingMessage, res: http.ServerResponse) => boolean {
  const files = load(dir)
  const index = files.get('/')
  return (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return false
    const p = (req.url ?? '/').split('?')[0] as string
    let f = files.get(p)
    if (f === undefined) {
      if (p !== '/') return false
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' })
      res.end('the web app is not built: run `npm run build`\n')
      return true
    }
    if (f === index) {
      // The WebSocket port is known only once the listeners are bound.
      const place = socketPorts(ports)
      const body = Buffer.from(f.body.toString('utf8').replace('<meta name="warbler-ws" content="">', `<meta name="warbler-ws" content="${place}">`))
      f = { ...f, body, gz: gzipSync(body), etag: `"${f.etag.slice(1, -1)}-${place.replace(/\D+/g, '.')}"` }
    }
    const headers: http.OutgoingHttpHeaders = {
      'content-type': f.type,
      'cache-control': f.immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
      etag: f.etag,
      vary: 'Accept-Encoding',
      'content-security-policy': policy(req, ports),
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer'
    }
    if (req.headers['if-none-match'] === f.etag) {
      res.writeHead(304, headers)
      res.end()
      return true
    }
    const gzip = f.gz !== null && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''))
    const body = gzip ? f.gz as Buffer : f.body
    res.writeHead(200, { ...headers, ...(gzip ? { 'content-encoding': 'gzip' } : {}), 'content-length': body.length })
    res.end(req.method === 'HEAD' ? undefined : body)
    return true
  }
}
