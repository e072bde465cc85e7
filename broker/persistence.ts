/**
 * Session persistence for aedes: in memory by default (the embedded
 * default), or Redis (aedes-persistence-redis) with `--redis URL`, so that
 * subscriptions, offline queues, wills and retained messages survive a
 * broker restart.
 *
 * Either way the injected persistence instance is decorated with a bound on
 * each session's offline queue (`offlineQueue`): past it, new QoS 1/2
 * messages for that session are not queued and `offline_queue_full` is
 * counted. The count is kept in memory per process; after a restart with
 * Redis it starts from zero, so a queue can briefly hold up to twice the
 * bound.
 */
import memoryPersistence from 'aedes-persistence'
import type { Stats } from './stats.js'

/** The part of the aedes persistence interface the decorator touches. */
interface Persistence {
  outgoingEnqueueCombi: (subs: Array<{ clientId: string }>, packet: unknown) => Promise<void>
  outgoingClearMessageId: (client: { id: string }, packet: unknown) => Promise<unknown>
  cleanSubscriptions: (client: { id: string }, ...rest: unknown[]) => Promise<unknown>
  countOffline: () => Promise<{ subsCount: number, clientsCount: number }>
  createRetainedStream: (pattern: string) => AsyncIterable<unknown>
  destroy: () => Promise<void>
}

export interface BrokerPersistence {
  /** What aedes gets as its `persistence` option. */
  readonly instance: unknown
  countOffline: () => Promise<{ subsCount: number, clientsCount: number }>
  retainedCount: () => Promise<number>
  close: () => Promise<void>
}

export async function createPersistence (opts: { redis: string, offlineQueue: number, stats: Stats }): Promise<BrokerPersistence> {
  let p: Persistence
  if (opts.redis !== '') {
    const { default: redisPersistence } = await import('aedes-persistence-redis')
    p = (redisPersistence as unknown as (o: unknown) => Persistence)({ conn: opts.redis, maxSessionDelivery: 1000 })
  } else {
    p = (memoryPersistence as unknown as () => Persistence)()
  }
  boundOfflineQueues(p, opts.offlineQueue, opts.stats)
  let closed = false
  return {
    instance: p,
    countOffline: () => p.countOffline(),
    retainedCount: async () => {
      let n = 0
      for await (const _ of p.createRetainedStream('#')) n++
      return n
    },
    close: async () => {
      if (closed) return
      closed = true
      await p.destroy()
    }
  }
}

function boundOfflineQueues (p: Persistence, limit: number, stats: Stats): void {
  const queued = new Map<string, number>()
  const enqueue = p.outgoingEnqueueCombi.bind(p)
  const clear = p.outgoingClearMessageId.bind(p)
  const clean = p.cleanSubscriptions.bind(p)
  p.outgoingEnqueueCombi = async (subs, packet) => {
    let keep = subs
    for (let i = 0; i < subs.length; i++) {
      const id = (subs[i] as { clientId: string }).clientId
      const n = queued.get(id) ?? 0
      if (n >= limit) {
        stats.refuse('offline_queue_full')
        if (keep === subs) keep = subs.slice(0, i)
        continue
      }
      queued.set(id, n + 1)
      if (keep !== subs) keep.push(subs[i] as { clientId: string })
    }
    if (keep.length > 0) await enqueue(keep, packet)
  }
  p.outgoingClearMessageId = async (client, packet) => {
    const n = queued.get(client.id)
    if (n !== undefined) {
      if (n <= 1) queued.delete(client.id)
      else queued.set(client.id, n - 1)
    }
    return await clear(client, packet)
  }
  p.cleanSubscriptions = async (client, ...rest) => {
    queued.delete(client.id)
    return await clean(client, ...rest)
  }
}
