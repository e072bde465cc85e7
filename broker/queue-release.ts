/**
 * With Redis: the messages queued for a session leave Redis with the session.
 *
 * aedes-persistence-redis 11 (its asyncPersistence.js) stores a message
 * queued for offline sessions once, as `packet:{broker}:{counter}` with a
 * count of the sessions still holding it (`...:offlineCount`), and lists the
 * key in each session's queue `outgoing:{client id}` (a QoS 2 one in flight
 * as `outgoing:{client id}:{broker}:{counter}`). The count is lowered only
 * when the message is acknowledged (`outgoingClearMessageId`, which finds its
 * key in a per-process cache filled at delivery). When the session's last
 * subscription goes (`removeSubscriptions`: an MQTT 5 session expiring,
 * Clean Start, the last UNSUBSCRIBE) the store deletes the queue list but
 * not the messages it named, and aedes' `emptyOutgoingQueue`, which runs
 * beside it when a session expires, finds none of them in that cache. So
 * every message queued for an expired session stayed in Redis for good
 * (test/cluster/mqtt5-sessions.test.ts counts them).
 *
 * Here, before the store removes subscriptions, when they are all the
 * session has, one Lua script (atomic, one round trip) releases each queued
 * message as an acknowledgement would (count down, deleted at 0) and
 * deletes the queue.
 */
import type { Redis } from 'ioredis'

const RELEASE = `
local fields = redis.call('HKEYS', KEYS[1])
local removed = {}
for i = 2, #ARGV do removed[ARGV[i]] = true end
for _, f in ipairs(fields) do
  if not removed[f] then return -1 end
end
local entries = redis.call('LRANGE', KEYS[2], 0, -1)
for _, e in ipairs(entries) do
  local base = e
  if string.sub(e, 1, #ARGV[1]) == ARGV[1] then
    redis.call('DEL', e)
    base = 'packet:' .. string.sub(e, #ARGV[1] + 1)
  end
  if redis.call('DECR', base .. ':offlineCount') <= 0 then
    redis.call('DEL', base, base .. ':offlineCount')
  end
end
redis.call('DEL', KEYS[2])
return #entries
`

interface SubscriptionStore {
  removeSubscriptions: (client: { id: string }, subs: unknown[]) => Promise<unknown>
}

/**
 * `store` is what aedes-persistence-redis' default export makes: a callback
 * wrapper (aedes-persistence's callBackPersistence.js) whose `asyncPersistence`
 * is the store itself; its `cleanSubscriptions` calls the store's
 * `removeSubscriptions`, so that is the one replaced here.
 */
export function releaseQueuesWithSessions (store: object, redis: Redis): void {
  const p = (store as { asyncPersistence?: SubscriptionStore }).asyncPersistence
  if (p === undefined) throw new Error('aedes-persistence-redis: no asyncPersistence in its instance')
  const remove = p.removeSubscriptions.bind(p)
  p.removeSubscriptions = async (client, subs) => {
    const id = encodeURIComponent(client.id)
    const topics = subs.map((s) => typeof s === 'string' ? s : (s as { topic: string }).topic)
    await redis.eval(RELEASE, 2, `client:${id}`, `outgoing:${id}`, `outgoing:${id}:`, ...topics)
    return await remove(client, subs)
  }
}
