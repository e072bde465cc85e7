/**
 * Routing between brokers, for `--workers N` and for several nodes on one
 * Redis: every aedes instance routes each publish twice over:
 *
 * - to its own subscribers at once, through an in-process mqemitter (as a
 *   single broker does), so local delivery never depends on Redis;
 * - to every other broker through Redis pub/sub (mqemitter-redis), marked
 *   with this broker's origin id, so that the copy coming back from Redis is
 *   skipped here and delivered only by the others.
 *
 * aedes' own cluster notices travel the same way (`$SYS/{id}/new/clients`
 * for session takeover across brokers, heartbeats, births), and so do the
 * persistence's subscription broadcasts (`$SYS/sub/+`).
 *
 * Flow control: the publisher's callback (aedes then sends the PUBACK) waits
 * for the local delivery, and, once more than WINDOW copies wait for Redis'
 * answer, until Redis has taken this copy too: a fast publisher is paced by
 * Redis instead of piling copies up in memory. A
 * breaker keeps a hung or absent Redis from holding every publisher: after
 * STALL_MS without an answer from Redis, publishers are released, copies
 * are dropped (counted, logged once) and one copy at a time probes Redis
 * until it answers again. Local delivery goes on throughout.
 *
 * Peers: brokers on the routing say hello on `$SYS/warbler/routing/hello`
 * (at start, after a reconnect, and every HELLO_INTERVAL_MS) and answer a
 * newcomer at once; a broker that sees no other one sends no copies, so one
 * broker alone on Redis (`--workers 1`) pays nothing for the routing.
 *
 * The workers of one node (`--workers N`) hand each other their publishes on
 * the local bus instead (local-bus.ts: Unix sockets, batched binary frames):
 * a publish goes to every sibling worker there, and to Redis only when a
 * broker of another node is on the routing. Redis copies carry the node's id
 * too, so a worker skips those of its own node (its siblings' came on the bus).
 * The message service's deliveries go on the bus only to the workers whose
 * clients read them (sibling-readers.ts), once each sibling's set is known.
 *
 * Redis pub/sub keeps nothing: a message published while another broker's
 * subscribing connection is down does not reach that broker's clients live;
 * QoS 1/2 messages for persistent sessions are in their queues (the
 * persistence) and are sent from there on reconnect.
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
import type { Logger } from '../shared/log.js'
import { LocalBus, type PathCounts } from './local-bus.js'
import { isDeliveryTopic, SiblingReaders } from './sibling-readers.js'
import { redactRedisUrl, RedisUnavailableError } from './persistence.js'

const MQ_QUIT_TIMEOUT_MS = 2000
const MQ_START_TIMEOUT_MS = 5000
const REDIS_MAX_RETRIES = 20
/** Copies Redis may owe answers for before publishers wait for theirs (flow control). */
const WINDOW = 1000
/** No answer from Redis to a copy for this long: stop holding publishers for it (the breaker). */
const STALL_MS = 1000
/** Brokers sharing the routing say hello this often, and are forgotten after missing a few. */
const HELLO_INTERVAL_MS = 10_000
const PEER_EXPIRY_MS = 35_000
const HELLO = '$SYS/warbler/routing/hello'
/** Longest wait for Redis to confirm a subscribe or unsubscribe. */
const SUBSCRIBE_WAIT_MS = 2000
/** The field a broker marks its remote copies with. */
const ORIGIN = 'wbOrigin'
/** Bytes a local bus frame may carry beyond the node's maxPacket (the service's envelope, MQTT 5 properties). */
export const BUS_FRAME_HEADROOM = 1024 * 1024
/** The field a worker of a node with a local bus marks its remote copies with: the node's id. */
const NODE = 'wbNode'

type Packet = Record<string, unknown> & { topic: string }
type Handler = (packet: Packet, done: () => void) => void

interface Emitter {
  on: (topic: string, fn: Handler, cb?: () => void) => void
  removeListener: (topic: string, fn: Handler, cb?: () => void) => void
  emit: (packet: Packet, cb?: (err?: Error) => void) => void
  close: (cb: () => void) => void
  /**
   * The subscriptions of this broker's own clients (the local table), where
   * an MQEmitter keeps them: the embedded message service reads it to publish
   * only to the topics someone reads while no other broker shares the routing
   * (bridge/transport.ts).
   */
  _matcher?: unknown
}

