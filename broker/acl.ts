/**
 * Authorization, decided from memory: the fixed rules of the chat topic space
 * (`wb/`), `$`-topics for admins, and Mosquitto-style patterns (`%u`, `%c`)
 * from config for every other topic.
 *
 * Chat topic space (see docs/protocol.md):
 * - publish: only `wb/u/{self}/out`; inboxes and device topics are written by
 *   the service alone, which is how the broker, not the payload, names the
 *   sender.
 * - subscribe: filters inside `wb/u/{self}/`, and `wb/d/C` for the user's own
 *   client ids C (`self` or `self-...`: client ids are bound to their user,
 *   so one device of a user may follow another's replies, which lets a plain
 *   client publish with one connection and read its acks with another); an
 *   anonymous client only its own `wb/d/{client id}`.
 * - forward: a second line of defence; a packet on `wb/u/X/...` reaches only
 *   clients of user X, one on `wb/d/C` only clients of C's user (or C itself
 *   when anonymous), whatever they subscribed to (so `#` in development mode
 *   never leaks another's inbox).
 * - a service account (the message service in its own process) also writes
 *   inboxes and device topics and reads `wb/u/+/out/+` and aedes' client
 *   notices `$SYS/+/new/clients`, `$SYS/+/disconnect/clients`.
 * - `$SYS`: admins read the `$SYS/broker/` tree; nobody publishes a `$` topic.
 */
import { clientIdBelongsTo, parseChatTopic, TOPIC_ROOT } from '@warbler/sdk/protocol'
import type { AclRule } from '../shared/config.js'
import type { Session } from './session.js'
import { SERVICE_BIRTH } from '../shared/sys-topics.js'

export type Decision = 'allow' | 'deny'

interface CompiledRule { read: boolean, write: boolean, levels: string[] }

/** Whether a topic name matches a topic filter (MQTT 3.1.1 section 4.7). */
export function topicMatches (filter: readonly string[], topic: readonly string[]): boolean {
  for (let i = 0; i < filter.length; i++) {
    const f = filter[i]
    if (f === '#') return true
    if (i >= topic.length) return false
    if (f !== '+' && f !== topic[i]) return false
  }
  return filter.length === topic.length
}

/**
 * Whether every topic a subscription filter can match is also matched by a
 * pattern: level by level, `#` in the pattern covers the rest, `+` covers
 * any single level (including `+`, not `#`), a literal only itself.
 */
export function filterWithin (filter: readonly string[], pattern: readonly string[]): boolean {
  for (let i = 0; i < filter.length; i++) {
    const p = pattern[i]
    if (p === undefined) return false
    if (p === '#') return true
    const f = filter[i]
    if (f === '#') return false
    if (p === '+') continue
    if (f !== p) return false
  }
  return filter.length === pattern.length || (pattern.length === filter.length + 1 && pattern[filter.length] === '#')
}

/**
 * A rule's levels with `%u` and `%c` replaced (both may appear in one level),
 * or null when the rule cannot apply: `%u` for an anonymous client, or a
 * value that is not a plain level (wildcards or `/` would widen the rule).
 */
function substitute (levels: readonly string[], s: Session): string[] | null {
  const out: string[] = []
  for (const level of levels) {
    if (!level.includes('%')) {
      out.push(level)
      continue
    }
    if (level.includes('%u') && (s.user === null || !plainLevel(s.user))) return null
    if (level.includes('%c') && !plainLevel(s.clientId)) return null
    // One pass, so a value holding "%c" or "%u" is never substituted again.
    out.push(level.replace(/%[uc]/g, (m) => m === '%u' ? s.user as string : s.clientId))
  }
  return out
}

function plainLevel (v: string): boolean {
  return v !== '' && !v.includes('/') && !v.includes('+') && !v.includes('#')
}

/**
 * What a service account (the message service as its own process) reads:
 * every user's sends, which the broker publishes as `wb/u/{user}/out/{clientId}`,
 * and aedes' notices of clients coming and going (for presence).
 */
const SERVICE_OUT = ['wb', 'u', '+', 'out', '+']
const SERVICE_SYS = [['$SYS', '+', 'new', 'clients'], ['$SYS', '+', 'disconnect', 'clients'], ['$SYS', '+', 'heartbeat'], ['$SYS', '+', 'warbler', 'clients']]
const SERVICE_READ = [SERVICE_OUT, ...SERVICE_SYS]

