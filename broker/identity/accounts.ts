/**
 * The user and device-token changes that both `warbler user|token` (cli/) and
 * the admin HTTP API (server/admin-routes.ts) make: one place for their
 * checks, so that both refuse the same input with the same message and code.
 * The store itself checks names, passwords and token names (identity-store.ts).
 */
import { IdentityError, type DeviceTokenRecord, type IdentityStore } from './identity-store.js'
import { randomPassword } from './password.js'
import { RefreshTokens } from './refresh-tokens.js'

export const ADMIN_OR_SERVICE = 'a user is an admin or a service account, not both'

/** Create a user; without a password one is generated and returned (shown once). */
export async function addAccount (store: IdentityStore, name: string, opts: { password?: string, admin?: boolean, service?: boolean }): Promise<{ password: string | null }> {
  if (opts.admin === true && opts.service === true) throw new IdentityError('bad_request', ADMIN_OR_SERVICE)
  const password = opts.password ?? randomPassword()
  await store.addUser(name, password, opts.admin === true, opts.service === true)
  return { password: opts.password === undefined ? password : null }
}

/**
 * Set a user's password (generated when not given) and end the user's web
 * app logins: whoever logged in with the old password must not stay logged in.
 */
export async function changePassword (store: IdentityStore, name: string, given?: string): Promise<{ password: string | null, endedLogins: number }> {
  const password = given ?? randomPassword()
  await store.setPassword(name, password)
  const endedLogins = await (await RefreshTokens.open(store.db)).revokeUser(name)
  return { password: given === undefined ? password : null, endedLogins }
}

/**
 * Disable a user (kept, with its tokens: every login refused, live
 * connections closed within a second, web app logins ended) or enable it again.
 */
export async function setDisabled (store: IdentityStore, name: string, disabled: boolean): Promise<{ endedLogins: number }> {
  await store.setDisabled(name, disabled)
  return { endedLogins: disabled ? await (await RefreshTokens.open(store.db)).revokeUser(name) : 0 }
}

/** The device tokens of one user (who must exist), or of all users. */
export async function tokensOf (store: IdentityStore, user?: string): Promise<DeviceTokenRecord[]> {
  if (user !== undefined && !(await store.listUsers()).some((u) => u.name === user)) {
    throw new IdentityError('not_found', `no user ${user}`)
  }
  return await store.listDeviceTokens(user)
}
