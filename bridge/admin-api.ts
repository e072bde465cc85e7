/**
 * The admin HTTP API of the message service, on the HTTP port next to
 * /metrics. Every route needs `Authorization: Bearer TOKEN` with an access or
 * device token of an admin user: without a valid token (none, not a bearer
 * token, unknown, expired, revoked) 401 `not_authorized` with
 * `WWW-Authenticate: Bearer`; with a valid token of a user who is not an
 * admin, 403 `forbidden` (who it is is known, another token would not help).
 * Answers are JSON; errors are `{"error":{"code","message"}}` with codes
 * from docs/errors.md.
 *
 *   GET /api/v1/conversations/{conv}/messages?before=&after=&limit=
 *   GET /api/v1/conversations/{conv}/members
 *   GET /api/v1/messages/{id}
 *   GET /api/v1/users/{user}/conversations?limit=
 *   GET /api/v1/users/{user}/unread
 *   GET /api/v1/search?user=&q=&conv=&limit=
 *   GET /api/v1/groups?limit=
 *
 * The node adds the routes that change users and tokens (server/admin-routes.ts),
 * behind the same check (adminCaller).
 */
import type http from 'node:http'
import { type ErrorCode, isConversationId, isValidUsername } from '@warbler/sdk/protocol'
import type { ArchiveReader } from './archive/reader.js'

export interface AdminApiDeps {
  reader: ArchiveReader
  /** The user a bearer token belongs to, with its admin flag; null if the token is not valid. */
  bearer: (token: string) => Promise<{ user: string, admin: boolean } | null>
}

const STATUS: Partial<Record<ErrorCode, number>> = { bad_request: 400, not_authorized: 401, forbidden: 403, not_found: 404, conflict: 409, internal: 500 }

export function send (res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' })
  res.end(JSON.stringify(body))
}

export function fail (res: http.ServerResponse, code: ErrorCode, message: string): void {
  send(res, STATUS[code] ?? 400, { error: { code, message } })
}

type Bearer = AdminApiDeps['bearer']

/**
 * Who calls, when it is an admin; otherwise the request is answered (401
 * without a valid token, 403 for a user who is not an admin) and null returned.
 */
export async function adminCaller (req: http.IncomingMessage, res: http.ServerResponse, bearer: Bearer): Promise<string | null> {
  const auth = req.headers.authorization ?? ''
  const token = /^Bearer /i.test(auth) ? auth.slice(7).trim() : ''
  const who = token === '' ? null : await bearer(token)
  if (who === null) {
    res.setHeader('www-authenticate', 'Bearer')
    fail(res, 'not_authorized', 'an admin access or device token is required (Authorization: Bearer TOKEN)')
    return null
  }
  if (!who.admin) {
    fail(res, 'forbidden', `user ${who.user} is not an admin; the admin API needs an admin's token (warbler user admin NAME --on)`)
    return null
  }
  return who.user
}

function intQuery (q: URLSearchParams, name: string, min: number, max: number): number | undefined | Error {
  const v = q.get(name)
  if (v === null || v === '') return undefined
  const n = /^\d+$/.test(v) ? Number(v) : NaN
  if (!Number.isSafeInteger(n) || n < min || n > max) return new Error(`${name} must be a whole number from ${min} to ${max}`)
  return n
}

const CONV_HINT = 'a conversation id (d:USER:USER or g:ID)'

/** Returns a route handler for createHttpServer: true when it handled the request. */
export function adminRoutes (d: AdminApiDeps): (req: http.IncomingMessage, res: http.ServerResponse) => boolean {
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (!url.pathname.startsWith('/api/v1/')) return false
    void (async () => {
      if (await adminCaller(req, res, d.bearer) === null) return
      if (req.method !== 'GET') {
        res.setHeader('allow', 'GET')
        return fail(res, 'bad_request', `${req.method ?? 'this method'} is not supported; the admin API is read-only (GET)`)
      }
      let parts: string[]
      try {
        parts = url.pathname.slice('/api/v1/'.length).split('/').map(decodeURIComponent)
      } catch {
        return fail(res, 'bad_request', 'the path is not valid percent-encoded UTF-8')
      }
      const q = url.searchParams
      if (parts[0] === 'conversations' && parts.length === 3 && (parts[2] === 'members' || parts[2] === 'messages')) {
        const conv = parts[1] as string
        if (!isConversationId(conv)) return fail(res, 'bad_request', `conv must be ${CONV_HINT}`)
        let opts: { before?: number, after?: number, limit: number } | undefined
        if (parts[2] === 'messages') {
          const limit = intQuery(q, 'limit', 1, 1000)
          const before = intQuery(q, 'before', 1, Number.MAX_SAFE_INTEGER)
          const after = intQuery(q, 'after', 0, Number.MAX_SAFE_INTEGER)
          for (const v of [limit, before, after]) if (v instanceof Error) return fail(res, 'bad_request', v.message)
          opts = { limit: (limit as number | undefined) ?? 100 }
          if (before !== undefined) opts.before = before as number
          if (after !== undefined) opts.after = after as number
        }
        if (await d.reader.conversation(conv) === null) return fail(res, 'not_found', `no conversation ${conv}`)
        if (opts === undefined) return send(res, 200, { members: await d.reader.members(conv) })
        return send(res, 200, await d.reader.history(conv, opts))
      }
      if (parts[0] === 'messages' && parts.length === 2) {
        const m = await d.reader.message(parts[1] as string)
        return m === null ? fail(res, 'not_found', `no message ${parts[1] as string}`) : send(res, 200, m)
      }
      if (parts[0] === 'users' && parts.length === 3 && (parts[2] === 'conversations' || parts[2] === 'unread')) {
        const user = parts[1] as string
        if (!isValidUsername(user)) return fail(res, 'bad_request', 'user must be a user name (1-32 of a-z 0-9 _ . starting with a letter)')
        if (parts[2] === 'conversations') {
          const limit = intQuery(q, 'limit', 1, 1000)
          if (limit instanceof Error) return fail(res, 'bad_request', limit.message)
          return send(res, 200, { conversations: await d.reader.conversations(user, limit ?? 100) })
        }
        return send(res, 200, await d.reader.unread(user))
      }
      if (parts[0] === 'search' && parts.length === 1) {
        const user = q.get('user') ?? ''
        const text = q.get('q') ?? ''
        const conv = q.get('conv')
        const limit = intQuery(q, 'limit', 1, 100)
        if (!isValidUsername(user)) return fail(res, 'bad_request', 'user must be a user name (search runs in that user\'s conversations)')
        if (text.trim() === '' || text.length > 200) return fail(res, 'bad_request', 'q must be 1-200 characters')
        if (conv !== null && !isConversationId(conv)) return fail(res, 'bad_request', `conv must be ${CONV_HINT}`)
        if (limit instanceof Error) return fail(res, 'bad_request', limit.message)
        const opts: { conv?: string, limit: number } = { limit: limit ?? 20 }
        if (conv !== null) opts.conv = conv
        return send(res, 200, { messages: await d.reader.search(user, text, opts) })
      }
      if (parts[0] === 'groups' && parts.length === 1) {
        const limit = intQuery(q, 'limit', 1, 1000)
        if (limit instanceof Error) return fail(res, 'bad_request', limit.message)
        return send(res, 200, { groups: await d.reader.groups(limit ?? 200) })
      }
      fail(res, 'not_found', `no route GET ${url.pathname} (see docs/operations.md)`)
    })().catch((err: unknown) => {
      if (res.headersSent) { res.destroy(); return }
      fail(res, 'internal', `the request failed on the server: ${(err as Error).message}`)
    })
    return true
  }
}
