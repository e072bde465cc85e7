/**
 * The aedes hooks: where authentication, authorization, limits and
 * backpressure meet the broker. Each hook is a typed function passed to aedes
 * as an option; nothing in aedes is patched.
 *
 * A refused PUBLISH is acknowledged (MQTT-3.3.5-2 allows a positive ack or a
 * disconnect; a disconnect would make a retrying client loop) but never
 * routed: its topic is rewritten to a sink nobody can subscribe to, and the
 * sender gets an error notice on its device topic `wb/d/{clientId}`.
 */
import type { Duplex, Writable } from 'node:stream'
import type { Aedes, AedesOptions, AedesPublishPacket, Client, PublishPacket, Subscription } from 'aedes'
import { type ErrorCode, type ErrorFrame, topics } from '@warbler/sdk/protocol'
import { type Acl, topicMatches } from './acl.js'
import { AuthRefused, type Authenticator } from './auth.js'
import type { Config } from '../shared/config.js'
import type { PublishGate } from './flow.js'
import { watchWrites, type WriteWatch, type WriteWatchOptions } from './guard.js'
import type { Logger } from '../shared/log.js'
import { markClose, noteTakeover } from './login-log.js'
import { getSession, type Session, setSession } from './session.js'
import type { RefusalReason, Stats } from './stats.js'

type Hooks = Required<Pick<AedesOptions, 'preConnect' | 'authenticate' | 'authorizePublish' | 'authorizeSubscribe' | 'authorizeForward' | 'published'>>

export interface HookDeps {
  cfg: Config
  auth: Authenticator
  acl: Acl
  gate: PublishGate
  stats: Stats
  log: Logger
  broker: () => Aedes
}

/** Least time between two error notices to one client (ms); the rest are counted, not sent. */
const NOTICE_INTERVAL_MS = 100

/**
 * Errors aedes reports for a connection (clientError, connectionError) that
 * mean the client broke the protocol: mqtt-packet's parse errors, aedes'
 * protocol checks, and ours below; also `no such packet`, the persistence's
 * answer (aedes then closes the connection) to a PUBREC of a persistent
 * session naming a packet id the broker never sent. Not: timeouts, resets,
 * refused logins.
 */
