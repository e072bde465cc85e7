/**
 * Routing between brokers, for `--workers N` (N > 1) and for several nodes
 * on one Redis (`routing: redis`): every aedes instance routes each publish
 * twice over:
 *
 * - to its own subscribers at once, through an in-process mqemitter (as a
 *   single broker does), so local chat never waits for Redis and keeps
 *   flowing while Redis is away or hung;
 * - to every other broker through Redis pub/sub (mqemitter-redis), marked
 *   with this broker's origin id, so that the copy coming back from Redis is
 *   skipped here and delivered only by the others.
 *
 * aedes' own cluster notices travel the same way (`$SYS/{id}/new/clients`
 * for session takeover across brokers, heartbeats, births), and so do the
 * persistence's subscription broadcasts (`$SYS/sub/+`).
 *
 * The publisher's callback (aedes then acknowledges a QoS 1 publish) waits
 * for the local delivery only. Publishes not yet written to Redis are
 * bounded by MAX_REMOTE_PENDING: past it (Redis hung or away) the remote
 * copy is dropped and counted, never queued without bound. Redis pub/sub
 * keeps nothing: a message published while another broker's subscribing
 * connection is down does not reach that broker's clients live; QoS 1/2
 * messages for persistent sessions are in their queues (the persistence)
 * and are sent from there on reconnect.
 *
 * Two ioredis connections (one subscribes, one publishes), with the
 * persistence's reconnect policy; at start both must be ready within
 * MQ_START_TIMEOUT_MS (a subscribe sent before ioredis' ready check breaks
 * the connection). `close()` (called by aedes' own close) quits both,
 * bounded by MQ_QUIT_TIMEOUT_MS when Redis does not answer.
 */
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import mqemitter from 'mqemitter'
import MQEmitterRedis from 'mqemitter-redis'
import type { Logger } from './log.js'
import { redactRedisUrl, RedisUnavailableError } from './persistence.js'

const MQ_QUIT_TIMEOUT_MS = 2000
const MQ_START_TIMEOUT_MS = 5000
const REDIS_MAX_RETRIES = 20
/** Publishes handed to Redis and not yet answered, past which remote copies are dropped. */
const MAX_REMOTE_PENDING = 10_000
/** Longest wait for Redis to confirm a subscribe or unsubscribe. */
const SUBSCRIBE_WAIT_MS = 2000
/** The field a broker marks its remote copies with. */
const ORIGIN = 'wbOrigin'

type Packet = Record<string, unknown> & { topic: string }
type Handler = (packet: Packet, done: () => void) => void

interface Emitter {
  on: (topic: string, fn: Handler, cb?: () => void) => void
  removeListener: (topic: string, fn: Handler, cb?: () => void) => void
  emit: (packet: Packet, cb?: (err?: Error) => void) => void
  close: (cb: () => void) => void
}

interface RemoteEmitter extends Emitter {
  state: { on: (event: 'error', fn: (err: Error) => void) => void }
  /** MQEmitter's own removeListener (the local table only), kept by mqemitter-redis. */
  _removeListener: (topic: string, fn: Handler) => void
}

export interface SharedRouting {
  /** What aedes gets as its `mq` option. */
  readonly instance: Emitter
  /** Remote copies dropped because Redis did not keep up. */
  readonly dropped: () => number
}

function connection (url: string, role: string, log: Logger): Redis {
  const where = redactRedisUrl(url)
  const redis = new Redis(url, {
    maxRetriesPerRequest: REDIS_MAX_RETRIES,
    retryStrategy: (times) => Math.min(times * 100, 2000)
  })
  let down = false
  redis.on('error', () => { /* reported through 'close' below, once per outage */ })
  redis.on('close', () => {
    if (!down && redis.status !== 'end') {
      down = true
      log.warn('redis routing connection lost; reconnecting (messages to other brokers are dropped meanwhile)', { redis: where, role })
    }
  })
  redis.on('ready', () => {
    if (down) log.info('redis routing connection back', { redis: where, role })
    down = false
  })
  return redis
}

async function ready (conns: Redis[], url: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  try {
    await Promise.race([
      Promise.all(conns.map((c) => c.status === 'ready' ? undefined : new Promise<void>((resolve) => c.once('ready', () => resolve())))),
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new RedisUnavailableError(`cannot connect to redis at ${redactRedisUrl(url)} for routing: no answer within ${MQ_START_TIMEOUT_MS} ms`)), MQ_START_TIMEOUT_MS)
      })
    ])
  } catch (err) {
    for (const c of conns) c.disconnect()
    throw err
  } finally {
    clearTimeout(timer)
  }
}

