/**
 * The populations of the scenarios, the same shape against both targets:
 * chat pairs, a group and idle sessions, as client and sender specs for the
 * generators. Against Warbler every client logs in with its user's device
 * token and subscribes to what an SDK device subscribes to (its feed and its
 * device feed, where the messages and acks of one commit come in one batch
 * frame); against Mosquitto clients are anonymous, and a plain topic stands
 * for the feed.
 */
import type { ClientSpec, SenderSpec } from '../gen.js'
import { generators, type Generators } from '../generators.js'
import type { RunContext } from '../run-context.js'
import { provision, type Target, target } from '../system-under-test.js'
import { topics } from '@warbler/sdk/protocol'

type Client = ClientSpec & { slot: number }
type Sender = Omit<SenderSpec, 'client'> & { clientId: string }

export interface Population { users: string[], clients: Client[], senders: Sender[] }

export function empty (): Population { return { users: [], clients: [], senders: [] } }

const cid = (user: string): string => `${user}-b`

function client (user: string, tokens: Map<string, string> | null, subs: string[], slot: number, idle = false): Client {
  const token = tokens?.get(user)
  return { clientId: cid(user), auth: token === undefined ? null : { username: user, password: token }, subs, slot, idle }
}

/** Names only (to provision before the node starts). */
export function chatUsers (prefix: string, pairs: number): string[] {
  return Array.from({ length: pairs }, (_, i) => [`${prefix}s${i}`, `${prefix}r${i}`]).flat()
}

/**
 * `pairs` senders each writing to its own receiver (1:1 chat, QoS 1). A pair
 * shares a slot, so both ends are in the same generator thread.
 */
export function chatPairs (p: Population, warbler: boolean, tokens: Map<string, string> | null, prefix: string, pairs: number, sidBase: number, cls = 'chat'): void {
  for (let i = 0; i < pairs; i++) {
    const s = `${prefix}s${i}`
    const r = `${prefix}r${i}`
    p.users.push(s, r)
    const slot = sidBase + i
    p.clients.push(client(r, tokens, warbler ? [topics.feed(r), topics.deviceFeed(cid(r))] : [`bench/p/${prefix}${i}`], slot))
    // The sender listens to its own feed too, as every SDK device does (Warbler sends it a copy).
    p.clients.push(client(s, tokens, warbler ? [topics.deviceFeed(cid(s)), topics.feed(s)] : [], slot))
    p.senders.push({ clientId: cid(s), sid: sidBase + i, cls, user: warbler ? s : null, topic: warbler ? null : `bench/p/${prefix}${i}`, to: r, fanout: 1 })
  }
}

export function groupUsers (prefix: string, senders: number, members: number): { senders: string[], members: string[] } {
  return {
    senders: Array.from({ length: senders }, (_, i) => `${prefix}s${i}`),
    members: Array.from({ length: members }, (_, i) => `${prefix}m${i}`)
  }
}

/** `members` receivers of a group and `senders` posting to it (Mosquitto: one topic). */
export function group (p: Population, warbler: boolean, tokens: Map<string, string> | null, prefix: string, senders: number, members: number, conv: string | null, sidBase: number, cls = 'group'): void {
  const u = groupUsers(prefix, senders, members)
  u.members.forEach((m, i) => {
    p.users.push(m)
    p.clients.push(client(m, tokens, warbler ? [topics.feed(m), topics.deviceFeed(cid(m))] : [`bench/g/${prefix}`], sidBase + i))
  })
  u.senders.forEach((s, i) => {
    p.users.push(s)
    p.clients.push(client(s, tokens, warbler ? [topics.device(cid(s))] : [], sidBase + i))
    p.senders.push({ clientId: cid(s), sid: sidBase + i, cls, user: warbler ? s : null, topic: warbler ? null : `bench/g/${prefix}`, conv: conv ?? undefined, fanout: members })
  })
}

/**
 * Sessions that only hold a subscription (their feed and device feed).
 * `sameFilters`: the references subscribe to the same two filters as
 * Warbler's sessions (anonymously), not one plain topic, so that a session's
 * memory is compared like for like (conns).
 */
export function idle (p: Population, warbler: boolean, tokens: Map<string, string> | null, prefix: string, n: number, reconnected = false, sameFilters = false): void {
  for (let i = 0; i < n; i++) {
    const u = `${prefix}${i}`
    p.users.push(u)
    p.clients.push(client(u, tokens, warbler || sameFilters ? [topics.feed(u), topics.deviceFeed(cid(u))] : [`bench/u/${u}`], i, reconnected))
  }
}

export function idleUsers (prefix: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${i}`)
}

/**
 * The chat and overload scenarios' start: `pairs` sender/receiver pairs
 * provisioned (against Warbler), the target started, every client connected.
 */
export async function connectedChatPairs (ctx: RunContext): Promise<{ t: Target, gens: Generators }> {
  const warbler = ctx.target === 'warbler'
  const tokens = warbler ? await provision(ctx.dir, chatUsers('c', ctx.o.pairs)) : null
  const t = await target(ctx)
  const p = empty()
  chatPairs(p, warbler, tokens, 'c', ctx.o.pairs, 0)
  const gens = generators(ctx, t, p.clients, p.senders)
  const c = await gens.connect(ctx.progress, p.clients.length)
  if (c.counters.connectFailures > 0) throw new Error(`${c.counters.connectFailures} connects failed: ${c.counters.firstError ?? ''}`)
  return { t, gens }
}