const MALFORMED = /^(cannot parse|connect flag|invalid|malformed|not supported|packet must not|packet too short|unknown property|will (qos|retain)|[#+] is (not|only) allowed|empty topic|impossible to|packet received not valid|no such packet)/i

/** The refusal an error aedes reports for a connection counts as, if any. */
export function classifyClientError (err: Error): RefusalReason | null {
  if (MALFORMED.test(err.message)) return 'malformed_packet'
  // Refused by aedes itself at CONNECT, before the authenticate hook sees it:
  // CONNACK 1 (a protocol level other than 3 or 4, such as MQTT 5), and
  // CONNACK 2 for an MQTT 3.1 client id over maxClientsIdLength (64).
  if (err.message === 'unacceptable protocol version') return 'protocol_version'
  if (err.message === 'identifier rejected') return 'client_id_rejected'
  return null
}

/**
 * A topic name or filter that was not well-formed UTF-8 on the wire, or that
 * holds U+0000 ([MQTT-1.5.3-1], [MQTT-1.5.3-2]: the server closes the
 * connection). mqtt-packet decodes ill-formed bytes to U+FFFD instead of
 * failing, so a U+FFFD is taken as ill-formed input (a well-formed topic with
 * a literal U+FFFD is refused too; no real topic uses it).
 */
function illFormedTopic (topic: string): boolean {
  return topic.includes('\uFFFD') || topic.includes('\u0000')
}

function levelCount (topic: string): number {
  let n = 1
  for (let i = 0; i < topic.length; i++) if (topic.charCodeAt(i) === 47 /* / */) n++
  return n
}

interface SubscriptionEntry { qos: number }

/** The part of the aedes persistence authorizePublish reads. */
interface IncomingStore { incomingGetPacket: (client: Client, packet: PublishPacket) => Promise<unknown> }
type ClientSubscriptions = Record<string, SubscriptionEntry>

function subscriptionsOf (client: Client): ClientSubscriptions {
  return (client as unknown as { subscriptions: ClientSubscriptions }).subscriptions
}

/**
 * The QoS a message goes to a client with: the lower of the message's and
 * the client's best matching subscription's. Only on the slow-consumer path.
 */
function deliveryQos (client: Client, packet: AedesPublishPacket): number {
  if (packet.qos === 0) return 0
  const subs = subscriptionsOf(client)
  let best = subs[packet.topic]?.qos ?? -1
  if (best < packet.qos) {
    const levels = packet.topic.split('/')
    for (const filter in subs) {
      if (!filter.includes('+') && !filter.includes('#')) continue
      if (topicMatches(filter.split('/'), levels)) best = Math.max(best, (subs[filter] as SubscriptionEntry).qos)
    }
  }
  return best < 0 ? packet.qos : Math.min(best, packet.qos)
}

/**
 * Not forwarded. For a persistent session aedes then clears the packet from
 * the session's queue by packet id; a live packet has none yet, and
 * aedes-persistence would clear the first unsent message of the session
 * instead (another message, lost from the queue, and aedes then drops the
 * connection when it cannot find that one to send). Give the packet an id
 * no queued message has: nothing is cleared; the queued copy of this one is
 * checked again, and cleared, when the queue is replayed.
 */
function notForwarded (client: Client, packet: AedesPublishPacket): null {
  if (packet.messageId === undefined && !client.clean) (packet as { messageId?: number }).messageId = -1
  return null
}

/**
 * Work to do for a publish once aedes has routed it, before its gate slot is
 * released and its routing counts as done: the embedded message service
 * stores a chat send here. Returns undefined when there is nothing to do.
 */
export type Ingest = (packet: AedesPublishPacket, client: Client) => Promise<void> | undefined

export function createHooks (d: HookDeps): Hooks & { onDisconnect: (client: Client) => void, setIngest: (fn: Ingest | null) => void } {
  const { cfg, auth, acl, gate, stats, log } = d
  let ingest: Ingest | null = null
  /** Publishes of each client that hold a gate slot, released by `published` or at disconnect. */
  const gated = new WeakMap<Client, Set<PublishPacket>>()
  /**
   * Filters granted by authorizeSubscribe and not yet in client.subscriptions:
   * a persistent session stores subscriptions asynchronously, so without this
   * one SUBSCRIBE (or several in one read) could slip past maxSubscriptions.
   * Emptied by aedes' 'subscribe' event, once the SUBSCRIBE is complete.
   */
  const pendingSubs = new WeakMap<Client, Set<string>>()
  /**
   * QoS 2 packet ids of each client whose publish holds or waits for a gate
   * slot, with the repeats of that id waiting for it to be routed.
   */
  const qos2Ids = new WeakMap<Client, Map<number, Array<() => void>>>()
  /** The slow-consumer watch of each connection (guard.ts). */
  const watches = new WeakMap<Client, WriteWatch>()
  /** Shared by every connection's watch: nothing is made per connection but the watch itself. */
  const watchOptions: WriteWatchOptions = {
    limit: cfg.slowConsumerBytes,
    drainTimeoutMs: cfg.drainTimeout * 1000,
    onSlow: (conn, buffered) => {
      stats.refuse('slow_consumer')
      markClose((conn as { client?: Client }).client, 'slow consumer')
      log.info('slow consumer disconnected', { clientId: (conn as { client?: Client }).client?.id, buffered, reason: 'not drained in time' })
      conn.destroy()
    }
  }
  let subscribeListener = false
  const listenForSubscribes = (): void => {
    if (subscribeListener) return
    subscribeListener = true
    d.broker().on('subscribe', (subs: Subscription[], client: Client) => {
      const pending = pendingSubs.get(client)
      if (pending === undefined) return
      for (const sub of subs) pending.delete(sub.topic)
      if (pending.size === 0) pendingSubs.delete(client)
    })
  }

  function notify (s: Session, frame: ErrorFrame): void {
    const now = Date.now()
    if (now - s.lastNotice < NOTICE_INTERVAL_MS) {
      s.suppressedNotices++
      return
    }
    s.lastNotice = now
    const suppressed = s.suppressedNotices
    s.suppressedNotices = 0
    const payload = Buffer.from(JSON.stringify(suppressed > 0 ? { ...frame, suppressed } : frame))
    // Both device topics: the client reads one (fanout.ts), and refusals are rare.
    for (const topic of [topics.device(s.clientId), topics.deviceFeed(s.clientId)]) {
      d.broker().publish({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false }, () => {})
    }
  }

  function refusePublish (s: Session, packet: PublishPacket, reason: RefusalReason, code: ErrorCode, message: string): void {
    stats.refuse(reason)
    stats.publishDropped++
    const frame: ErrorFrame = { t: 'error', code, message, topic: packet.topic }
    if (packet.messageId !== undefined) frame.mid = packet.messageId
    notify(s, frame)
    packet.topic = topics.refused
    packet.retain = false
    packet.payload = Buffer.alloc(0)
  }

  /** Release a routed publish's gate slot and finish it. */
  function release (packet: AedesPublishPacket, client: Client | null, done: (err?: Error | null) => void): void {
    // The same packet object authorizePublish saw (aedes passes it through).
    if (client != null && gated.get(client)?.delete(packet as PublishPacket) === true) {
      gate.leave(client)
      if (packet.qos === 2) {
        const ids = qos2Ids.get(client)
        const waiting = ids?.get(packet.messageId as number)
        ids?.delete(packet.messageId as number)
        if (waiting !== undefined) for (const go of waiting) go()
      }
    }
    done(null)
  }

  return {
    preConnect (client, packet, done) {
      auth.noteConnect(client, packet.clientId)
      watches.set(client, watchWrites(client.conn as unknown as Duplex, watchOptions))
      done(null, true)
    },

    authenticate (client, username, password, done) {
      auth.authenticate(client, username, password).then((session) => {
        setSession(client, session)
        noteTakeover(d.broker(), client)
        stats.connectionsTotal++
        done(null, true)
      }, (err: unknown) => {
        if (err instanceof AuthRefused) {
          stats.refuse(err.reason)
          const e = Object.assign(new Error(err.message), { returnCode: err.returnCode })
          done(e as unknown as Parameters<typeof done>[0], false)
          return
        }
        log.error('authentication error', { error: String(err) })
        done(Object.assign(new Error('server unavailable'), { returnCode: 3 }) as unknown as Parameters<typeof done>[0], false)
      })
    },

    authorizePublish (client, packet, done) {
      const s = getSession(client)
      if (client === null || s === undefined) {
        // A will aedes publishes for a client of an earlier run: its user is
        // unknown here, so only a development-mode, non-chat, non-$ topic passes.
        const c = packet.topic.charCodeAt(0)
        if (!cfg.dev || c === 36 || packet.topic.startsWith('wb/')) {
          packet.topic = topics.refused
          packet.retain = false
        }
        return done(null)
      }
      if (illFormedTopic(packet.topic)) {
        // aedes closes the connection; server.ts counts it (classifyClientError).
        return done(new Error('malformed topic: not well-formed UTF-8, or holds U+0000'))
      }
      stats.messagesReceived++
      if (acl.canPublish(s, packet.topic) === 'deny') {
        refusePublish(s, packet, 'not_authorized', 'not_authorized', `${s.user ?? 'anonymous'} may not publish to ${packet.topic}`)
        return done(null)
      }
      const levels = levelCount(packet.topic)
      if (levels > cfg.maxTopicLevels) {
        refusePublish(s, packet, 'not_authorized', 'not_authorized', `topic has ${levels} levels, more than the limit of ${cfg.maxTopicLevels}`)
        return done(null)
      }
      if (packet.payload.length > cfg.maxPayload) {
        refusePublish(s, packet, 'payload_too_large', 'payload_too_large', `payload of ${packet.payload.length} bytes is over the limit of ${cfg.maxPayload}`)
        return done(null)
      }
      if (s.publishBucket !== null && !client.closed && !s.publishBucket.take()) {
        refusePublish(s, packet, 'rate_limited', 'rate_limited', `over ${cfg.publishRate} publishes per second`)
        return done(null)
      }
      if (s.userPrefix !== null && packet.topic.length === s.userPrefix.length + 3 && packet.topic.endsWith('/out') && packet.topic.startsWith(s.userPrefix)) {
        // The broker names the sending connection: the message service reads
        // user and client id from `wb/u/{user}/out/{clientId}`, never from the payload.
        packet.topic = topics.stampedOut(s.user as string, client.id)
      }
      if (client.closed || !client.connected) return done(null) // its will: not gated
      const admit = (): void => {
        gate.enter(client, () => {
          if (client.closed) {
            // Gone while waiting: give the slot back; aedes no longer cares.
            gate.leave(client)
            return
          }
          let mine = gated.get(client)
          if (mine === undefined) {
            mine = new Set()
            gated.set(client, mine)
          }
          mine.add(packet)
          done(null)
        })
      }
      if (packet.qos === 2) {
        // aedes answers a QoS 2 id it already stored (a retransmission, DUP
        // or not) with PUBREC from its store and never routes it, so
        // `published` would never release a slot: such a publish is not
        // gated. Already stored: the store says so. Not yet stored but on
        // its way (a repeat within one socket read): it waits until the
        // first one was routed (and so stored), then goes ungated.
        const store = (d.broker() as unknown as { persistence: IncomingStore }).persistence
        const id = packet.messageId as number
        store.incomingGetPacket(client, packet).then(() => { done(null) }, () => {
          let ids = qos2Ids.get(client)
          const waiting = ids?.get(id)
          if (waiting !== undefined) {
            waiting.push(() => { done(null) })
            return
          }
          if (ids === undefined) {
            ids = new Map()
            qos2Ids.set(client, ids)
          }
          ids.set(id, [])
          admit()
        })
        return
      }
      admit()
    },

    published (packet, client, done) {
      // A chat send holds its publisher's gate slot until the message service
      // has stored it: the publisher is paced by the archive. This runs after
      // aedes has routed the packet and released its routing slot, so the
      // service's own publishes (deliveries, the ack) never wait for a slot
      // held here.
      const work = client != null && ingest !== null ? ingest(packet, client) : undefined
      if (work !== undefined) {
        work.then(() => { release(packet, client, done) }, () => { release(packet, client, done) })
        return
      }
      release(packet, client, done)
    },

    authorizeSubscribe (client, sub: Subscription, done) {
      if (illFormedTopic(sub.topic)) return done(new Error('malformed topic filter: not well-formed UTF-8, or holds U+0000'), null)
      const s = getSession(client)
      if (acl.canSubscribe(s, sub.topic) === 'deny') {
        stats.refuse('subscribe_denied')
        log.debug('subscribe denied', { user: s?.user ?? null, topic: sub.topic })
        return done(null, null) // SUBACK 0x80
      }
      if (levelCount(sub.topic) > cfg.maxTopicLevels) {
        stats.refuse('subscribe_denied')
        return done(null, null)
      }
      const subs = subscriptionsOf(client)
      const pending = pendingSubs.get(client)
      if (pending !== undefined) for (const f of pending) if (f in subs) pending.delete(f)
      if (!(sub.topic in subs) && pending?.has(sub.topic) !== true) {
        if (Object.keys(subs).length + (pending?.size ?? 0) >= cfg.maxSubscriptions) {
          stats.refuse('too_many_subscriptions')
          if (s !== undefined) notify(s, { t: 'error', code: 'too_many_subscriptions', message: `at most ${cfg.maxSubscriptions} subscriptions`, topic: sub.topic })
          return done(null, null)
        }
        listenForSubscribes()
        if (pending === undefined) pendingSubs.set(client, new Set([sub.topic]))
        else pending.add(sub.topic)
      }
      done(null, sub)
    },

    authorizeForward (client, packet: AedesPublishPacket) {
      const s = getSession(client)
      if (acl.canForward(s, packet.topic) === 'deny') return notForwarded(client, packet)
      if (packet.messageId !== undefined) {
        // aedes replaying a persistent session's queue at (re)connect (a
        // live delivery has no packet id yet): paced by the connection's
        // drains, see watchWrites; the write follows synchronously.
        watches.get(client)?.pace()
        stats.messagesSent++
        return packet
      }
      const conn = client.conn as Writable
      // A retained message sent for a new subscription (aedes clears its
      // broker id) is not cut either: the set is finite, and a client that
      // cannot take it in drainTimeout is cut by watchWrites.
      const retainedReplay = (packet as { brokerId?: string | null }).brokerId === null
      // The message service's own connection is never cut: it is paced by its drains instead.
      if (conn.writableLength > cfg.slowConsumerBytes && !retainedReplay && s?.service !== true) {
        if (deliveryQos(client, packet) === 0) {
          stats.publishDropped++
          return null
        }
        // Cut the slow client loose: its backlog stays bounded, and it gets
        // what it missed from its persistent session when it is back. The
        // packet is still returned: aedes then writes it to the dead
        // connection (a no-op), and a persistent session keeps it queued
        // until acknowledged; returning null would make aedes clear it from
        // the queue (aedes-persistence clears by packet id, and a live
        // packet has none yet: it clears an arbitrary unsent one).
        if (!conn.destroyed) {
          stats.refuse('slow_consumer')
          markClose(client, 'slow consumer')
          log.info('slow consumer disconnected', { clientId: client.id, buffered: conn.writableLength })
          conn.destroy()
        }
        return packet
      }
      stats.messagesSent++
      return packet
    },

    setIngest (fn: Ingest | null) { ingest = fn },

    onDisconnect (client) {
      gated.delete(client)
      qos2Ids.delete(client)
      pendingSubs.delete(client)
      gate.drop(client)
    }
  }
}
