/**
 * The operator's HTTP port: `/healthz` (the process answers), `/readyz`
 * (every listener is bound and storage is open; 503 while starting or
 * stopping) and `/metrics` (Prometheus text format).
 */
import http from 'node:http'
import type { Registry } from 'prom-client'

export interface HttpDeps {
  /** A registry, or anything that renders the exposition text (a cluster's primary aggregates its workers'). */
  registry: Pick<Registry, 'metrics' | 'contentType'>
  ready: () => boolean
  /** Extra routes (the message service adds its admin API here). */
  routes?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean
}

export function createHttpServer (d: HttpDeps): http.Server {
  return http.createServer((req, res) => {
    const url = req.url ?? '/'
    const path = url.split('?')[0]
    if (req.method === 'GET' && path === '/healthz') return send(res, 200, 'ok\n')
    if (req.method === 'GET' && path === '/readyz') return d.ready() ? send(res, 200, 'ready\n') : send(res, 503, 'not ready\n')
    if (req.method === 'GET' && path === '/metrics') {
      d.registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': d.registry.contentType })
        res.end(text)
      }, (err: Error) => send(res, 500, `metrics failed: ${err.message}\n`))
      return
    }
    if (d.routes?.(req, res) === true) return
    send(res, 404, 'not found\n')
  })
}

function send (res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8' })
  res.end(body)
}