interface RemoteEmitter extends Emitter {
  state: { on: (event: 'error', fn: (err: Error) => void) => void }
  /** MQEmitter's own close (the local table only), kept by mqemitter-redis. */
  _close: (cb: () => void) => void
  /** MQEmitter's own removeListener (the local table only), kept by mqemitter-redis. */
  _removeListener: (topic: string, fn: Handler) => void
}

export interface SharedRouting {
  /** What aedes gets as its `mq` option. */
  readonly instance: Emitter
  /** Copies for other brokers dropped while Redis did not take them. */
  readonly dropped: () => number
  /** Other brokers seen on the routing now. */
  readonly peers: () => number
  /** Brokers of other nodes seen on the routing now (every other broker, without a local bus). */
  readonly elsewhere: () => number
  /** What the siblings' clients read of the message service's topics (with a local bus), else null. */
  readonly readers: Pick<SiblingReaders, 'complete' | 'reads'> | null
  /**
   * The message service's deliveries that came on the local bus for a topic
   * no client of this worker reads, and SUBACKs sent without the service
   * worker's confirmation (sibling-readers.ts).
   */
  readonly interest: () => { unread: number, timeouts: number }
  /** Whether both routing connections (publish, subscribe) are ready now. */
  readonly connected: () => boolean
  /** Copies sent, received and dropped on each path since start (`local`: the local bus, with --workers N > 1). */
  readonly paths: () => { local: PathCounts | null, redis: PathCounts }
}

/** The local bus of a node's workers: where the sockets are, who this worker is, the node's id. */
export interface BusSettings {
  dir: string
  index: number
  count: number
  node: string
  maxFrame: number
  /** Whether this worker runs the message service (it learns what the siblings' clients read). */
  serve: boolean
}

