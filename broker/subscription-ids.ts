/**
 * Every matching Subscription Identifier on a message (Paho:
 * subscribe_identifiers). MQTT 5 (3.3.4) says a message that matches several
 * subscriptions of one client, sent once, carries the identifiers of all of
 * them. aedes 2.0.0-beta.1 routes one copy per matching subscription, each
 * given its own subscription's identifier (lib/handlers/subscribe.js,
 * `handlePacketSubscription`), and sends only the first copy (its dedupe, or
 * delivery.ts' in Warbler), so the client saw one identifier (aedes' own
 * comment there calls it a known limitation). Here, before that
 * de-duplication, a copy for an MQTT 5 client is given the identifiers of all
 * the client's subscriptions that match its topic. One subscription, or none
 * with an identifier, leaves the packet as aedes made it.
 */
import type { Client } from 'aedes'
import { topicMatches } from './acl.js'
import { clientSubscriptions, type Deliver, type DeliverPacket } from './aedes-internals.js'

interface RoutedPacket extends DeliverPacket { topic?: string, properties?: Record<string, unknown> }

/** Wraps one of a client's delivery functions (delivery.ts' `deliverQoS`, `deliver0`). */
export function withAllSubscriptionIds (client: Client, deliver: Deliver): Deliver {
  return (packet, cb) => {
    if (client.version === 5) addMatchingIds(client, packet)
    deliver(packet, cb)
  }
}

function addMatchingIds (client: Client, packet: RoutedPacket): void {
  const topic = packet.topic
  if (topic === undefined) return
  const subs = clientSubscriptions(client)
  // Most clients (the SDK's) give no identifiers: then no topic is matched at all.
  if (!hasIdentifier(subs)) return
  const levels = topic.split('/')
  // A filter that starts with a wildcard never matches a `$` topic (MQTT-4.7.2-1).
  const dollar = topic.startsWith('$')
  let ids: number[] | null = null
  let matching = 0
  for (const filter in subs) {
    if (dollar && (filter.startsWith('+') || filter.startsWith('#'))) continue
    if (!topicMatches(filter.split('/'), levels)) continue
    matching++
    const si = subs[filter]?.si
    if (si !== undefined) (ids ??= []).push(si)
  }
  if (ids === null || matching < 2) return
  // aedes may share the properties object between copies (a frozen one): a new one.
  packet.properties = { ...packet.properties, subscriptionIdentifier: ids.length === 1 ? ids[0] : ids }
}

function hasIdentifier (subs: ReturnType<typeof clientSubscriptions>): boolean {
  for (const filter in subs) if (subs[filter]?.si !== undefined) return true
  return false
}
