/**
 * The admin API (docs/operations.md "Admin API") as the console calls it:
 * with the access token of the admin's login, renewed from the kept refresh
 * token once when the server says it ran out.
 */
import { type Grant, refresh } from '../session.js'

/** A refusal of the admin API: its code (docs/errors.md) and the server's message, which names the field. */
export class ApiError extends Error {
  constructor (readonly status: number, readonly code: string, message: string) { super(message) }
}

export class AdminApi {
  constructor (private grant: Grant, private readonly renewed: (g: Grant) => void) {}

  get token (): string { return this.grant.accessToken }

  private async once (method: string, path: string, body?: unknown): Promise<Response> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.grant.accessToken}` }
    if (body !== undefined) headers['content-type'] = 'application/json'
    return await fetch(`/api/v1/${path}`, { method, headers, credentials: 'omit', ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
  }

  /** The response of a call, after one renewal of the access token if it had run out. */
  async raw (method: string, path: string, body?: unknown): Promise<Response> {
    let res = await this.once(method, path, body)
    if (res.status === 401) {
      const g = await refresh()
      if (g !== null) {
        this.grant = g
        this.renewed(g)
        res = await this.once(method, path, body)
      }
    }
    if (!res.ok) {
      const json = await res.json().catch(() => ({})) as { error?: { code: string, message: string } }
      throw new ApiError(res.status, json.error?.code ?? 'internal', json.error?.message ?? `HTTP ${res.status}`)
    }
    return res
  }

  async call<T> (method: string, path: string, body?: unknown): Promise<T> {
    return await (await this.raw(method, path, body)).json() as T
  }

  get<T> (path: string): Promise<T> { return this.call<T>('GET', path) }
}

export interface UserRow { name: string, admin: boolean, service: boolean, disabled: boolean, createdAt: number }
export interface TokenRow { id: string, user: string, name: string, createdAt: number, revokedAt: number | null }
export interface NewToken { id: string, user: string, name: string, token: string, clientId: string, mqttPort: number | null, mqttsPort: number | null }
export interface GroupRow { conv: string, name: string | null, members: number, lastSeq: number, lastTs: number }
export interface MemberRow { user: string, role: string }
export interface RefusalRow { at: number, reason: string, address: string, clientId: string | null, user: string | null, worker?: number }
export interface NodeInfo { version: string, ready: boolean, sysRoot: string, sysInterval: number, ports: Record<string, number>, retention: { days: number, messages: number }, bridge: string, redis: boolean }
