/**
 * Wait for a login to be answered with a given CONNACK code, trying every
 * 50 ms up to a bound, and say how long it took: for changes that reach a
 * node from elsewhere (another node through Redis) rather than at once.
 */
import { connackCode } from './test-node.js'

export interface Login { url: string, username: string, password: string, clientId?: string, protocolVersion?: 4 | 5 }

/** Milliseconds until a login gets `code` (0: accepted); throws after `ms` with the last code seen. */
export async function loginAnswers (l: Login, code: number, ms: number): Promise<number> {
  const start = Date.now()
  let last = -1
  for (;;) {
    last = await connackCode(l.url, { username: l.username, password: l.password, clientId: l.clientId ?? l.username, protocolVersion: l.protocolVersion ?? 4 }).catch(() => -1)
    const took = Date.now() - start
    if (last === code) return took
    if (took > ms) throw new Error(`login of ${l.username} at ${l.url}: CONNACK ${last} after ${took} ms, waited for ${code}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}
