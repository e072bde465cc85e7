/**
 * Users, device tokens and the token-signing key, shared by every node on one
 * Redis. Each node keeps authenticating from its own SQLite store (a login
 * never waits on Redis); this module keeps that store and the shared copy in
 * Redis the same (replica-merge.ts merges them).
 *
 * In Redis: a hash per kind (`warbler:identity:users`, `...:tokens`; field =
 * user name or token id, value = the record's JSON: scrypt hash, flags,
 * SHA-256 of a token's secret, never a secret itself), the signing key
 * (`...:jwt_key`, written once with SET NX, so nodes seeding at the same time
 * end with one key), a change counter (`...:version`, absent until a node first
 * seeds the copy) and a pub/sub channel announcing each change.
 *
 * A merge runs: at start, before the node takes logins; on every announced
 * change; when the counter moved without an announcement heard (checked every
 * second); when this node's store changed (the CLI writes it; checked every
 * 250 ms); and when Redis is back after an outage. While Redis is away, changes
 * made here stay in SQLite (and count for logins here) and are pushed by the
 * first merge that reaches Redis. One process per node runs this (a cluster's
 * worker 0); the other workers read the same SQLite file.
 */
import { Redis } from 'ioredis'
import type { Logger } from '../../shared/log.js'
import { IdentityStore } from './identity-store.js'
import { adoptKey, KINDS, localKey, merge, type MergePlan, pushed, type Records } from './replica-merge.js'
import { redactRedisUrl, RedisUnavailableError } from '../persistence.js'

const PREFIX = 'warbler:identity:'
const KEY = { users: `${PREFIX}users`, tokens: `${PREFIX}tokens`, jwtKey: `${PREFIX}jwt_key`, version: `${PREFIX}version` } as const
const CHANNEL = `${PREFIX}changed`
/** How often this node's store and the shared counter are looked at, for changes no announcement told of. */
const LOCAL_POLL_MS = 250
const REMOTE_POLL_MS = 1000
const CONNECT_TIMEOUT_MS = 5000

export interface IdentityReplica {
  /** Run one merge now (resolves when it is done; rejects if Redis could not be reached). */
  sync: () => Promise<void>
  close: () => Promise<void>
}

function connect (url: string): Redis {
  return new Redis(url, {
    lazyConnect: true,
    connectTimeout: CONNECT_TIMEOUT_MS,
    // A merge fails at once while Redis is away (nothing waits in a queue): the reconnect runs it again.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    retryStrategy: (times) => Math.min(times * 100, 2000)
  })
}

async function readRemote (redis: Redis): Promise<{ records: Records, key: Buffer | null, version: string | null }> {
  const res = await redis.multi().hgetall(KEY.users).hgetall(KEY.tokens).getBuffer(KEY.jwtKey).get(KEY.version).exec()
  if (res === null) throw new Error('redis transaction aborted')
  for (const [err] of res) if (err !== null) throw err
  const [users, tokens, key, version] = res.map(([, v]) => v) as [Record<string, string>, Record<string, string>, Buffer | null, string | null]
  return { records: { users: new Map(Object.entries(users)), tokens: new Map(Object.entries(tokens)) }, key, version }
}

/** Write this node's changes and announce them, all in one transaction. */
async function push (redis: Redis, plan: MergePlan['push']): Promise<string> {
  const m = redis.multi()
  for (const kind of KINDS) {
    for (const [k, text] of plan[kind]) {
      if (text === null) m.hdel(KEY[kind], k)
      else m.hset(KEY[kind], k, text)
    }
  }
  m.incr(KEY.version)
  const res = await m.exec()
  if (res === null) throw new Error('redis transaction aborted')
  for (const [err] of res) if (err !== null) throw err
  const version = String(res[res.length - 1]?.[1])
  await redis.publish(CHANNEL, version)
  return version
}

/** The first node to reach Redis sets the signing key (SET NX); every node then uses the one in Redis. */
async function shareKey (redis: Redis, store: IdentityStore, shared: Buffer | null, log: Logger): Promise<void> {
  const own = await localKey(store.db)
  if (shared === null && own !== undefined) {
    await redis.set(KEY.jwtKey, own, 'NX')
    shared = await redis.getBuffer(KEY.jwtKey)
  }
  if (shared !== null && shared.length !== 32) {
    // Not one a node wrote (they are 32 random bytes): keep this node's key rather than sign with it.
    log.warn('identity: the token-signing key in redis is not 32 bytes; keeping this node\'s own key', { key: KEY.jwtKey, bytes: shared.length })
    return
  }
  if (shared !== null && (own === undefined || !own.equals(shared))) {
    await adoptKey(store.db, shared)
    log.info('identity: took the token-signing key shared through redis')
  }
}

