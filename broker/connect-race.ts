/**
 * A connection that closes while aedes is still processing its CONNECT,
 * after authentication and before the client is registered (while the
 * session's persistence steps run: clean subscriptions, store the will),
 * leaves a ghost behind in aedes 1.x and 2.0.0-beta.1: `close()` finds nothing to unregister
 * (lib/client.js checks `broker.clients[id]`), and the registration that
 * follows (aedes.js `registerClient`) counts the closed client as connected
 * and keeps it in `broker.clients` for good. It never gets a CONNACK nor a
 * `clientReady`, but it raises the connected count (which the connection
 * limit reads, and $SYS and /metrics show) and announces
 * `$SYS/{id}/new/clients`, which the message service's presence follows in a
 * cluster. On a loaded machine the window is wide enough to hit.
 *
 * So each registration of a client already closed is undone on the next
 * turn of the event loop: removed from the broker's table and count, and
 * `$SYS/{id}/disconnect/clients` balances the notice (published after it).
 * No `clientDisconnect` event: nothing saw the client become ready.
 */
import type { Aedes } from 'aedes'
import { connectedClients, forgetClient } from './aedes-internals.js'

export function dropGhostRegistrations (b: Aedes, onDrop: (clientId: string) => void): void {
  b.on('client', (client) => {
    if (!client.closed) return
    setImmediate(() => {
      if (connectedClients(b)[client.id] !== client) return
      forgetClient(b, client.id)
      b.publish({ cmd: 'publish', topic: `$SYS/${b.id}/disconnect/clients`, payload: Buffer.from(client.id, 'utf8'), qos: 0, retain: false, dup: false }, () => {})
      onDrop(client.id)
    })
  })
}
