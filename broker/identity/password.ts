/**
 * Password hashing with scrypt (node:crypto), stored as
 * `scrypt$N$r$p$salt$hash` (salt and hash in base64). Verification runs in
 * libuv's thread pool and compares in constant time.
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto'

const N = 16384
const R = 8
const P = 1
const KEYLEN = 32

function derive (password: string, salt: Buffer, n: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, KEYLEN, { N: n, r, p, maxmem: 128 * n * r * 2 }, (err, key) => {
      err !== null ? reject(err) : resolve(key)
    })
  })
}

export async function hashPassword (password: string): Promise<string> {
  const salt = randomBytes(16)
  const key = await derive(password, salt, N, R, P)
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64')}$${key.toString('base64')}`
}

interface HashParams { n: number, r: number, p: number, salt: Buffer, key: Buffer }

/** The parts of a stored hash, or null if it is not one this module could have made. */
function parseHash (stored: string): HashParams | null {
  const parts = stored.split('$')
  if (parts.length !== 6 || parts[0] !== 'scrypt') return null
  const [n, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])]
  const salt = Buffer.from(parts[4] as string, 'base64')
  const key = Buffer.from(parts[5] as string, 'base64')
  if (!Number.isInteger(n) || !Number.isInteger(r) || !Number.isInteger(p) || n < 2 || r < 1 || p < 1) return null
  if (salt.length === 0 || key.length !== KEYLEN) return null
  return { n, r, p, salt, key }
}

/** The cost parameters and sizes of a stored hash (what its check costs), or null if malformed. */
export function hashParams (stored: string): { n: number, r: number, p: number, saltBytes: number, keyBytes: number } | null {
  const h = parseHash(stored)
  return h === null ? null : { n: h.n, r: h.r, p: h.p, saltBytes: h.salt.length, keyBytes: h.key.length }
}

export async function verifyPassword (password: string, stored: string): Promise<boolean> {
  const h = parseHash(stored)
  if (h === null) return false
  const key = await derive(password, h.salt, h.n, h.r, h.p)
  return timingSafeEqual(key, h.key)
}

/** A random password for generated credentials (base64url, 128 bits). */
export function randomPassword (): string {
  return randomBytes(16).toString('base64url')
}
