/** A client's subscriptions as aedes keeps them, read by the subscribe and forward hooks. */
import type { Client } from 'aedes'

export interface SubscriptionEntry { qos: number }
export type ClientSubscriptions = Record<string, SubscriptionEntry>

export function subscriptionsOf (client: Client): ClientSubscriptions {
  return (client as unknown as { subscriptions: ClientSubscriptions }).subscriptions
}
