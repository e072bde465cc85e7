/**
 * The shape of a web refresh token (`wbr.<id>.<secret>`), shared by both of
 * its stores (refresh-tokens.ts in SQLite, shared-refresh-tokens.ts in
 * Redis), so that a token minted by one kind of node reads the same on the
 * other and both compare secrets the same way: only SHA-256 of the secret is
 * kept, and it is compared in constant time.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { hashSecret } from './identity-store.js'

const SHAPE = /^wbr\.([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$/

/** How long a refresh token lasts unused: a browser idle for longer logs in again. */
export const REFRESH_TTL_MS = 30 * 86400_000

/** A new token: its id (the store's key), the token to hand out, and the hash of its secret to keep. */
export function mintRefreshToken (): { id: string, token: string, secretHash: Buffer } {
  const id = randomBytes(8).toString('hex')
  const secret = randomBytes(32).toString('base64url')
  return { id, token: `wbr.${id}.${secret}`, secretHash: hashSecret(secret) }
}

/** The id of a well-formed token and a check of its secret against a stored hash; null when it is not one of ours. */
export function readRefreshToken (token: string): { id: string, matches: (storedHash: Buffer) => boolean } | null {
  const m = SHAPE.exec(token)
  if (m === null) return null
  const secretHash = hashSecret(m[2] as string)
  return { id: m[1] as string, matches: (stored) => stored.length === secretHash.length && timingSafeEqual(secretHash, stored) }
}

/** A new login's family id. */
export function newFamily (): string {
  return randomBytes(8).toString('hex')
}
