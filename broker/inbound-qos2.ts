/**
 * The inbound QoS 2 store, bounded and emptied where aedes 2.0.0-beta.1 no
 * longer does it (aedes 1.2.0 did both: `maxInflightInbound`, and clearing a
 * clean session's incoming packets when it ends).
 *
 * aedes stores a QoS 2 PUBLISH under its packet id until the client sends
 * PUBREL, so that a retransmission is not routed twice. A client that never
 * sends PUBREL fills the store; a clean session that ends leaves its entries
 * behind for good. Here the ids each client id stored and has not released
 * are known: the publish hook refuses a new one past the bound (`reserve`),
 * and the end of a clean session deletes what it left (`cleanIncoming`).
 *
 * Over the in-memory persistence the three incoming functions are replaced by
 * a store kept here: aedes-persistence keeps a table for every client id it
 * was ever asked about (even by a lookup) and never drops it, so cycling
 * client ids would grow it with every packet deleted. Over Redis the
 * persistence's own functions stay and are watched; the ids known are the
 * ones this process stored, so keys left by a process that died stay until
 * their client id sends and releases those ids again.
 */

interface ClientRef { id: string }
interface PacketRef { messageId?: number }

/** The part of the aedes persistence interface for inbound QoS 2 packets. */
export interface IncomingPersistence {
  incomingStorePacket: (client: ClientRef, packet: PacketRef) => Promise<void>
  incomingGetPacket: (client: ClientRef, packet: PacketRef) => Promise<unknown>
  incomingDelPacket: (client: ClientRef, packet: PacketRef) => Promise<void>
}

export interface InboundQos2 {
  /**
   * Counts `messageId` as held by `clientId` unless it already holds `limit`
   * other ids: false then, and nothing is counted. Synchronous on purpose:
   * aedes handles all the packets of one socket read at once, so a count
   * taken after the store's answer would let a whole read past the bound.
   */
  reserve: (clientId: string, messageId: number, limit: number) => boolean
  /** QoS 2 packet ids the client id holds (stored or about to be, not yet released). */
  held: (clientId: string) => number
  /** Client ids holding any. */
  clients: () => number
  /** Forget and delete every QoS 2 packet the client id holds. */
  cleanIncoming: (clientId: string) => Promise<void>
}

/** Watch (over Redis) or replace (in memory: `ownStore`) the persistence's incoming functions. */
export function trackInbound (p: IncomingPersistence, ownStore: boolean): InboundQos2 {
  const held = new Map<string, Set<number>>()
  const hold = (clientId: string, id: number): void => {
    let ids = held.get(clientId)
    if (ids === undefined) {
      ids = new Set<number>()
      held.set(clientId, ids)
    }
    ids.add(id)
  }
  const release = (clientId: string, id: number): void => {
    const ids = held.get(clientId)
    if (ids?.delete(id) === true && ids.size === 0) held.delete(clientId)
  }
  const packets = new Map<string, Map<number, unknown>>()
  const del = p.incomingDelPacket.bind(p)
  if (ownStore) {
    // Promises, as the persistence's own: aedes chains on them.
    p.incomingStorePacket = (client, packet) => {
      const id = packet.messageId as number
      let stored = packets.get(client.id)
      if (stored === undefined) {
        stored = new Map<number, unknown>()
        packets.set(client.id, stored)
      }
      // A copy: aedes goes on using (and the hooks rewriting) the packet it routes.
      stored.set(id, { ...packet })
      hold(client.id, id)
      return Promise.resolve()
    }
    p.incomingGetPacket = (client, packet) => {
      const found = packets.get(client.id)?.get(packet.messageId as number)
      return found === undefined ? Promise.reject(new Error('no such packet')) : Promise.resolve(found)
    }
    p.incomingDelPacket = (client, packet) => {
      const id = packet.messageId as number
      const stored = packets.get(client.id)
      release(client.id, id)
      if (stored?.delete(id) !== true) return Promise.reject(new Error('no such packet'))
      if (stored.size === 0) packets.delete(client.id)
      return Promise.resolve()
    }
  } else {
    const store = p.incomingStorePacket.bind(p)
    p.incomingStorePacket = async (client, packet) => {
      await store(client, packet)
      hold(client.id, packet.messageId as number)
    }
    p.incomingDelPacket = async (client, packet) => {
      release(client.id, packet.messageId as number)
      await del(client, packet)
    }
  }
  return {
    reserve (clientId, messageId, limit) {
      const ids = held.get(clientId)
      if (ids !== undefined && !ids.has(messageId) && ids.size >= limit) return false
      hold(clientId, messageId)
      return true
    },
    held: (clientId) => held.get(clientId)?.size ?? 0,
    clients: () => held.size,
    async cleanIncoming (clientId) {
      const ids = held.get(clientId)
      held.delete(clientId)
      if (ownStore) {
        packets.delete(clientId)
        return
      }
      if (ids === undefined) return
      const client = { id: clientId }
      await Promise.all([...ids].map((messageId) => del(client, { messageId })))
    }
  }
}
