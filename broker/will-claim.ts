/**
 * With Redis: a dead broker's will is sent by one live broker only.
 *
 * Every broker sweeps, every four heartbeats, the wills stored by brokers it
 * no longer hears from (aedes.js `_clearWills`): it streams them
 * (`persistence.streamWill`, in aedes-persistence-redis 11 a read of the
 * `will` list and of each `will:{broker}:{client id}` key), publishes each,
 * and only then deletes it. Two live brokers (the workers of a node, the
 * nodes of a cluster) sweeping at once both read and both publish it. Here
 * each will is claimed before it is handed to the sweep: the DEL of its key
 * answers 1 to one caller only, and only that caller sends it (aedes' own
 * delete afterwards finds nothing). A broker that dies between the claim and
 * the publish loses that will; sending it twice is what is avoided.
 */
import type { Redis } from 'ioredis'

interface StoredWill { clientId: string, brokerId: string }
interface WillStream { streamWill: (brokers: unknown) => AsyncIterable<StoredWill> }

/** `store` is aedes-persistence-redis' instance; its `asyncPersistence` streams the wills (see queue-release.ts). */
export function claimSweptWills (store: object, redis: Redis): void {
  const p = (store as { asyncPersistence?: WillStream }).asyncPersistence
  if (p === undefined) throw new Error('aedes-persistence-redis: no asyncPersistence in its instance')
  const stream = p.streamWill.bind(p)
  p.streamWill = (brokers) => (async function * claimed () {
    for await (const will of stream(brokers)) {
      // The key as the store writes it (its asyncPersistence.js, willKey).
      const key = `will:${will.brokerId}:${encodeURIComponent(will.clientId)}`
      if (await redis.del(key) !== 1) continue
      await redis.lrem('will', 0, key)
      yield will
    }
  })()
}