function connection (url: string, role: string, log: Logger): Redis {
  const where = redactRedisUrl(url)
  const redis = new Redis(url, {
    // Many PUBLISHes in one write (mqemitter-redis turns this on for the connections it makes itself).
    enableAutoPipelining: true,
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
      Promise.all(conns.map((c) => c.status === 'ready' ? Promise.resolve() : new Promise<void>((resolve) => c.once('ready', () => resolve())))),
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

/**
 * The routing emitter shared through Redis. Over 80 lines as a factory: the
 * subscribe, publish and close closures share its connections and the wrappers
 * of local handlers; each of them is short.
 */
// eslint-disable-next-line max-lines-per-function -- a factory of short closures (see above)
export async function createSharedRouting (url: string, opts: { concurrency: number, log: Logger, bus?: BusSettings }): Promise<SharedRouting> {
  const subConn = connection(url, 'subscribe', opts.log)
  const pubConn = connection(url, 'publish', opts.log)
  await ready([subConn, pubConn], url)
  // As aedes' default emitter: matchEmptyLevels for [MQTT-4.7.1-3].
  const local = (mqemitter as unknown as (o: Record<string, unknown>) => Emitter)({ concurrency: opts.concurrency, matchEmptyLevels: true })
  // No concurrency bound on what comes in from Redis: pub/sub cannot be paced,
  // and past the bound mqemitter queues in an array it shift()s, O(n) a message
  // (measured: a backlog of copies made a worker spend 55 % of its CPU there).
  const remote = (MQEmitterRedis as unknown as (o: Record<string, unknown>) => RemoteEmitter)({ subConn, pubConn, concurrency: 0, matchEmptyLevels: true })
  // Without a listener an 'error' would crash the process; the connections log their outages.
  remote.state.on('error', (err) => { opts.log.debug('redis routing error', { error: err.message }) })
  const log = opts.log

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
  const node = opts.bus?.node ?? null
  let closed = false
  const redisCounts: PathCounts = { sent: 0, received: 0, dropped: 0 }
  // What siblings send on the local bus is delivered here as a Redis copy was.
  let bus: LocalBus | null = null
  let readers: SiblingReaders | null = null
  let unread = 0
  const matcher = (local as unknown as { _matcher?: { match?: (topic: string) => unknown[] } })._matcher
  /** Whether a client of this broker reads a topic (true when mqemitter hides its table). */
  const readHere = (topic: string): boolean => typeof matcher?.match !== 'function' || matcher.match(topic).length > 0
  if (opts.bus !== undefined && opts.bus.count > 1) {
    try {
      const r = readers = new SiblingReaders({ index: opts.bus.index, count: opts.bus.count, serve: opts.bus.serve, log })
      bus = await LocalBus.start({ ...opts.bus, log, events: r.events }, (packet, done) => {
        if (isDeliveryTopic(packet.topic) && !readHere(packet.topic)) unread++
        local.emit(packet, done)
      })
      const b = bus
      r.attach((to, message) => b.sendControl(to, message))
    } catch (err) {
      subConn.disconnect()
      pubConn.disconnect()
      throw err
    }
  }

  // -- peers: copies go to Redis only while another node's broker is there ---
  const peers = new Map<string, number>()
  /** Peers of other nodes (a peer without a node id is one process of its own). */
  const elsewhere = new Set<string>()
  const hello = (ask: boolean): void => {
    if (!closed) remote.emit({ topic: HELLO, payload: Buffer.from(JSON.stringify({ id: origin, ask, ...(node !== null ? { node } : {}) })) }, () => {})
  }
  const onHello: Handler = (packet, done) => {
    done()
    let m: { id?: unknown, ask?: unknown, node?: unknown }
    try { m = JSON.parse(String(packet.payload)) as typeof m } catch { return }
    if (typeof m.id !== 'string' || m.id === origin) return
    const known = peers.has(m.id)
    peers.set(m.id, Date.now())
    if (bus === null || m.node !== node) elsewhere.add(m.id)
    if (!known) log.info('another broker shares the routing', { brokers: peers.size + 1 })
    if (m.ask === true) hello(false)
  }
  await new Promise<void>((resolve) => { remote.on(HELLO, onHello, bounded(resolve)) })
  hello(true)
  // After a lost subscribing connection the peers' hellos were missed: ask again.
  subConn.on('ready', () => { hello(true) })
  const helloTimer = setInterval(() => {
    hello(false)
    const old = Date.now() - PEER_EXPIRY_MS
    for (const [id, seen] of peers) {
      if (seen < old) {
        peers.delete(id)
        elsewhere.delete(id)
        log.info('a broker left the routing', { brokers: peers.size + 1 })
      }
    }
  }, HELLO_INTERVAL_MS)
  helloTimer.unref()

  // -- flow control, with a breaker for a hung or absent Redis ---------------
  let pending = 0
  let lastProgress = Date.now()
  let stalled = false
  let dropped = 0
  /** Publishers held until Redis took their copy. */
  const held = new Set<() => void>()
  const watchdog = setInterval(() => {
    if (stalled || pending === 0 || Date.now() - lastProgress < STALL_MS) return
    stalled = true
    log.warn('redis does not take messages for other brokers; they are dropped until it does (local delivery goes on)', { waiting: pending })
    for (const release of [...held]) release()
    held.clear()
  }, STALL_MS / 4)
  watchdog.unref()

  /** The remote-side wrapper of each handler, by topic (one handler may listen on several topics). */
  const wrappers = new WeakMap<Handler, Map<string, Handler[]>>()
  /** The last Redis copy counted: every handler it matches gets the same object. */
  let lastIn: Packet | null = null

  const instance: Emitter = {
    _matcher: (local as unknown as { _matcher?: unknown })._matcher,
    on (topic, fn, cb) {
      local.on(topic, fn)
      const wrapped: Handler = (packet, done) => {
        if (packet[ORIGIN] === origin) { done(); return } // delivered here already
        // A sibling's copy: it came on the local bus (or was dropped there, counted).
        if (node !== null && bus !== null && packet[NODE] === node) { done(); return }
        if (packet !== lastIn) { lastIn = packet; redisCounts.received++ }
        fn(packet, done)
      }
      let byTopic = wrappers.get(fn)
      if (byTopic === undefined) wrappers.set(fn, byTopic = new Map<string, Handler[]>())
      byTopic.set(topic, [...(byTopic.get(topic) ?? []), wrapped])
      // The SUBACK waits for Redis and for the message service's worker to know of the subscription.
      remote.on(topic, wrapped, bounded(readers === null ? cb : readers.subscribed(topic, cb)))
    },
    removeListener (topic, fn, cb) {
      local.removeListener(topic, fn)
      const list = wrappers.get(fn)?.get(topic)
      const wrapped = list?.pop()
      if (list?.length === 0) wrappers.get(fn)?.delete(topic)
      if (wrapped === undefined) { if (cb !== undefined) setImmediate(cb); return }
      readers?.unsubscribed(topic)
      // Once closed, only the local table: a command on a dropped connection may never call back.
      if (closed) {
        remote._removeListener(topic, wrapped)
        if (cb !== undefined) setImmediate(cb)
        return
      }
      remote.removeListener(topic, wrapped, bounded(cb))
    },
    emit (packet, cb) {
      // The copies first: local handlers may change the packet they get.
      const toBus = bus !== null && !closed
      const copy = closed || elsewhere.size === 0 ? null : { ...packet, [ORIGIN]: origin, ...(node !== null ? { [NODE]: node } : {}) }
      let waits = 1 + (copy === null ? 0 : 1) + (toBus ? 1 : 0)
      let error: Error | undefined
      const step = (err?: Error): void => {
        if (err !== undefined) error ??= err
        if (--waits === 0) cb?.(error)
      }
      // The service's deliveries only to the siblings that read them (all while a sibling's set is unknown).
      const only = readers !== null && opts.bus?.serve === true && isDeliveryTopic(packet.topic) ? readers : null
      if (toBus) (bus as LocalBus).send(packet, () => { step() }, only === null ? undefined : (i) => only.wants(i, packet.topic))
      local.emit(packet, step)
      if (copy === null) return
      if (stalled && pending > 0) { dropped++; step(); return }
      redisCounts.sent++
      if (pending === 0) lastProgress = Date.now()
      pending++
      let released = false
      const release = (): void => {
        if (released) return
        released = true
        held.delete(release)
        step()
      }
      // Within the window (or stalled: this copy probes Redis) nobody waits for it.
      if (stalled || pending <= WINDOW) release()
      else held.add(release)
      remote.emit(copy, (err) => {
        pending--
        if (err === undefined) {
          lastProgress = Date.now()
          if (stalled) {
            stalled = false
            log.info('redis takes messages for other brokers again', { dropped })
          }
        } else {
          log.debug('a message could not be sent to the other brokers', { error: err.message })
        }
        release()
      })
    },
    close (cb) {
      closed = true
      bus?.close()
      clearInterval(helloTimer)
      clearInterval(watchdog)
      for (const release of [...held]) release()
      // QUIT both connections here rather than in mqemitter-redis' close(),
      // whose quit() promises reject unhandled (a crash) when Redis is away.
      ;(remote as unknown as { closing: boolean }).closing = true
      let timer: NodeJS.Timeout | undefined
      const quit = (c: Redis): Promise<void> => c.quit().then(() => {}, () => {})
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          log.warn('redis did not answer QUIT on the routing connections; dropping them')
          resolve()
        }, MQ_QUIT_TIMEOUT_MS)
      })
      void Promise.race([Promise.all([quit(subConn), quit(pubConn)]), late]).then(() => {
        clearTimeout(timer)
        subConn.disconnect()
        pubConn.disconnect()
        remote._close(() => { local.close(cb) })
      })
    }
  }
  return {
    instance,
    dropped: () => dropped,
    peers: () => peers.size,
    elsewhere: () => elsewhere.size,
    readers,
    interest: () => ({ unread, timeouts: readers?.counts.timeouts ?? 0 }),
    connected: () => subConn.status === 'ready' && pubConn.status === 'ready',
    paths: () => ({ local: bus === null ? null : { ...bus.counts }, redis: { ...redisCounts, dropped } })
  }
}
