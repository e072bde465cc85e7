/**
 * Delivery: authorizeForward checks each message going to a client (ACL)
 * and keeps slow consumers from holding an unbounded backlog.
 */
import type { AedesOptions, AedesPublishPacket, Client } from 'aedes'
import { topicMatches } from '../acl.js'
import { clientSubscriptions, isRetainedReplay, type SubscriptionEntry } from '../aedes-internals.js'
import { markClose } from '../login-log.js'
import { getSession } from '../session.js'
import type { ConnectionStates } from './connection-state.js'
import type { HookDeps } from './deps.js'

type ForwardHooks = Required<Pick<AedesOptions, 'authorizeForward'>>

/**
 * The QoS a message goes to a client with: the lower of the message's and
 * the client's best matching subscription's. Only on the slow-consumer path.
 */
function deliveryQos (client: Client, packet: AedesPublishPacket): number {
  if (packet.qos === 0) return 0
  const subs = clientSubscriptions(client)
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
  if (packet.messageId === undefined && !client.clean) packet.messageId = -1
  return null
}

export function createForwardHooks (d: HookDeps, states: ConnectionStates): ForwardHooks {
  const { cfg, acl, stats, log } = d
  return {
    authorizeForward (client, packet: AedesPublishPacket) {
      const s = getSession(client)
      if (acl.canForward(s, packet.topic) === 'deny') return notForwarded(client, packet)
      if (packet.messageId !== undefined) {
        // aedes replaying a persistent session's queue at (re)connect (a
        // live delivery has no packet id yet): paced by the connection's
        // drains, see watchWrites; the write follows synchronously.
        states.peek(client)?.watch?.pace()
        stats.messagesSent++
        return packet
      }
      const conn = client.conn
      // A retained message sent for a new subscription (aedes clears its
      // broker id) is not cut either: the set is finite, and a client that
      // cannot take it in drainTimeout is cut by watchWrites.
      const retainedReplay = isRetainedReplay(packet)
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
    }
  }
}
