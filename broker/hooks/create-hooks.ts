/**
 * The aedes hooks: where authentication, authorization, limits and
 * backpressure meet the broker. Each hook is a typed function passed to aedes
 * as an option; nothing in aedes is patched. One module per packet the hooks
 * see, as aedes has one handler per packet: connect.ts, publish.ts,
 * subscribe.ts, forward.ts (delivery), sharing one per-connection state
 * (connection-state.ts).
 */
import type { AedesOptions, Client } from 'aedes'
import { connectedClients } from '../aedes-internals.js'
import { createConnectHooks } from './connect.js'
import { ConnectionStates } from './connection-state.js'
import type { HookDeps } from './deps.js'
import { createForwardHooks } from './forward.js'
import { createNotify } from './notice.js'
import { createPublishHooks, type Ingest } from './publish.js'
import { createSubscribeHooks } from './subscribe.js'

export { classifyClientError } from './client-errors.js'
export type { HookDeps } from './deps.js'
export type { Ingest } from './publish.js'

/**
 * A clean session ends with its connection (MQTT 5: Session Expiry Interval
 * 0; aedes sets `client.clean` so for every version): its inbound QoS 2
 * packets go, which aedes 2.0.0-beta.1 no longer does itself. Not when a
 * connection with the same client id already took over: that one owns the
 * client id's store now.
 */
function endCleanSession (d: HookDeps, client: Client): void {
  if (!client.clean) return
  const current = connectedClients(d.broker())[client.id]
  if (current !== undefined && current !== client) return
  d.inbound.cleanIncoming(client.id).catch((err: unknown) => {
    d.log.warn('could not clear the inbound QoS 2 packets of an ended clean session', { clientId: client.id, error: (err as Error).message })
  })
}

type Hooks = Required<Pick<AedesOptions, 'preConnect' | 'authenticate' | 'authorizePublish' | 'authorizeSubscribe' | 'authorizeForward' | 'published'>>

export function createHooks (d: HookDeps): Hooks & { onDisconnect: (client: Client) => void, setIngest: (fn: Ingest | null) => void } {
  const states = new ConnectionStates()
  const notify = createNotify(d.broker)
  return {
    ...createConnectHooks(d, states),
    ...createPublishHooks(d, states, notify),
    ...createSubscribeHooks(d, states, notify),
    ...createForwardHooks(d, states),

    onDisconnect (client) {
      states.clear(client)
      d.gate.drop(client)
      endCleanSession(d, client)
    }
  }
}
