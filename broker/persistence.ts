/**
 * Session persistence for aedes: in memory by default (the embedded
 * default), or Redis (aedes-persistence-redis) with `--redis URL`, so that
 * subscriptions, offline queues, wills and retained messages survive a
 * broker restart. Without --redis nothing of this survives a restart.
 *
 * Redis connection lifecycle (one ioredis client, made here from the URL and
 * handed to aedes-persistence-redis as `conn`):
 * - At start we connect once, bounded by REDIS_START_TIMEOUT_MS; if Redis is
 *   unreachable (or refuses AUTH/SELECT) the start fails with a
 *   {@link RedisUnavailableError} naming redis and the URL (password
 *   redacted). No endless retry at start.
 * - While running, if Redis goes away ioredis reconnects by itself (backoff
 *   up to 2 s). Commands issued meanwhile wait in ioredis' offline queue and
 *   run once Redis is back; a command that is still waiting after
 *   REDIS_MAX_RETRIES reconnect attempts (about 10-20 s) fails. aedes then
 *   closes the affected client connection or emits 'error' on the broker,
 *   which server.ts logs: the process never crashes. One warning is logged
 *   per outage and one line when Redis is back. What Redis acknowledged
 *   before it went away survives as far as Redis' own durability allows
 *   (appendonly/appendfsync in its config).
 * - close() waits for the commands already issued (QUIT is answered after
 *   them, so the store is flushed), bounded by REDIS_QUIT_TIMEOUT_MS in case
 *   Redis is down, then drops the connection so the process can exit.
 *
 * Either way the inbound QoS 2 packets of each client id are tracked so that
 * they can be bounded and cleared (inbound-qos2.ts), and the injected
 * persistence instance is decorated with a bound on
 * each session's offline queue (`offlineQueue`, offline-bound.ts): past it,
 * new QoS 1/2 messages for that session are not queued and
 * `offline_queue_full` is counted. With Redis the count is read again from
 * Redis before a refusal, since other processes queue and clear too.
 */
import { Readable } from 'node:stream'
import memoryPersistence from 'aedes-persistence'
import { Redis } from 'ioredis'
import type { Logger } from '../shared/log.js'
import { type IncomingPersistence, type InboundQos2, trackInbound } from './inbound-qos2.js'
import { boundOfflineQueues, type OfflineBound, type OutgoingPersistence } from './offline-bound.js'
import { releaseQueuesWithSessions } from './queue-release.js'
import { claimSweptWills } from './will-claim.js'
import type { Stats } from './stats.js'

const REDIS_START_TIMEOUT_MS = 5000
const REDIS_CONNECT_TIMEOUT_MS = 3000
const REDIS_QUIT_TIMEOUT_MS = 2000
const REDIS_MAX_RETRIES = 20
/** Longest wait for one subscription change to come back through the routing (see serializeSubscriptionChanges). */
const SUBSCRIPTION_BROADCAST_TIMEOUT_MS = 10_000

/** The part of the aedes persistence interface the decorators touch. */
interface Persistence extends IncomingPersistence, OutgoingPersistence {
  addSubscriptions: (client: { id: string }, subs: unknown[]) => Promise<unknown>
  removeSubscriptions: (client: { id: string }, subs: unknown[]) => Promise<unknown>
  countOffline: () => Promise<{ subsCount: number, clientsCount: number }>
  createRetainedStream: (pattern: string) => AsyncIterable<unknown>
  createRetainedStreamCombi: (patterns: string[]) => Readable
  storeRetained: (packet: { topic: string, payload: { length: number } }) => Promise<void>
  destroy: () => Promise<void>
}

export interface BrokerPersistence {
  /** What aedes gets as its `persistence` option. */
  readonly instance: unknown
  /** The inbound QoS 2 packets each client id holds (inbound-qos2.ts). */
  readonly inbound: InboundQos2
  /** The offline queue bound, which delivery.ts tells about deliveries (offline-bound.ts). */
  readonly offlineBound: OfflineBound
  countOffline: () => Promise<{ subsCount: number, clientsCount: number }>
  retainedCount: () => Promise<number>
  /** With Redis: whether its connection is ready now (commands go through). */
  redisReady?: () => boolean
  close: () => Promise<void>
}

