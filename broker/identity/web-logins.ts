/**
 * Where a node keeps its web logins: the refresh tokens and the revoked
 * access tokens. Without Redis, in the node's SQLite file and in memory
 * (refresh-tokens.ts); with Redis, in Redis, shared by every worker and node
 * on it (shared-refresh-tokens.ts, session-revocations.ts), so a login made
 * on one node refreshes and logs out on any other.
 */
import { Redis } from 'ioredis'
import type { Database } from '../../shared/sqlite.js'
import type { Logger } from '../../shared/log.js'
import { redactRedisUrl, RedisUnavailableError } from '../persistence.js'
import { RefreshTokens, type RefreshStore } from './refresh-tokens.js'
import { SessionRevocations } from './session-revocations.js'
import { SharedRefreshTokens } from './shared-refresh-tokens.js'

const CONNECT_TIMEOUT_MS = 5000

export interface WebLogins {
  refresh: RefreshStore
  revocations: SessionRevocations
  close: () => Promise<void>
}

/** `password(user)`: the fingerprint of the user's password now, undefined when the user is gone or disabled. */
export async function openWebLogins (redisUrl: string, db: Database, log: Logger, password: (user: string) => string | undefined): Promise<WebLogins> {
  if (redisUrl === '') {
    return { refresh: await RefreshTokens.open(db, { log }), revocations: await SessionRevocations.open(null, log), close: async () => {} }
  }
  // The table is brought to this code's version at start all the same: `warbler user passwd` and the admin API
  // end the logins kept there, and a migration is better run now than by the CLI beside a running node.
  await RefreshTokens.open(db, { log })
  const main = new Redis(redisUrl, { lazyConnect: true, connectTimeout: CONNECT_TIMEOUT_MS, maxRetriesPerRequest: 1, retryStrategy: (times) => Math.min(times * 100, 2000) })
  const sub = main.duplicate()
  // Reported by the failing request (a login answers 500 naming it); without a listener ioredis prints each.
  main.on('error', () => {})
  sub.on('error', () => {})
  const close = async (): Promise<void> => {
    sub.disconnect()
    await main.quit().catch(() => { main.disconnect() })
  }
  try {
    await Promise.all([main.connect(), sub.connect()])
    return { refresh: new SharedRefreshTokens(main, password), revocations: await SessionRevocations.open({ main, sub }, log), close }
  } catch (err) {
    await close()
    throw new RedisUnavailableError(`cannot connect to redis at ${redactRedisUrl(redisUrl)}: ${(err as Error).message} (web logins)`)
  }
}
