/**
 * MQTT 5 session timers across the brokers of one Redis (the workers of a
 * node, the nodes of a cluster).
 *
 * aedes 2.0.0-beta.1 times a session's Session Expiry Interval and a will's
 * Will Delay Interval in the process that held the connection (aedes.js
 * `scheduleSessionExpiry`, `scheduleWill`), and cancels them only when the
 * same client id registers again on that same process (`_finishRegisterClient`;
 * the timer itself checks only `this.clients`). With sessions in Redis a
 * client reconnects to any worker, so without this:
 * - a session resumed on another worker within its expiry E was wiped at E
 *   by the first (its subscriptions and queue removed from Redis while the
 *   client was connected: its next resume found no session);
 * - a will with delay D went out at D although the client had reconnected
 *   to another worker meanwhile;
 * - a connection taken over from another worker (aedes closes it on the
 *   `$SYS/{id}/new/clients` notice) scheduled its expiry and will as for a
 *   lost connection, and with expiry 0 wiped at once the subscriptions the
 *   new connection had just restored. In one process aedes marks such an id
 *   `_takingOver`; only there.
 *
 * So on every broker, the `$SYS/{id}/new/clients` notice of another broker
 * (on the local bus from a sibling, through Redis from another node) does
 * what a registration here does to these timers: both are cancelled, and a
 * connection of that id still open here is closed as taken over. The will
 * that broker had stored for the id (`will:{broker}:{id}` in Redis) is
 * forgotten once nothing of the id is left here, so the sweep of a dead
 * broker's wills (aedes.js `_clearWills`) cannot send it later.
 */
import type { Aedes, Client } from 'aedes'
import { connectedClients, routingEmitter, sessionTimers, willRemover } from './aedes-internals.js'

export function followSessionsElsewhere (b: Aedes, onError: (err: Error) => void): void {
  const timers = sessionTimers(b)
  const removeWill = willRemover(b)
  const takenOver = new Map<string, Client>()
  const forgetWill = (id: string): void => {
    if (connectedClients(b)[id] === undefined) removeWill(id, b.id).catch(onError)
  }
  routingEmitter(b).on('$SYS/+/new/clients', (packet, done) => {
    const broker = packet.topic.split('/')[1]
    const id = packet.payload.toString()
    if (broker === b.id) return done()
    timers.clearSessionExpiry(id)
    timers.clearDelayedWill(id)
    const local = connectedClients(b)[id]
    if (local === undefined) {
      forgetWill(id)
    } else {
      // aedes closes it on the same notice; its close reads the mark.
      timers.takingOver.add(id)
      takenOver.set(id, local)
    }
    done()
  }, () => {})
  // aedes emits clientDisconnect from the close, right before it schedules
  // the session's expiry: the mark is dropped on the next turn, after that.
  b.on('clientDisconnect', (client) => {
    if (takenOver.get(client.id) !== client) return
    takenOver.delete(client.id)
    setImmediate(() => {
      if (connectedClients(b)[client.id] !== undefined) return
      timers.takingOver.delete(client.id)
      forgetWill(client.id)
    })
  })
}