/** Redis could not be reached at start. The message names redis and the (redacted) URL. */
export class RedisUnavailableError extends Error {
  override name = 'StartError'
}

/** The URL without its password, for logs and errors. */
export function redactRedisUrl (url: string): string {
  try {
    const u = new URL(url)
    if (u.password !== '') u.password = '***'
    return u.toString()
  } catch {
    return 'redis://(unparsable URL)'
  }
}

function timeout<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p,
    new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms) })
  ]).finally(() => clearTimeout(timer))
}

/** Connect to Redis once, bounded in time; on failure stop all retries and throw. */
async function connectRedis (url: string, log?: Logger): Promise<Redis> {
  const where = redactRedisUrl(url)
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: REDIS_CONNECT_TIMEOUT_MS,
    maxRetriesPerRequest: REDIS_MAX_RETRIES,
    retryStrategy: (times) => Math.min(times * 100, 2000)
  })
  let lastError: Error | null = null
  let started = false
  let down = false
  // Without a listener ioredis prints every connection error to the console.
  redis.on('error', (err: Error) => {
    lastError = err
    if (started && !down) {
      down = true
      log?.warn('redis connection lost; reconnecting (persistence commands wait meanwhile)', { redis: where, error: err.message })
    }
  })
  redis.on('close', () => {
    if (started && !down && redis.status !== 'end') {
      down = true
      log?.warn('redis connection lost; reconnecting (persistence commands wait meanwhile)', { redis: where })
    }
  })
  redis.on('ready', () => {
    if (started && down) log?.info('redis connection back', { redis: where })
    down = false
  })
  try {
    await timeout(redis.connect(), REDIS_START_TIMEOUT_MS, 'connect')
  } catch (err) {
    redis.disconnect()
    const reason = (lastError ?? (err as Error)).message
    throw new RedisUnavailableError(`cannot connect to redis at ${where}: ${reason}`)
  }
  started = true
  return redis
}

export async function createPersistence (opts: { redis: string, offlineQueue: number, stats: Stats, log?: Logger }): Promise<BrokerPersistence> {
  let p: Persistence
  let redis: Redis | null = null
  if (opts.redis !== '') {
    const { default: redisPersistence } = await import('aedes-persistence-redis')
    redis = await connectRedis(opts.redis, opts.log)
    // `conn` must be an ioredis instance; the persistence does not own its
    // lifecycle beyond disconnect() in destroy(), so close() below quits it.
    // maxSessionDelivery is how much of a session's queue is sent when it
    // resumes (the rest waits for its next connection, out of order with
    // what is live meanwhile): the whole bounded queue, with room for what
    // other processes queued past the bound before they read it again.
    p = (redisPersistence as unknown as (o: unknown) => Persistence)({ conn: redis, maxSessionDelivery: opts.offlineQueue * 2 })
    // A session's queued messages leave Redis with its last subscription (queue-release.ts).
    releaseQueuesWithSessions(p, redis)
    // A dead broker's will is sent by one of the live brokers sweeping it (will-claim.ts).
    claimSweptWills(p, redis)
  } else {
    p = (memoryPersistence as unknown as () => Persistence)()
    indexRetained(p)
  }
  const conn0 = redis
  const offlineBound = boundOfflineQueues(p, {
    limit: opts.offlineQueue,
    stats: opts.stats,
    // aedes-persistence-redis keeps each session's queue as the list
    // `outgoing:<client id>` (its asyncPersistence.js, outgoingKey).
    ...(conn0 !== null ? { queueLength: (id: string) => conn0.llen(`outgoing:${encodeURIComponent(id)}`) } : {})
  })
  serializeSubscriptionChanges(p, opts.log)
  const inbound = trackInbound(p, redis === null)
  let closing: Promise<void> | null = null
  const conn = redis
  return {
    instance: p,
    inbound,
    offlineBound,
    ...(conn !== null ? { redisReady: () => conn.status === 'ready' } : {}),
    countOffline: () => p.countOffline(),
    retainedCount: async () => {
      let n = 0
      for await (const _ of p.createRetainedStream('#')) n++
      return n
    },
    close: () => {
      closing ??= (async () => {
        if (redis !== null) {
          // QUIT is answered after every command issued before it: the store is flushed.
          await timeout(redis.quit(), REDIS_QUIT_TIMEOUT_MS, 'redis quit').catch((err: unknown) => {
            opts.log?.warn('redis did not answer QUIT; dropping the connection', { error: (err as Error).message })
          })
          redis.disconnect()
        }
        await p.destroy()
      })()
      return closing
    }
  }
}

