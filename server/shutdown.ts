/**
 * A Warbler node's graceful close (`Warbler.close()`, server.ts), in this
 * order:
 * 1. new connections are refused (server.ts, before this starts); $SYS stops;
 * 2. clients holding a will are closed first, and close() waits (bounded by
 *    WILL_TIMEOUT_MS) until aedes has published each will: routed to the
 *    subscribers that are still connected, and queued in the persistence for
 *    offline persistent sessions;
 * 3. every other client is closed (aedes); publishes still being routed
 *    get up to DRAIN_TIMEOUT_MS; the embedded message service commits every
 *    send that reached it and closes; then the listeners and HTTP close;
 * 4. the persistence is flushed and closed (Redis: QUIT after the commands
 *    already issued), then the identity store (SQLite).
 */
import type http from 'node:http'
import type { Aedes, Client } from 'aedes'
import { connectedClients, pendingWill, sentDisconnect } from '../broker/aedes-internals.js'
import { closeServer, type Listener } from '../broker/listeners.js'
import type { Logger } from '../shared/log.js'

/** MQTT 5 DISCONNECT reason: server shutting down. */
const SERVER_SHUTTING_DOWN = 0x8B

/** Longest wait for the wills of connected clients at close. */
const WILL_TIMEOUT_MS = 3000

/** Longest wait at close for publishes still being routed. */
const DRAIN_TIMEOUT_MS = 2000

/** aedes client internals read at close (not in its typings). */
async function drained (done: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
}

/** Close aedes (and every client still connected to it). */
export function closeBroker (b: Aedes): Promise<void> {
  return new Promise<void>((resolve) => b.close(() => resolve()))
}

/**
 * Close the clients that hold a will, while everyone else is still
 * connected, and wait until aedes has published each will (its 'publish'
 * event comes after the will was queued for offline sessions and handed to
 * the connected subscribers).
 */
async function publishWills (b: Aedes, log: Logger): Promise<void> {
  const pending = new Map<unknown, unknown>()
  for (const c of Object.values(connectedClients(b))) {
    const will = pendingWill(c)
    if (!c.closed && will !== null && !sentDisconnect(c)) pending.set(c, will)
  }
  if (pending.size === 0) return
  await new Promise<void>((resolve) => {
    const finish = (): void => {
      clearTimeout(timer)
      b.off('publish', onPublish)
      resolve()
    }
    const timer = setTimeout(() => {
      log.warn('wills not all published at close', { pending: pending.size })
      finish()
    }, WILL_TIMEOUT_MS)
    const onPublish = (packet: unknown, client: unknown): void => {
      if (client !== null && pending.get(client) === packet) {
        pending.delete(client)
        if (pending.size === 0) finish()
      }
    }
    b.on('publish', onPublish)
    // An MQTT 5 client is told why (DISCONNECT 0x8B), as aedes tells the rest.
    for (const c of [...pending.keys()]) (c as Client).disconnect({ reasonCode: SERVER_SHUTTING_DOWN })
  })
  // Let the will packets reach the subscribers' sockets before those close.
  await new Promise((resolve) => setImmediate(resolve))
}

/** What a started node has open, as shutdown() closes it. */
export interface NodeParts {
  broker: Aedes
  log: Logger
  /** Stops publishing $SYS. */
  stopSys: () => void
  /** Publishes still being routed (the publish gate's active count). */
  routing: () => number
  /** Closes the embedded message service (nothing with `--bridge off`). */
  closeService: () => Promise<void>
  /** Stops answering a message service's birth (shared routing only). */
  unwatch: (() => Promise<void>) | null
  listeners: Listener[]
  httpServer: http.Server | null
  /** Closes the persistence, then the identity store. */
  release: () => Promise<void>
}

/** The close sequence above, from step 1's $SYS stop. */
export async function shutdown (p: NodeParts): Promise<void> {
  p.stopSys()
  await publishWills(p.broker, p.log)
  // Closes every remaining client.
  await closeBroker(p.broker)
  // aedes sends a QoS 1 PUBACK before it stores and routes the message;
  // wait (bounded) for publishes still being routed, so their persistence
  // commands are issued before the persistence is flushed and closed.
  await drained(() => p.routing() === 0, DRAIN_TIMEOUT_MS)
  // Every send that reached the service is committed before SQLite closes.
  await p.closeService()
  await p.unwatch?.()
  await Promise.all(p.listeners.map((l) => l.close()))
  if (p.httpServer !== null) await closeServer(p.httpServer)
  await p.release()
}
