/**
 * The aedes hooks: where authentication, authorization, limits and
 * backpressure meet the broker. Each hook is a typed function passed to aedes
 * as an option; nothing in aedes is patched. One module per packet the hooks
 * see, as aedes has one handler per packet: connect.ts, publish.ts,
 * subscribe.ts, forward.ts (delivery), sharing one per-connection state
 * (connection-state.ts).
 */
import type { AedesOptions, Client } from 'aedes'
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
    }
  }
}
