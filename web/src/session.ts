/**
 * The login of this browser (the server's /api/session, docs/operations.md
 * "Web app logins"). The password is sent once, over HTTP, and never kept;
 * the browser keeps only the refresh token (localStorage, so a reload stays
 * logged in) and the short-lived access token in memory, which the SDK gives
 * as its MQTT password. Each refresh rotates the refresh token.
 */
const KEY = 'warbler.refresh'

export interface Grant { user: string, accessToken: string, accessExpiresAt: number, refreshToken: string }

/** A refusal of the session API, with its error code (docs/errors.md). */
export class SessionError extends Error {
  constructor (readonly code: string, message: string) { super(message) }
}

async function post (path: string, body: object): Promise<Grant> {
  let res: Response
  try {
    res = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), credentials: 'omit' })
  } catch (err) {
    throw new SessionError('unavailable', String(err))
  }
  const json = await res.json().catch(() => ({})) as { error?: { code: string, message: string } } & Partial<Grant>
  if (!res.ok || json.error !== undefined) throw new SessionError(json.error?.code ?? 'internal', json.error?.message ?? `HTTP ${res.status}`)
  return json as Grant
}

function keep (g: Grant): Grant {
  localStorage.setItem(KEY, g.refreshToken)
  return g
}

export async function logIn (user: string, password: string): Promise<Grant> {
  return keep(await post('/api/session', { user, password }))
}

/** A new access token from the kept refresh token; null when there is none. */
async function oneTabAtATime<T> (fn: () => Promise<T>): Promise<T> {
  // lib.dom types it as always there; it is not outside secure contexts.
  const locks = navigator.locks as LockManager | undefined
  return locks === undefined ? await fn() : await locks.request(KEY, fn)
}

export async function refresh (): Promise<Grant | null> {
  // One tab at a time: two tabs using the same refresh token would look like
  // a stolen copy to the server, which then ends the login. Inside the lock
  // each tab reads the token the one before it stored. Web Locks exist only
  // in secure contexts (https, localhost): a page over plain http from
  // another machine (a Pi on the LAN) goes without.
  return await oneTabAtATime(async () => {
    const token = localStorage.getItem(KEY)
    if (token === null) return null
    try {
      return keep(await post('/api/session/refresh', { refreshToken: token }))
    } catch (err) {
      // Refused (revoked, expired, reused): it will never work again.
      if (err instanceof SessionError && err.code === 'not_authorized') localStorage.removeItem(KEY)
      throw err
    }
  })
}

export async function logOut (): Promise<void> {
  const token = localStorage.getItem(KEY)
  localStorage.removeItem(KEY)
  if (token !== null) await post('/api/session/logout', { refreshToken: token }).catch(() => {})
}
