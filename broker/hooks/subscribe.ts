/**
 * SUBSCRIBE: authorizeSubscribe checks a filter (ACL, topic levels) and
 * the client's number of subscriptions; a refused filter gets SUBACK 0x80.
 */
import type { AedesOptions, Client, Subscription } from 'aedes'
import { clientSubscriptions } from '../aedes-internals.js'
import { getSession } from '../session.js'
import type { ConnectionStates } from './connection-state.js'
import type { HookDeps } from './deps.js'
import type { Notify } from './notice.js'
import { illFormedTopic, levelCount } from './topic-checks.js'

type SubscribeHooks = Required<Pick<AedesOptions, 'authorizeSubscribe'>>

export function createSubscribeHooks (d: HookDeps, states: ConnectionStates, notify: Notify): SubscribeHooks {
  const { cfg, acl, stats, log } = d
  let subscribeListener = false
  /** Granted filters leave the pending set once aedes has stored the SUBSCRIBE. */
  const listenForSubscribes = (): void => {
    if (subscribeListener) return
    subscribeListener = true
    d.broker().on('subscribe', (subs: Subscription[], client: Client) => {
      const state = states.peek(client)
      const pending = state?.pendingSubs
      if (state === undefined || pending === undefined) return
      for (const sub of subs) pending.delete(sub.topic)
      if (pending.size === 0) state.pendingSubs = undefined
    })
  }

  return {
    authorizeSubscribe (client, sub: Subscription, done) {
      if (illFormedTopic(sub.topic)) return done(new Error('malformed topic filter: not well-formed UTF-8, or holds U+0000'), null)
      const s = getSession(client)
      if (acl.canSubscribe(s, sub.topic) === 'deny') {
        stats.refuse('subscribe_denied')
        log.debug('subscribe denied', { user: s?.user ?? null, topic: sub.topic })
        return done(null, null) // SUBACK 0x80
      }
      if (levelCount(sub.topic) > cfg.maxTopicLevels) {
        stats.refuse('subscribe_denied')
        return done(null, null)
      }
      const subs = clientSubscriptions(client)
      const state = states.of(client)
      const pending = state.pendingSubs
      if (pending !== undefined) for (const f of pending) if (f in subs) pending.delete(f)
      if (!(sub.topic in subs) && pending?.has(sub.topic) !== true) {
        if (Object.keys(subs).length + (pending?.size ?? 0) >= cfg.maxSubscriptions) {
          stats.refuse('too_many_subscriptions')
          if (s !== undefined) notify(s, { t: 'error', code: 'too_many_subscriptions', message: `at most ${cfg.maxSubscriptions} subscriptions`, topic: sub.topic })
          return done(null, null)
        }
        listenForSubscribes()
        if (pending === undefined) state.pendingSubs = new Set([sub.topic])
        else pending.add(sub.topic)
      }
      done(null, sub)
    }
  }
}
