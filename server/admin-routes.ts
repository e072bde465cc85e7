/**
 * The admin API routes that manage users and device tokens and tell about the
 * node, beside the message service's read-only ones (bridge/admin-api.ts),
 * behind the same admin check. The admin console (/admin) uses them; so can
 * any admin with a token. Each change goes through the same code, with the
 * same checks and messages, as `warbler user|token` (broker/identity/accounts.ts).
 *
 *   GET    /api/v1/users                       list
 *   POST   /api/v1/users                       {"name","password"?,"admin"?,"service"?}
 *   DELETE /api/v1/users/{name}
 *   POST   /api/v1/users/{name}/password       {"password"?}  (generated when left out)
 *   PUT    /api/v1/users/{name}/admin          {"admin": true|false}
 *   PUT    /api/v1/users/{name}/disabled       {"disabled": true|false}
 *   GET    /api/v1/tokens?user=                device tokens (never their secret)
 *   POST   /api/v1/tokens                      {"user","name"}: the token, shown once
 *   DELETE /api/v1/tokens/{id}
 *   GET    /api/v1/refusals                    the node's last refused logins (every worker's)
 *   GET    /api/v1/node                        settings in force, ports, readiness
 *   GET    /api/v1/backup                      a consistent copy of the database
 */
import { randomBytes } from 'node:crypto'
import { createReadStream, rmSync } from 'node:fs'
import type http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { pipeline } from 'node:stream/promises'
import { clientIdBelongsTo } from '@warbler/sdk/protocol'
import { adminCaller, fail, send } from '../bridge/admin-api.js'
import { writeBackup } from '../bridge/archive/backup-files.js'
import type { Authenticator } from '../broker/auth.js'
import { addAccount, changePassword, setDisabled, tokensOf } from '../broker/identity/accounts.js'
import { IdentityError, type IdentityStore } from '../broker/identity/identity-store.js'
import { readJson, RequestError } from '../broker/web-session.js'
import type { RecentFailure } from '../broker/login-log.js'
import type { RefreshStore } from '../broker/identity/refresh-tokens.js'
import type { Config } from '../shared/config.js'
import { DB_FILE } from '../shared/data-dir.js'

export interface AdminRoutesDeps {
  cfg: Config
  store: IdentityStore
  auth: Authenticator
  ports: () => Readonly<Record<string, number>>
  ready: () => boolean
  sysRoot: string
  version: string
  /** The node's web logins: with Redis they are kept there, and a new password or disabling ends them there too. */
  logins: RefreshStore
  /** The node's refused logins, oldest first: this process's, or with `--workers N` every worker's. */
  refusals: () => Promise<RecentFailure[]>
}

type Body = Record<string, unknown>
type Handler = (req: http.IncomingMessage, res: http.ServerResponse, parts: string[], q: URLSearchParams) => Promise<void> | void

/** An optional field of a JSON body: undefined when absent, else it must have the type named. */
function optional<T extends 'string' | 'boolean'> (body: Body, name: string, type: T): (T extends 'string' ? string : boolean) | undefined {
  const v = body[name]
  if (v === undefined) return undefined
  if (typeof v !== type) throw new RequestError('bad_request', `${name} must be ${type === 'string' ? 'a string' : 'true or false'}`)
  return v as T extends 'string' ? string : boolean
}

function required (body: Body, name: string, what: string): string {
  const v = body[name]
  if (typeof v !== 'string' || v === '') throw new RequestError('bad_request', `${name} is required (${what})`)
  return v
}

/** The one field of a body that sets a flag: `{"NAME": true|false}`. */
function flag (body: Body, name: string): boolean {
  only(body, [name])
  const v = optional(body, name, 'boolean')
  if (v === undefined) throw new RequestError('bad_request', `${name} is required (true or false)`)
  return v
}

/** Fields a route does not take are refused by name, rather than ignored. */
function only (body: Body, names: readonly string[]): void {
  const extra = Object.keys(body).find((k) => !names.includes(k))
  if (extra !== undefined) throw new RequestError('bad_request', `unknown field ${JSON.stringify(extra)} (this route takes ${names.join(', ')})`)
}