/** What tells a running node to merge: announcements, the two counters' polls, and Redis coming back. */
async function watch (w: {
  redis: Redis
  sub: Redis
  store: IdentityStore
  log: Logger
  where: string
  background: () => void
  idle: () => boolean
  seen: () => { version: string | null, local: string }
}): Promise<NodeJS.Timeout[]> {
  const { redis, sub, store, background } = w
  sub.on('message', (_channel: string, version: string) => { if (version !== w.seen().version) background() })
  // Without it, changes elsewhere are still found by the counter's poll, within a second.
  await sub.connect().then(async () => await sub.subscribe(CHANNEL)).catch((err: unknown) => {
    w.log.warn('identity: cannot subscribe to changes in redis; polling for them', { redis: w.where, error: (err as Error).message })
  })
  redis.on('ready', background)
  const timers = [
    setInterval(() => {
      if (!w.idle()) return
      store.dataVersion().then((v) => { if (v !== w.seen().local) background() }, () => {})
    }, LOCAL_POLL_MS),
    setInterval(() => {
      if (!w.idle() || redis.status !== 'ready') return
      redis.get(KEY.version).then((v) => { if (v !== w.seen().version) background() }, () => {})
    }, REMOTE_POLL_MS)
  ]
  for (const t of timers) t.unref()
  return timers
}

/**
 * Share `dataDir`'s identity store through the Redis at `url`. Resolves once
 * the first merge is done (this node then has every user and token of the
 * others, and they have this node's); rejects naming Redis if it cannot be
 * reached within 5 s.
 */
export async function startIdentityReplica (dataDir: string, url: string, log: Logger, opts: { watch?: boolean } = {}): Promise<IdentityReplica> {
  const where = redactRedisUrl(url)
  // A connection of its own: a merge's transaction does not take in the cache's reads.
  const store = await IdentityStore.open(dataDir)
  const redis = connect(url)
  const sub = opts.watch === false ? null : redis.duplicate()
  let down = false
  let closed = false
  let seenVersion: string | null = null
  let seenLocal = ''
  /** The malformed records last warned of: one warning per change of them, not one per merge. */
  let reported = ''
  let lastError: Error | null = null
  // Reported at start, or once per outage by the merge that fails (without a listener ioredis prints each).
  redis.on('error', (err: Error) => { lastError = err })
  sub?.on('error', () => {})

  const syncOnce = async (): Promise<void> => {
    const remote = await readRemote(redis)
    await shareKey(redis, store, remote.key, log)
    const plan = await merge(store.db, remote.records, remote.version === null)
    const count = plan.push.users.size + plan.push.tokens.size
    const odd = plan.malformed.join(',')
    if (odd !== reported && odd !== '') log.warn('identity: records in redis that are not Warbler\'s left alone (neither applied here nor deleted); remove or correct them', { records: plan.malformed })
    reported = odd
    seenVersion = count > 0 ? await push(redis, plan.push) : remote.version
    if (count > 0) await pushed(store.db, plan.push)
    // Our own applying moved the local counter: that is no change to push.
    seenLocal = plan.version
    if (down) log.info('identity: redis reachable again; users and tokens merged', { redis: where })
    down = false
    if (count > 0 || plan.applied > 0) log.debug('identity: merged with redis', { pushed: count, applied: plan.applied })
  }

  // One merge at a time; a request during a merge runs one more after it.
  let running: Promise<void> | null = null
  let again = false
  const sync = (): Promise<void> => {
    if (running !== null) { again = true; return running }
    running = (async () => {
      try {
        do { again = false; await syncOnce() } while (again && !closed)
      } finally { running = null }
    })()
    return running
  }
  const background = (): void => {
    if (closed) return
    sync().catch((err: unknown) => {
      if (closed || down) return
      down = true
      log.warn('identity: cannot merge users and tokens with redis; logins use this node\'s copy, changes made here are pushed when redis is back', { redis: where, error: (err as Error).message })
    })
  }

  try {
    await Promise.race([
      redis.connect(),
      new Promise((_resolve, reject) => setTimeout(() => reject(new Error(`no answer within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS).unref())
    ])
    await sync()
  } catch (err) {
    redis.disconnect()
    await store.close()
    // The connection's own error (ECONNREFUSED...) says more than the failed command's.
    const reason = (lastError ?? (err as Error)).message
    throw new RedisUnavailableError(`cannot connect to redis at ${where}: ${reason} (sharing users and tokens)`)
  }

  const timers = sub === null ? [] : await watch({ redis, sub, store, log, where, background, idle: () => running === null, seen: () => ({ version: seenVersion, local: seenLocal }) })

  return {
    sync,
    close: async () => {
      if (closed) return
      closed = true
      for (const t of timers) clearInterval(t)
      await running?.catch(() => {})
      sub?.disconnect()
      await redis.quit().catch(() => { redis.disconnect() })
      await store.close()
    }
  }
}
