/**
 * What the hooks remember about one connection between two hooks, in one
 * place: every hook family reads and writes its part, and `clear` forgets
 * what must not outlive the connection.
 */
import type { Client, PublishPacket } from 'aedes'
import type { WriteWatch } from '../guard.js'

export interface ConnectionState {
  /** Publishes of the client that hold a gate slot, released by `published` or at disconnect. */
  gated?: Set<PublishPacket>
  /**
   * Filters granted by authorizeSubscribe and not yet in the client's
   * subscriptions: a persistent session stores subscriptions asynchronously,
   * so without this one SUBSCRIBE (or several in one read) could slip past
   * maxSubscriptions. Emptied by aedes' 'subscribe' event, once the
   * SUBSCRIBE is complete.
   */
  pendingSubs?: Set<string>
  /**
   * QoS 2 packet ids of the client whose publish holds or waits for a gate
   * slot, with the repeats of that id waiting for it to be routed.
   */
  qos2Ids?: Map<number, Array<() => void>>
  /** QoS 1 publishes of the client waiting for a gate slot, so not yet acknowledged (Receive Maximum). */
  unacked?: number
  /** The connection's slow-consumer watch (guard.ts), set at CONNECT. */
  watch?: WriteWatch
}

/** Per-connection state of every connection of one set of hooks. */
export class ConnectionStates {
  private readonly states = new WeakMap<Client, ConnectionState>()

  /** The client's state, if any hook stored one. */
  peek (client: Client): ConnectionState | undefined {
    return this.states.get(client)
  }

  /** The client's state, made empty on first use. */
  of (client: Client): ConnectionState {
    let s = this.states.get(client)
    if (s === undefined) {
      s = {}
      this.states.set(client, s)
    }
    return s
  }

  /**
   * At disconnect: what holds gate slots or subscription counts goes. The
   * write watch stays with its connection (it still paces writes aedes
   * makes while closing) and goes with it.
   */
  clear (client: Client): void {
    const s = this.states.get(client)
    if (s === undefined) return
    s.gated = undefined
    s.pendingSubs = undefined
    s.qos2Ids = undefined
  }
}