export async function createSharedRouting (url: string, opts: { concurrency: number, log: Logger }): Promise<SharedRouting> {
  const subConn = connection(url, 'subscribe', opts.log)
  const pubConn = connection(url, 'publish', opts.log)
  await ready([subConn, pubConn], url)
  // As aedes' default emitter: matchEmptyLevels for [MQTT-4.7.1-3].
  const local = (mqemitter as unknown as (o: Record<string, unknown>) => Emitter)({ concurrency: opts.concurrency, matchEmptyLevels: true })
  const remote = (MQEmitterRedis as unknown as (o: Record<string, unknown>) => RemoteEmitter)({ subConn, pubConn, concurrency: opts.concurrency, matchEmptyLevels: true })
  // Without a listener an 'error' would crash the process; the connections log their outages.
  remote.state.on('error', (err) => { opts.log.debug('redis routing error', { error: err.message }) })

  /**
   * A (un)subscribe's callback once Redis confirmed it, or after
   * SUBSCRIBE_WAIT_MS: a hung Redis must not hold up SUBACKs and
   * disconnects. Until Redis confirms, messages from other brokers on that
   * topic may be missed live (persistent sessions have them in their queues).
   */
  const bounded = (cb?: () => void): (() => void) | undefined => {
    if (cb === undefined) return undefined
    let called = false
    const once = (): void => { if (!called) { called = true; clearTimeout(timer); cb() } }
    const timer = setTimeout(once, SUBSCRIBE_WAIT_MS)
    return once
  }
  const origin = randomUUID()
  /** The remote-side wrapper of each handler, by topic (one handler may listen on several topics). */
  const wrappers = new WeakMap<Handler, Map<string, Handler[]>>()
  let pending = 0
  let dropped = 0
  let droppedSinceLog = 0
  let closed = false

  const instance: Emitter = {
    on (topic, fn, cb) {
      local.on(topic, fn)
      const wrapped: Handler = (packet, done) => {
        if (packet[ORIGIN] === origin) { done(); return } // delivered here already
        fn(packet, done)
      }
      let byTopic = wrappers.get(fn)
      if (byTopic === undefined) wrappers.set(fn, byTopic = new Map())
      byTopic.set(topic, [...(byTopic.get(topic) ?? []), wrapped])
      remote.on(topic, wrapped, bounded(cb))
    },
    removeListener (topic, fn, cb) {
      local.removeListener(topic, fn)
      const list = wrappers.get(fn)?.get(topic)
      const wrapped = list?.pop()
      if (list?.length === 0) wrappers.get(fn)?.delete(topic)
      if (wrapped === undefined) { if (cb !== undefined) setImmediate(cb); return }
      // Once closed, only the local table: a command on a dropped connection may never call back.
      if (closed) {
        remote._removeListener(topic, wrapped)
        if (cb !== undefined) setImmediate(cb)
        return
      }
      remote.removeListener(topic, wrapped, bounded(cb))
    },
    emit (packet, cb) {
      // The copy first: local handlers may change the packet they get.
      const copy = closed ? null : { ...packet, [ORIGIN]: origin }
      local.emit(packet, cb)
      if (copy === null) return
      if (pending >= MAX_REMOTE_PENDING) {
        dropped++
        if (droppedSinceLog++ === 0) opts.log.warn('redis is not keeping up; messages to other brokers are dropped', { pending })
        return
      }
      pending++
      remote.emit(copy, (err) => {
        pending--
        if (err !== undefined && droppedSinceLog++ === 0) opts.log.warn('a message could not be sent to the other brokers', { error: err.message })
        if (err === undefined && pending === 0 && droppedSinceLog > 0) {
          opts.log.info('redis routing keeps up again', { dropped: droppedSinceLog })
          droppedSinceLog = 0
        }
      })
    },
    close (cb) {
      closed = true
      let done = false
      const finish = (): void => {
        if (done) return
        done = true
        clearTimeout(timer)
        local.close(cb)
      }
      // Redis away: QUIT would wait for it; drop the connections instead.
      const timer = setTimeout(() => {
        opts.log.warn('redis did not answer QUIT on the routing connections; dropping them')
        subConn.disconnect()
        pubConn.disconnect()
        setImmediate(finish)
      }, MQ_QUIT_TIMEOUT_MS)
      remote.close(finish)
    }
  }
  return { instance, dropped: () => dropped }
}
