/**
 * The operator's HTTP port: `/healthz` (the process answers), `/readyz`
 * (every listener is bound and storage is open; 503 while starting or
 * stopping) and `/metrics` (Prometheus text format). With a metrics token
 * (`metricsTokenFile`), `/metrics` answers only a request that carries it as
 * `Authorization: Bearer TOKEN`; the probes stay open, since load balancers
 * and supervisors ask them without credentials. It also serves the chat web
 * app at `/` (web-app.ts) and its logins (broker/web-session.ts).
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import http from 'node:http'
import type { Registry } from 'prom-client'

export interface HttpDeps {
  /**
   * A registry, or anything that renders the exposition text (a cluster's
   * primary aggregates its workers'). Without one, /metrics is not served.
   */
  registry?: Pick<Registry, 'metrics' | 'contentType'>
  /** The token /metrics requires; none: /metrics is open. */
  metricsToken?: string
  ready: () => boolean
  /** The web app's files (web-app.ts): only GET and HEAD of `/` and the files it names, before the routes below. */
  web?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean
  /** Extra routes (the web app's logins, the message service's admin API). */
  routes?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean
}

/** The token of an `Authorization: Bearer TOKEN` header, or null without one. */
function bearerToken (req: http.IncomingMessage): string | null {
  const m = /^Bearer +(\S+) *$/i.exec(req.headers.authorization ?? '')
  return m === null ? null : m[1] as string
}

/**
 * Whether a request carries the expected token. Both sides are hashed first so
 * that timingSafeEqual compares equal lengths and the time taken says nothing
 * about the token's length or its first differing byte.
 */
function tokenMatcher (expected: string): (req: http.IncomingMessage) => boolean {
  const want = createHash('sha256').update(expected).digest()
  return (req) => {
    const got = bearerToken(req)
    return got !== null && timingSafeEqual(createHash('sha256').update(got).digest(), want)
  }
}

export function createHttpServer (d: HttpDeps): http.Server {
  const authorized = d.metricsToken === undefined ? () => true : tokenMatcher(d.metricsToken)
  return http.createServer((req, res) => {
    const url = req.url ?? '/'
    const path = url.split('?')[0]
    if (req.method === 'GET' && path === '/healthz') return send(res, 200, 'ok\n')
    if (req.method === 'GET' && path === '/readyz') return d.ready() ? send(res, 200, 'ready\n') : send(res, 503, 'not ready\n')
    if (req.method === 'GET' && path === '/metrics' && d.registry !== undefined) {
      if (!authorized(req)) {
        res.setHeader('www-authenticate', 'Bearer')
        return send(res, 401, 'the metrics token is required (Authorization: Bearer TOKEN, the content of metricsTokenFile)\n')
      }
      const registry = d.registry
      registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': registry.contentType })
        res.end(text)
      }, (err: Error) => send(res, 500, `metrics failed: ${err.message}\n`))
      return
    }
    if (d.web?.(req, res) === true) return
    if (d.routes?.(req, res) === true) return
    send(res, 404, 'not found\n')
  })
}

function send (res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' })
  res.end(body)
}
