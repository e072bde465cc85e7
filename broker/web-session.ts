/**
 * Logins of the web app, on the HTTP port:
 *
 *   POST /api/session          {"user","password"}   log in
 *   POST /api/session/refresh  {"refreshToken"}      a fresh access token; the refresh token rotates
 *   POST /api/session/logout   {"refreshToken"}      revoke that login's refresh and access tokens
 *
 * A login or refresh answers `{user, admin, accessToken, accessExpiresAt,
 * refreshToken, refreshExpiresAt}` (times in ms since the epoch). The access
 * token is a short-lived JWT the browser gives as its MQTT-over-WebSocket
 * password, so the password goes over HTTP once and never over MQTT, and the
 * browser keeps only the refresh token (refresh-tokens.ts). Both logins and
 * refreshes go through the authenticator's limits (auth.ts): one lockout per
 * address for MQTT and HTTP together.
 *
 * Bodies are JSON (`content-type: application/json`, which a cross-site
 * form cannot send without the browser asking first), at most 4 KiB.
 * Errors are `{"error":{"code","message"}}` with codes from docs/errors.md:
 * 400 bad_request (the message names the field), 401 not_authorized, 429
 * rate_limited (with Retry-After), 503 unavailable.
 */
import type http from 'node:http'
import type { ErrorCode } from '@warbler/sdk/protocol'
import { AuthRefused, type Authenticator, type Failed } from './auth.js'
import type { IdentityStore } from './identity/identity-store.js'
import type { Issued, RefreshStore } from './identity/refresh-tokens.js'
import type { SessionRevocations } from './identity/session-revocations.js'
import { JWT_SHAPE, parseDeviceToken } from './identity/identity-store.js'

/** Access tokens last a quarter of an hour: the SDK asks for a new one before each reconnect near the end. */
const ACCESS_TTL_S = 900
const MAX_BODY = 4096

const STATUS: Partial<Record<ErrorCode, number>> = { bad_request: 400, not_authorized: 401, rate_limited: 429, unavailable: 503, internal: 500 }

export interface WebSessionDeps {
  auth: Authenticator
  store: IdentityStore
  refresh: RefreshStore
  /** Where a logout cuts off the login's access tokens too. */
  revocations: SessionRevocations
  /** Whose login it is for the limits and the log (http-address.ts): the socket's peer unless a trusted proxy names another. */
  address: (req: http.IncomingMessage) => string
}

function send (res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' })
  res.end(JSON.stringify(body))
}

/** A refused request: its code (docs/errors.md) and a message naming what was wrong. */
export class RequestError extends Error {
  constructor (readonly code: ErrorCode, message: string) { super(message) }
}

/** The JSON object of a request body, or a RequestError naming what is wrong with it. */
export async function readJson (req: http.IncomingMessage): Promise<Record<string, unknown>> {
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? '')) {
    throw new RequestError('bad_request', 'the body must be JSON with content-type: application/json')
  }
  let size = 0
  const chunks: Buffer[] = []
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length
    if (size > MAX_BODY) throw new RequestError('bad_request', `the body is larger than ${MAX_BODY} bytes`)
    chunks.push(c)
  }
  let v: unknown
  try { v = JSON.parse(Buffer.concat(chunks).toString('utf8')) } catch { throw new RequestError('bad_request', 'the body is not valid JSON') }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new RequestError('bad_request', 'the body must be a JSON object')
  return v as Record<string, unknown>
}

function stringField (body: Record<string, unknown>, name: string, max: number): string {
  const v = body[name]
  if (typeof v !== 'string' || v === '') throw new RequestError('bad_request', `${name} is required (a non-empty string)`)
  if (v.length > max) throw new RequestError('bad_request', `${name} is longer than ${max} characters`)
  return v
}

/** An authenticator refusal as an HTTP error. */
function refusal (err: AuthRefused): RequestError {
  switch (err.reason) {
    case 'login_rate_limited':
    case 'connection_rate': return new RequestError('rate_limited', err.message)
    case 'login_busy': return new RequestError('unavailable', err.message)
    default: return new RequestError('not_authorized', err.message)
  }
}

/** Returns a route handler for createHttpServer: true when it handled the request. */
export function webSessionRoutes (d: WebSessionDeps): (req: http.IncomingMessage, res: http.ServerResponse) => boolean {
  /** The answer to a login or refresh: a new access token and the refresh token given. */
  const grant = async (user: string, refresh: Issued): Promise<unknown> => {
    const accessToken = await d.store.createJwt(user, ACCESS_TTL_S, { sid: refresh.family })
    return {
      user,
      admin: d.auth.user(user)?.admin === true,
      accessToken,
      accessExpiresAt: (Math.floor(Date.now() / 1000) + ACCESS_TTL_S) * 1000,
      refreshToken: refresh.token,
      refreshExpiresAt: refresh.expiresAt
    }
  }
  const routes: Record<string, (body: Record<string, unknown>, address: string) => Promise<unknown>> = {
    '/api/session': async (body, address) => {
      const user = stringField(body, 'user', 64)
      const password = stringField(body, 'password', 4096)
      if (JWT_SHAPE.test(password) || parseDeviceToken(password) !== null) {
        throw new RequestError('bad_request', 'password must be the user\'s password, not a token')
      }
      await d.auth.httpLogin(address, user, password, async () => await d.auth.checkPassword(user, password))
      return await grant(user, await d.refresh.issue(user))
    },
    '/api/session/refresh': async (body, address) => {
      const token = stringField(body, 'refreshToken', 200)
      const r = await d.auth.httpLogin(address, undefined, token, async (): Promise<{ user: string, next: Issued } | Failed> => await d.refresh.rotate(token))
      return await grant(r.user, r.next)
    },
    '/api/session/logout': async (body) => {
      const token = stringField(body, 'refreshToken', 200)
      const family = await d.refresh.revoke(token)
      if (family === null) throw new RequestError('not_authorized', 'not a refresh token of this server (already logged out?)')
      // The access tokens of this login stop working too, and the connections they opened are closed.
      await d.revocations.revokeSession(family)
      return { loggedOut: true }
    }
  }
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0] as string
    const route = Object.hasOwn(routes, path) ? routes[path] : undefined
    if (route === undefined) return false
    void (async () => {
      if (req.method !== 'POST') {
        res.setHeader('allow', 'POST')
        throw new RequestError('bad_request', `${req.method ?? 'this method'} is not supported on ${path}; use POST`)
      }
      send(res, 200, await route(await readJson(req), d.address(req)))
    })().catch((err: unknown) => {
      const e = err instanceof AuthRefused ? refusal(err) : err instanceof RequestError ? err : new RequestError('internal', `the request failed on the server: ${(err as Error).message}`)
      if (res.headersSent) { res.destroy(); return }
      if (e.code === 'rate_limited') res.setHeader('retry-after', '60')
      if (e.code === 'not_authorized') res.setHeader('www-authenticate', 'Bearer')
      send(res, STATUS[e.code] ?? 400, { error: { code: e.code, message: e.message } })
    })
    return true
  }
}
