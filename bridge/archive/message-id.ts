/**
 * Server message ids: time-sortable (48-bit ms time first, so ids of one
 * conversation sort like their seqs), with 64 random bits so that ids never
 * collide across restarts or nodes.
 */
import { randomBytes } from 'node:crypto'

/** Random bytes for message ids, drawn 4 KiB at a time. */
let pool = Buffer.alloc(0)
let poolAt = 0

/** A time-sortable server message id: 48-bit ms time + 64 random bits, base32hex. */
export function newMessageId (now = Date.now()): string {
  const b = Buffer.alloc(14)
  b.writeUIntBE(now, 0, 6)
  if (poolAt + 8 > pool.length) {
    pool = randomBytes(4096)
    poolAt = 0
  }
  pool.copy(b, 6, poolAt, poolAt + 8)
  poolAt += 8
  let out = ''
  let bits = 0
  let value = 0
  for (const byte of b) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += '0123456789abcdefghijklmnopqrstuv'[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += '0123456789abcdefghijklmnopqrstuv'[(value << (5 - bits)) & 31]
  return out
}