/** A client id a device may use with a token named `name` of `user`, for the console's QR code. */
function deviceClientId (user: string, name: string, id: string): string {
  const slug = name.toLowerCase().replace(/[^a-z0-9_.-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 24)
  const c = `${user}-${slug === '' ? id : slug}`
  return clientIdBelongsTo(c, user) ? c : `${user}-${id}`
}

/** Stream a fresh backup file, then remove it; the file name says when it was made. */
async function backup (cfg: Config, res: http.ServerResponse): Promise<void> {
  const file = path.join(os.tmpdir(), `warbler-backup-${process.pid}-${randomBytes(6).toString('hex')}.db`)
  try {
    await writeBackup(path.join(cfg.dataDir, DB_FILE), file)
  } catch (err) {
    rmSync(file, { force: true })
    throw err
  }
  const name = `warbler-backup-${new Date().toISOString().replace(/[:.]/g, '-')}.db`
  res.writeHead(200, { 'content-type': 'application/vnd.sqlite3', 'content-disposition': `attachment; filename="${name}"`, 'cache-control': 'no-store' })
  try {
    // pipeline, not pipe: a download the browser drops ends the read too, so the file is always removed.
    await pipeline(createReadStream(file), res)
  } catch {
    res.destroy()
  } finally {
    rmSync(file, { force: true })
  }
}

/** What the console shows about the node: refused logins, settings in force, and a backup. */
function nodeRoutes (d: AdminRoutesDeps): Record<string, Record<string, Handler>> {
  return {
    refusals: { GET: async (_req, res) => { send(res, 200, { refusals: (await d.refusals()).reverse() }) } },
    node: {
      GET: (_req, res) => {
        const { cfg } = d
        send(res, 200, {
          version: d.version,
          ready: d.ready(),
          sysRoot: d.sysRoot,
          sysInterval: cfg.sysInterval,
          ports: d.ports(),
          retention: { days: cfg.retentionDays, messages: cfg.retentionMessages },
          bridge: cfg.bridge,
          redis: cfg.redis !== ''
        })
      }
    },
    backup: { GET: async (_req, res) => { await backup(d.cfg, res) } }
  }
}

function routes (d: AdminRoutesDeps): Record<string, Record<string, Handler>> {
  const { store } = d
  return {
    users: {
      GET: async (_req, res) => {
        const users = (await store.listUsers()).map((u) => ({ name: u.name, admin: u.admin, service: u.service, disabled: u.disabled, createdAt: u.createdAt }))
        send(res, 200, { users })
      },
      POST: async (req, res) => {
        const body = await readJson(req)
        only(body, ['name', 'password', 'admin', 'service'])
        const name = required(body, 'name', 'a user name')
        const password = optional(body, 'password', 'string')
        const admin = optional(body, 'admin', 'boolean') ?? false
        const service = optional(body, 'service', 'boolean') ?? false
        const r = await addAccount(store, name, { ...(password !== undefined ? { password } : {}), admin, service })
        send(res, 201, { name, admin, service, ...(r.password !== null ? { password: r.password } : {}) })
      }
    },
    'users/*': {
      DELETE: async (_req, res, [, name]) => {
        await store.removeUser(name as string)
        send(res, 200, { removed: name })
      }
    },
    'users/*/password': {
      POST: async (req, res, [, name]) => {
        const body = await readJson(req)
        only(body, ['password'])
        const r = await changePassword(store, name as string, optional(body, 'password', 'string'))
        // Those in the database file are ended above; those in Redis here (none are counted twice: ended ones are not counted).
        const endedLogins = r.endedLogins + await d.logins.revokeUser(name as string)
        send(res, 200, { user: name, endedLogins, ...(r.password !== null ? { password: r.password } : {}) })
      }
    },
    'users/*/admin': {
      PUT: async (req, res, [, name]) => {
        const admin = flag(await readJson(req), 'admin')
        await store.setAdmin(name as string, admin)
        send(res, 200, { user: name, admin })
      }
    },
    'users/*/disabled': {
      PUT: async (req, res, [, name]) => {
        const disabled = flag(await readJson(req), 'disabled')
        const r = await setDisabled(store, name as string, disabled)
        const endedLogins = r.endedLogins + (disabled ? await d.logins.revokeUser(name as string) : 0)
        send(res, 200, { user: name, disabled, endedLogins })
      }
    },
    tokens: {
      GET: async (_req, res, _parts, q) => {
        const user = q.get('user') ?? undefined
        const tokens = (await tokensOf(store, user)).map((t) => ({ id: t.id, user: t.user, name: t.name, createdAt: t.createdAt, revokedAt: t.revokedAt }))
        send(res, 200, { tokens })
      },
      POST: async (req, res) => {
        const body = await readJson(req)
        only(body, ['user', 'name'])
        const user = required(body, 'user', 'the user the device logs in as')
        const name = required(body, 'name', 'a name for the device, 1-64 characters')
        const t = await store.createDeviceToken(user, name)
        const p = d.ports()
        send(res, 201, { id: t.id, user, name, token: t.token, clientId: deviceClientId(user, name, t.id), mqttPort: p.mqtt ?? null, mqttsPort: p.mqtts ?? null })
      }
    },
    'tokens/*': {
      DELETE: async (_req, res, [, id]) => {
        await store.revokeDeviceToken(id as string)
        send(res, 200, { revoked: id })
      }
    },
    ...nodeRoutes(d)
  }
}

/** The route key of a path: its first part, then `*` for each value (`users/*\/admin`). */
function keyOf (parts: string[]): string {
  return parts.map((p, i) => (i === 0 || ((parts[0] === 'users') && i === 2) ? p : '*')).join('/')
}

/** Returns a route handler for createHttpServer: true when it handled the request. */
export function adminIdentityRoutes (d: AdminRoutesDeps, bearer: Parameters<typeof adminCaller>[2]): (req: http.IncomingMessage, res: http.ServerResponse) => boolean {
  const table = routes(d)
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (!url.pathname.startsWith('/api/v1/')) return false
    let parts: string[]
    try {
      parts = url.pathname.slice('/api/v1/'.length).split('/').map(decodeURIComponent)
    } catch {
      return false // the message service's routes answer it
    }
    const methods = table[keyOf(parts)]
    if (methods === undefined) return false
    void (async () => {
      if (await adminCaller(req, res, bearer) === null) return
      const handler = methods[req.method ?? '']
      if (handler === undefined) {
        res.setHeader('allow', Object.keys(methods).join(', '))
        return fail(res, 'bad_request', `${req.method ?? 'this method'} is not supported on ${url.pathname}; use ${Object.keys(methods).join(' or ')}`)
      }
      await handler(req, res, parts, url.searchParams)
    })().catch((err: unknown) => {
      if (res.headersSent) { res.destroy(); return }
      if (err instanceof IdentityError || err instanceof RequestError) return fail(res, err.code, err.message)
      if ((err as Error).name === 'BackupError') return fail(res, 'internal', (err as Error).message)
      fail(res, 'internal', `the request failed on the server: ${(err as Error).message}`)
    })
    return true
  }
}
