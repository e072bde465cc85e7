/**
 * The `$SYS` topics between the brokers and the message service, in
 * whichever process each runs (broker/service-watch.ts publishes and answers
 * them, bridge/presence.ts and `warbler bridge` read them): with shared
 * routing, a service that starts announces itself, and every broker answers
 * with the ids of its connected clients.
 */

/** A service announces its start here (payload: `{its id}:{ms}`). */
export const SERVICE_BIRTH = '$SYS/warbler/service/birth'

/** Where a broker answers a service's birth with its connected client ids (a JSON array). */
export function clientsTopic (brokerId: string): string {
  return `$SYS/${brokerId}/warbler/clients`
}

/** Matches clientsTopic(id); group 1 is the broker id. */
export const CLIENTS_TOPIC = /^\$SYS\/([^/]+)\/warbler\/clients$/
