/**
 * PUBLISH: authorizePublish checks a publish (ACL, topic levels, payload
 * size, rate) and holds it for a slot of the publish gate (flow.ts);
 * `published` runs the message service's ingest and then gives the slot
 * back.
 *
 * A refused PUBLISH is acknowledged (MQTT-3.3.5-2 allows a positive ack or a
 * disconnect; a disconnect would make a retrying client loop) but never
 * routed: its topic is rewritten to a sink nobody can subscribe to, and the
 * sender gets an error notice on its device topic `wb/d/{clientId}`. An
 * MQTT 5 client is answered with the refusal's own reason code instead
 * (PUBACK/PUBREC 0x87; not yet for the rate or a payload over maxPayload:
 * reason-codes.ts), and the publish is
 * neither acknowledged again nor routed; the notice goes out as well.
 *
 * MQTT 5 Receive Maximum (maxInflightInbound, said in the CONNACK): an MQTT 5
 * client with that many QoS 1 publishes not yet acknowledged and QoS 2 ones
 * not yet released that sends one more is disconnected with 0x93.
 */
import type { AedesOptions, AedesPublishPacket, Client, PublishPacket } from 'aedes'
import { type ErrorCode, type ErrorFrame, topics } from '@warbler/sdk/protocol'
import { incomingStore, markAnswered } from '../aedes-internals.js'
import { markClose } from '../login-log.js'
import { isMqtt5, publishReason, Reason, refusePublish as answerRefused } from '../reason-codes.js'
import { getSession, type Session } from '../session.js'
import type { RefusalReason } from '../stats.js'
import type { ConnectionStates } from './connection-state.js'
import type { HookDeps } from './deps.js'
import type { Notify } from './notice.js'
import { illFormedTopic, levelCount } from './topic-checks.js'

/**
 * Work to do for a publish once aedes has routed it, before its gate slot is
 * released and its routing counts as done: the embedded message service
 * stores a chat send here. Returns undefined when there is nothing to do.
 */
export type Ingest = (packet: AedesPublishPacket, client: Client) => Promise<void> | undefined

type PublishHooks = Required<Pick<AedesOptions, 'authorizePublish' | 'published'>> & { setIngest: (fn: Ingest | null) => void }
type Done = (err?: Error | null) => void

/**
 * Over 80 lines as a factory only: its closures share the deps, the state
 * and the ingest setting; each of them is short.
 */
