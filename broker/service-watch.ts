/**
 * With shared routing (several workers or nodes on one Redis) the message
 * service runs in one broker only, and it learns who is online from aedes'
 * `$SYS/{broker id}/new|disconnect/clients` notices of every broker
 * (embedded-service.ts, followPresence). A service that starts while
 * clients are already connected to other brokers (its worker was restarted)
 * has missed their notices, so it announces itself once on
 * `$SYS/warbler/service/birth` and every broker answers with the ids of its
 * connected clients on `$SYS/{broker id}/warbler/clients`.
 *
 * Sends that were on their way to a service that died are lost with it,
 * unacknowledged: the SDK sends again what has no answer after its
 * requestTimeout (and at every reconnect), with the same client message id,
 * so each is stored once. docs/architecture.md has the details.
 */
import type { Aedes } from 'aedes'
import { connectedClients } from './aedes-internals.js'

import { clientsTopic, SERVICE_BIRTH } from '../shared/sys-topics.js'

function publish (b: Aedes, topic: string, payload: string): void {
  b.publish({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 0, retain: false, dup: false }, () => {})
}

/** In the broker that runs the message service, once it listens for the answers. */
export function announceService (b: Aedes): void {
  publish(b, SERVICE_BIRTH, `${b.id}:${Date.now()}`)
}

/** In every broker with shared routing: answer a service's birth with the connected client ids. Returns stop(). */
export function answerServiceBirth (b: Aedes): () => Promise<void> {
  const brokerId = b.id
  const onBirth = (_packet: unknown, cb: () => void): void => {
    cb()
    publish(b, clientsTopic(brokerId), JSON.stringify(Object.keys(connectedClients(b))))
  }
  b.subscribe(SERVICE_BIRTH, onBirth, () => {})
  return async () => {
    await new Promise<void>((resolve) => { b.unsubscribe(SERVICE_BIRTH, onBirth, () => resolve()) })
  }
}