/**
 * aedes asks the persistence for the retained messages matching each filter
 * of every SUBSCRIBE. The in-memory store answers by building a matcher for
 * the filter and testing every retained topic against it, through an
 * async-iterator stream: work in proportion to all retained messages (the
 * $SYS tree alone is dozens) for each subscription, and most of what a
 * device's connect cost (it subscribes to two exact topics, its inbox and
 * its device topic). Here the set of retained topics is kept beside the
 * store: a filter without wildcards can match only the topic it names, so
 * one naming no retained topic is left out, and when no filter is left the
 * answer is an empty stream, made without the store. Filters with wildcards,
 * and exact ones that name a retained topic, are answered by the store as before.
 */
function indexRetained (p: Persistence): void {
  const topics = new Set<string>()
  const store = p.storeRetained.bind(p)
  // The store changes its map synchronously in the call; so does this.
  p.storeRetained = (packet) => {
    if (packet.payload.length === 0) topics.delete(packet.topic)
    else topics.add(packet.topic)
    return store(packet)
  }
  const combi = p.createRetainedStreamCombi.bind(p)
  p.createRetainedStreamCombi = (patterns) => {
    const wanted = patterns.filter((f) => topics.has(f) || f.includes('+') || f.includes('#'))
    return wanted.length > 0 ? combi(wanted) : new Readable({ objectMode: true, read () { this.push(null) } })
  }
}

/**
 * One subscription change at a time per client id, and each SUBSCRIBE's
 * change stored once.
 *
 * aedes (1.2, and still 2.0.0-beta.1) calls addSubscriptions once per topic of a SUBSCRIBE, each time
 * with the packet's whole list; the persistence then broadcasts the change
 * on the broker's routing (`$SYS/sub/add`) and waits for its own broadcast
 * to come back, keyed by client id and first topic. When the broadcast comes
 * back before the next call all is well; when it does not (routing through
 * mqemitter-redis alone, measured: a SUBSCRIBE of two filters was never
 * acknowledged; or a busy emitter queueing it) both calls wait on the one
 * key, the second replaces the first's waiter, and the SUBSCRIBE hangs. So
 * calls with the same list share one change, and changes of one client id
 * run in order. A broadcast that never comes back holds that client's
 * changes for at most SUBSCRIPTION_BROADCAST_TIMEOUT_MS: the change itself
 * is stored by then.
 */
function serializeSubscriptionChanges (p: Persistence, log?: Logger): void {
  const chains = new Map<string, Promise<unknown>>()
  const byList = new WeakMap<object, Promise<unknown>>()
  for (const name of ['addSubscriptions', 'removeSubscriptions'] as const) {
    const change = p[name].bind(p)
    p[name] = (client, subs) => {
      const same = byList.get(subs)
      if (same !== undefined) return same
      const bounded = async (): Promise<unknown> => {
        let timer: NodeJS.Timeout | undefined
        try {
          return await Promise.race([
            change(client, subs),
            new Promise<void>((resolve) => {
              timer = setTimeout(() => {
                log?.warn('a subscription change did not come back through the routing in time; going on', { clientId: client.id })
                resolve()
              }, SUBSCRIPTION_BROADCAST_TIMEOUT_MS)
            })
          ])
        } finally {
          clearTimeout(timer)
        }
      }
      const run = (chains.get(client.id) ?? Promise.resolve()).then(bounded)
      const tail = run.catch(() => {})
      chains.set(client.id, tail)
      void tail.then(() => { if (chains.get(client.id) === tail) chains.delete(client.id) })
      byList.set(subs, run)
      return run
    }
  }
}