/** Whether a session may read the device topic of client id `clientId`. */
function ownsDevice (s: Session, clientId: string): boolean {
  return clientId === s.clientId || (s.user !== null && clientIdBelongsTo(clientId, s.user))
}

export class Acl {
  private readonly rules: CompiledRule[]
  /**
   * `externalService`: the broker runs without its embedded message service
   * (`--bridge off`), so a service account may read every user's sends. With
   * the embedded service it may not: a second service would handle each send
   * twice, and `warbler bridge` stops at once on the refused subscription.
   */
  constructor (rules: readonly AclRule[], private readonly dev: boolean, private readonly externalService = true) {
    this.rules = rules.map((r) => ({ read: r.read, write: r.write, levels: r.pattern.split('/') }))
  }

  canPublish (s: Session | undefined, topic: string): Decision {
    if (s === undefined) return 'deny'
    if (topic.charCodeAt(0) === 36 /* $ */) {
      // [MQTT-4.7.2-1]: $-topics are the server's; a separate message service may announce its start (service-watch.ts).
      return s.service && this.externalService && topic === SERVICE_BIRTH ? 'allow' : 'deny'
    }
    const chat = parseChatTopic(topic)
    if (chat !== null) {
      if (chat.kind === 'out') return s.user !== null && chat.user === s.user ? 'allow' : 'deny'
      // Inboxes and device topics are written by the message service alone.
      return s.service && (chat.kind === 'inbox' || chat.kind === 'device') ? 'allow' : 'deny'
    }
    if (this.dev) return 'allow'
    const levels = topic.split('/')
    for (const r of this.rules) {
      if (!r.write) continue
      const p = substitute(r.levels, s)
      if (p !== null && topicMatches(p, levels)) return 'allow'
    }
    return 'deny'
  }

  canSubscribe (s: Session | undefined, filter: string): Decision {
    if (s === undefined) return 'deny'
    if (s.service && this.externalService && SERVICE_READ.some((p) => filterWithin(filter.split('/'), p))) return 'allow'
    if (filter.charCodeAt(0) === 36 /* $ */) {
      // Only admins read $SYS; nobody subscribes to other $-topics.
      return s.admin && (filter === '$SYS' || filter.startsWith('$SYS/')) ? 'allow' : 'deny'
    }
    const levels = filter.split('/')
    const first = levels[0]
    if (first === TOPIC_ROOT) {
      if (s.userPrefix !== null && filter.startsWith(s.userPrefix) && levels.length > 3) return 'allow'
      const chat = parseChatTopic(filter)
      if (chat?.kind === 'device' && ownsDevice(s, chat.clientId)) return 'allow'
      return 'deny'
    }
    if (this.dev) return 'allow'
    for (const r of this.rules) {
      if (!r.read) continue
      const p = substitute(r.levels, s)
      if (p !== null && filterWithin(levels, p)) return 'allow'
    }
    return 'deny'
  }

  /** Per delivery; must stay cheap. */
  canForward (s: Session | undefined, topic: string): Decision {
    if (topic.charCodeAt(0) === 36 /* $ */) {
      // Admins read the $SYS/broker/ tree; aedes' own $SYS/{broker id}/...
      // notices (heartbeats, client ids coming and going) and $WB/ are internal,
      // except the client notices a service account reads for presence.
      if (s === undefined) return 'deny'
      if (s.admin && topic.startsWith('$SYS/broker/')) return 'allow'
      if (!s.service) return 'deny'
      const levels = topic.split('/')
      return SERVICE_SYS.some((p) => topicMatches(p, levels)) ? 'allow' : 'deny'
    }
    if (topic.charCodeAt(0) !== 119 /* w */ || !topic.startsWith('wb/')) return 'allow'
    if (s === undefined) return 'deny'
    if (s.userPrefix !== null && topic.startsWith(s.userPrefix)) return 'allow'
    if (s.service && topicMatches(SERVICE_OUT, topic.split('/'))) return 'allow'
    const chat = parseChatTopic(topic)
    return chat?.kind === 'device' && ownsDevice(s, chat.clientId) ? 'allow' : 'deny'
  }
}
