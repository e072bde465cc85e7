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
import type { Writable } from 'node:stream'
import type { Aedes, AedesOptions, AedesPublishPacket, Client, PublishPacket, Subscription } from 'aedes'
import { type ErrorCode, type ErrorFrame, topics } from '../sdk/src/protocol.js'
import type { Acl } from './acl.js'
import { AuthRefused, type Authenticator } from './auth.js'
import type { Config } from './config.js'
import type { PublishGate } from './flow.js'
import type { Logger } from './log.js'
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

export function createHooks (d: HookDeps): Hooks & { onDisconnect: (client: Client) => void } {
  const { cfg, auth, acl, gate, stats, log } = d

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
    d.broker().publish({ cmd: 'publish', topic: topics.device(s.clientId), payload, qos: 0, retain: false, dup: false }, () => {})
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

  return {
    preConnect (client, packet, done) {
      auth.noteConnect(client, packet.clientId)
      done(null, true)
    },

    authenticate (client, username, password, done) {
      auth.authenticate(client, username, password).then((session) => {
        setSession(client, session)
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
      stats.messagesReceived++
      if (acl.canPublish(s, packet.topic) === 'deny') {
        refusePublish(s, packet, 'not_authorized', 'not_authorized', `${s.user ?? 'anonymous'} may not publish to ${packet.topic}`)
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
      if (client.closed || !client.connected) return done(null) // its will: not gated
      gate.enter(() => {
        if (client.closed) {
          gate.leave()
          return done(new Error('client closed'))
        }
        s.inflight++
        done(null)
      })
    },

    published (packet, client, done) {
      const s = getSession(client)
      if (s !== undefined && s.inflight > 0 && packet.topic !== topics.refused) {
        s.inflight--
        gate.leave()
      }
      done(null)
    },

    authorizeSubscribe (client, sub: Subscription, done) {
      const s = getSession(client)
      if (acl.canSubscribe(s, sub.topic) === 'deny') {
        stats.refuse('subscribe_denied')
        log.debug('subscribe denied', { user: s?.user ?? null, topic: sub.topic })
        return done(null, null) // SUBACK 0x80
      }
      if (sub.topic.split('/').length > cfg.maxTopicLevels) {
        stats.refuse('subscribe_denied')
        return done(null, null)
      }
      const subs = (client as unknown as { subscriptions: Record<string, unknown> }).subscriptions
      if (!(sub.topic in subs) && Object.keys(subs).length >= cfg.maxSubscriptions) {
        stats.refuse('too_many_subscriptions')
        if (s !== undefined) notify(s, { t: 'error', code: 'too_many_subscriptions', message: `at most ${cfg.maxSubscriptions} subscriptions`, topic: sub.topic })
        return done(null, null)
      }
      done(null, sub)
    },

    authorizeForward (client, packet: AedesPublishPacket) {
      const s = getSession(client)
      if (acl.canForward(s, packet.topic) === 'deny') return null
      const conn = client.conn as Writable
      if (conn.writableLength > cfg.slowConsumerBytes) {
        if (packet.qos === 0) {
          stats.publishDropped++
          return null
        }
        // A QoS 1/2 message stays in a persistent session's queue; cut the
        // slow client loose so it stops holding delivery slots of others.
        stats.refuse('slow_consumer')
        log.info('slow consumer disconnected', { clientId: client.id, buffered: conn.writableLength })
        conn.destroy()
        return null
      }
      stats.messagesSent++
      return packet
    },

    onDisconnect (client) {
      const s = getSession(client)
      if (s === undefined) return
      while (s.inflight > 0) {
        s.inflight--
        gate.leave()
      }
    }
  }
}