// eslint-disable-next-line max-lines-per-function -- a factory of short closures (see above)
export function createPublishHooks (d: HookDeps, states: ConnectionStates, notify: Notify): PublishHooks {
  const { cfg, acl, gate, stats } = d
  let ingest: Ingest | null = null

  function refusePublish (s: Session, packet: PublishPacket, reason: RefusalReason, code: ErrorCode, message: string, client: Client): void {
    stats.refuse(reason)
    stats.publishDropped++
    const frame: ErrorFrame = { t: 'error', code, message, topic: packet.topic }
    if (packet.messageId !== undefined) frame.mid = packet.messageId
    notify(s, frame)
    // Answered in the protocol only when it came from the client on the wire:
    // a will is published after its client is gone and has no packet id
    // (generating a PUBACK for it threw, and the broker process ended).
    const fromWire = client.connected && !client.closed && packet.messageId !== undefined
    const reasonCode = isMqtt5(client) && fromWire ? publishReason(reason) : null
    if (reasonCode !== null) {
      // refusalDetail unspecified: 0x80 without a reason string (the notice says why).
      const precise = cfg.refusalDetail === 'precise'
      answerRefused(client, packet, precise ? reasonCode : Reason.unspecifiedError, precise ? message : null)
      markAnswered(packet)
    }
    // Still rewritten: should aedes route it after all, it goes nowhere.
    packet.topic = topics.refused
    packet.retain = false
    packet.payload = Buffer.alloc(0)
  }

  /** Refuses the publish (and says why) when a limit or the ACL forbids it; true if refused. */
  function refused (s: Session, packet: PublishPacket, client: Client): boolean {
    if (acl.canPublish(s, packet.topic) === 'deny') {
      refusePublish(s, packet, 'not_authorized', 'not_authorized', `${s.user ?? 'anonymous'} may not publish to ${packet.topic}`, client)
      return true
    }
    const levels = levelCount(packet.topic)
    if (levels > cfg.maxTopicLevels) {
      refusePublish(s, packet, 'not_authorized', 'not_authorized', `topic has ${levels} levels, more than the limit of ${cfg.maxTopicLevels}`, client)
      return true
    }
    if (packet.payload.length > cfg.maxPayload) {
      refusePublish(s, packet, 'payload_too_large', 'payload_too_large', `payload of ${packet.payload.length} bytes is over the limit of ${cfg.maxPayload}`, client)
      return true
    }
    if (s.publishBucket !== null && !client.closed && !s.publishBucket.take()) {
      refusePublish(s, packet, 'rate_limited', 'rate_limited', `over ${cfg.publishRate} publishes per second`, client)
      return true
    }
    return false
  }

  /**
   * More unacknowledged QoS 1/2 publishes than the Receive Maximum: DISCONNECT
   * 0x93 ([MQTT-3.3.4-9]), the publish neither acknowledged nor routed.
   */
  function overReceiveMaximum (client: Client, packet: PublishPacket, done: Done): void {
    stats.refuse('receive_maximum')
    stats.publishDropped++
    markAnswered(packet)
    const message = `more than ${cfg.maxInflightInbound} unacknowledged QoS 1 and 2 publishes (Receive Maximum)`
    markClose(client, 'error', message)
    client.disconnect({ reasonCode: Reason.receiveMaximumExceeded, properties: { reasonString: message } })
    done(null)
  }

  /** QoS 1 publishes of the client not yet acknowledged: they wait for a gate slot, and PUBACK follows the slot at once. */
  const unacked = (client: Client): number => states.peek(client)?.unacked ?? 0

  /** Let the publish through once it holds a gate slot. */
  function admit (client: Client, packet: PublishPacket, done: Done): void {
    const counted = packet.qos === 1
    if (counted) {
      const st = states.of(client)
      st.unacked = (st.unacked ?? 0) + 1
    }
    gate.enter(client, () => {
      if (counted) (states.of(client).unacked as number)--
      if (client.closed) {
        // Gone while waiting: give the slot back; aedes no longer cares.
        gate.leave(client)
        return
      }
      const state = states.of(client)
      state.gated ??= new Set()
      state.gated.add(packet)
      done(null)
    })
  }

  /**
   * aedes answers a QoS 2 id it already stored (a retransmission, DUP or
   * not) with PUBREC from its store and never routes it, so `published`
   * would never release a slot: such a publish is not gated. Already
   * stored: the store says so. Not yet stored but on its way (a repeat
   * within one socket read): it waits until the first one was routed (and
   * so stored), then goes ungated.
   */
  function admitQos2 (client: Client, packet: PublishPacket, done: Done): void {
    const store = incomingStore(d.broker())
    const id = packet.messageId as number
    store.incomingGetPacket(client, packet).then(() => { done(null) }, () => {
      const state = states.of(client)
      const waiting = state.qos2Ids?.get(id)
      if (waiting !== undefined) {
        waiting.push(() => { done(null) })
        return
      }
      const v5 = isMqtt5(client)
      // MQTT 5: QoS 1 publishes not yet acknowledged count against the Receive Maximum too.
      if (!d.inbound.reserve(client.id, id, cfg.maxInflightInbound - (v5 ? unacked(client) : 0))) {
        if (v5) {
          overReceiveMaximum(client, packet, done)
          return
        }
        // As aedes 1.2 (maxInflightInbound): refused before it is stored.
        // aedes closes an MQTT 3 connection on the error; an MQTT 5 client
        // gets PUBREC 0x87 with the message as reason string, nothing stored.
        stats.refuse('awaiting_pubrel')
        stats.publishDropped++
        done(new Error(`${cfg.maxInflightInbound} QoS 2 publishes already wait for PUBREL (maxInflightInbound)`))
        return
      }
      state.qos2Ids ??= new Map()
      state.qos2Ids.set(id, [])
      admit(client, packet, done)
    })
  }

  /** Release a routed publish's gate slot and finish it. */
  function release (packet: AedesPublishPacket, client: Client | null, done: Done): void {
    // The same packet object authorizePublish saw (aedes passes it through).
    const state = client != null ? states.peek(client) : undefined
    if (client != null && state?.gated?.delete(packet) === true) {
      gate.leave(client)
      if (packet.qos === 2) {
        const ids = state.qos2Ids
        const waiting = ids?.get(packet.messageId as number)
        ids?.delete(packet.messageId as number)
        if (waiting !== undefined) for (const go of waiting) go()
      }
    }
    done(null)
  }

  return {
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
        // aedes closes the connection; server/node.ts counts it (classifyClientError).
        return done(new Error('malformed topic: not well-formed UTF-8, or holds U+0000'))
      }
      stats.messagesReceived++
      // Not a will (its client is gone): it was never in the client's window.
      if (packet.qos === 1 && client.connected && !client.closed && isMqtt5(client) && unacked(client) + d.inbound.held(client.id) >= cfg.maxInflightInbound) {
        overReceiveMaximum(client, packet, done)
        return
      }
      if (refused(s, packet, client)) return done(null)
      if (s.userPrefix !== null && packet.topic.length === s.userPrefix.length + 3 && packet.topic.endsWith('/out') && packet.topic.startsWith(s.userPrefix)) {
        // The broker names the sending connection: the message service reads
        // user and client id from `wb/u/{user}/out/{clientId}`, never from the payload.
        packet.topic = topics.stampedOut(s.user as string, client.id)
      }
      if (client.closed || !client.connected) return done(null) // its will: not gated
      if (packet.qos === 2) admitQos2(client, packet, done)
      else admit(client, packet, done)
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

    setIngest (fn: Ingest | null) { ingest = fn }
  }
}
