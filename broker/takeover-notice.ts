/**
 * DISCONNECT 0x8E (Session taken over) for an MQTT 5 client whose client id
 * connected to another broker: another worker of the node (`--workers`) or
 * another node on the same Redis. MQTT 5 (3.14.2.1) has the server say why it
 * closes a connection; aedes 2.0.0-beta.1 says 0x8E when the new connection
 * is on the same broker (lib/handlers/connect.js calls `disconnect()`), but
 * for one on another broker its `closeSameClients` (aedes.js), which handles
 * the other broker's `$SYS/{id}/new/clients` notice, calls `close()`: the
 * client saw its connection end without a word.
 *
 * The notice reaches this broker on its routing emitter (mq.ts: the local bus
 * from a sibling worker, Redis from another node). A listener added before
 * aedes' own runs first (mqemitter calls a topic's listeners in the order
 * they were added, each at once), so the DISCONNECT is written, in one write
 * (reason-codes.ts), before aedes closes the connection. The reason code is
 * also recorded as aedes' own takeover records it (`disconnectReasonCode`).
 */
import type { Aedes } from 'aedes'
import { connectedClients, setDisconnectReason } from './aedes-internals.js'
import { isMqtt5, Reason, sendDisconnect } from './reason-codes.js'

/** The routing emitter as aedes is given it (mq.ts' instance); a notice's payload is the client id. */
interface NoticeEmitter {
  on: (topic: string, fn: (packet: { topic: string, payload?: unknown }, done: () => void) => void, cb?: () => void) => void
}

/** Call before the broker is made on `mq` (aedes adds its listener when it is made); `broker` is read at each notice. */
export function sayTakeoverAcrossBrokers (mq: NoticeEmitter, broker: () => Aedes | undefined): void {
  mq.on('$SYS/+/new/clients', (packet, done) => {
    const b = broker()
    const from = packet.topic.split('/')[1]
    const client = b === undefined || from === b.id ? undefined : connectedClients(b)[String(packet.payload)]
    if (isMqtt5(client) && !client.closed) {
      sendDisconnect(client, Reason.sessionTakenOver, 'the client id connected to another broker')
      setDisconnectReason(client, Reason.sessionTakenOver)
    }
    done()
  }, () => {})
}
