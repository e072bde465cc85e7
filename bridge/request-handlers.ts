/**
 * Request/reply over MQTT: each `{t:'req', id, op, ...}` a client publishes on
 * its `out` topic gets one `{t:'res', id, data}` or `{t:'error', ref: id, code}`
 * on its device topic. Reads go to the archive reader; writes (watermarks,
 * group changes) to the writer, in order with sends.
 */
import { isValidUsername, type RequestFrame, type RequestOp } from '@warbler/sdk/protocol'
import { addMembers, checkGroupName, createGroup, leaveGroup, removeMembers, renameGroup, setRole } from './groups.js'
import { convParam, intParam, stringParam, usersParam } from './frames.js'
import { RECENT, type RedisMirror } from './redis-mirror.js'
import type { ArchiveReader } from './archive/reader.js'
import type { ArchiveWriter } from './archive/writer.js'
import { ServiceError } from './archive/archive-errors.js'
import { watermarks } from './archive/write-ops.js'

export interface RequestContext {
  user: string
  reader: ArchiveReader
  writer: ArchiveWriter
  presence: (users: string[]) => Promise<Array<{ user: string, online: boolean, lastSeen: number | null }>>
  /** Hot data in Redis, when configured. */
  mirror: RedisMirror | null
}

async function requireMember (ctx: RequestContext, conv: string): Promise<void> {
  if (await ctx.reader.role(conv, ctx.user) === null) throw new ServiceError('not_member', `${ctx.user} is not a member of ${conv}`)
}

/**
 * Move the user's read (and with it delivered) or delivered watermark forward
 * to `seq`. Each watermark that moves is reported to the members in one
 * receipt, with the commit (writer.ts); one that was there already moves
 * nothing and reports nothing.
 */
async function watermark (ctx: RequestContext, r: RequestFrame, column: 'read_seq' | 'delivered_seq'): Promise<{ conv: string, seq: number }> {
  const conv = convParam(r)
  const seq = intParam(r, 'seq', { min: 0, max: Number.MAX_SAFE_INTEGER }) as number
  if (r.seq === undefined) throw new ServiceError('bad_request', 'seq is missing')
  await ctx.writer.op(async (tx) => {
    const c = await tx.conv(conv)
    if (c === null || !c.members.has(ctx.user)) throw new ServiceError('not_member', `${ctx.user} is not a member of ${conv}`)
    if (seq > c.lastSeq) throw new ServiceError('bad_request', `seq ${seq} is past the last message (${c.lastSeq})`)
    const forward = (col: 'read_seq' | 'delivered_seq'): Promise<boolean> => watermarks.forward(tx, col, conv, ctx.user, seq)
    const to: { read?: number, delivered?: number } = {}
    if (column === 'read_seq' && await forward('read_seq')) {
      to.read = seq
      ctx.mirror?.unread(ctx.user, conv, c.lastSeq - seq)
    }
    // Reading implies delivery; watermarks only move forward.
    if (await forward('delivered_seq')) to.delivered = seq
    if (to.read !== undefined || to.delivered !== undefined) tx.moved(c, ctx.user, to)
  })
  return { conv, seq }
}

type Handler = (ctx: RequestContext, r: RequestFrame) => Promise<unknown>

const handlers: Record<RequestOp, Handler> = {
  async history (ctx, r) {
    const conv = convParam(r)
    const limit = intParam(r, 'limit', { min: 1, max: 200, def: 50 }) as number
    const before = intParam(r, 'before', { min: 1, max: Number.MAX_SAFE_INTEGER })
    const after = intParam(r, 'after', { min: 0, max: Number.MAX_SAFE_INTEGER })
    await requireMember(ctx, conv)
    if (before === undefined && after === undefined && ctx.mirror !== null) {
      // The newest page, the most frequent read: from Redis when it holds it whole.
      const lastSeq = (await ctx.reader.conversation(conv))?.lastSeq ?? 0
      // Retention deletes the oldest messages: the mirror may still list some.
      const firstSeq = (await ctx.reader.history(conv, { after: 0, limit: 1 })).messages[0]?.seq ?? lastSeq + 1
      const hot = await ctx.mirror.recent(conv, lastSeq, limit, firstSeq)
      if (hot !== null) return { messages: hot, more: (hot[0]?.seq ?? firstSeq) > firstSeq }
      const page = await ctx.reader.history(conv, { limit: Math.max(limit, RECENT) })
      ctx.mirror.rebuildRecent(conv, page.messages)
      const messages = page.messages.slice(-limit)
      return { messages, more: page.more || page.messages.length > limit }
    }
    const opts: { before?: number, after?: number, limit: number } = { limit }
    if (before !== undefined) opts.before = before
    if (after !== undefined) opts.after = after
    return await ctx.reader.history(conv, opts)
  },

  async sync (ctx, r) {
    const after = r.after ?? {}
    if (typeof after !== 'object' || after === null || Array.isArray(after) ||
      !Object.values(after).every((v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0)) {
      throw new ServiceError('bad_request', 'after must be an object of conversation id to seq (a whole number)')
    }
    const limit = intParam(r, 'limit', { min: 1, max: 500, def: 100 }) as number
    return await ctx.reader.sync(ctx.user, after as Record<string, number>, limit)
  },

  async search (ctx, r) {
    const q = stringParam(r, 'q', (s) => s.trim().length > 0 && s.length <= 200, '1-200 characters')
    const limit = intParam(r, 'limit', { min: 1, max: 100, def: 20 }) as number
    const opts: { conv?: string, limit: number } = { limit }
    if (r.conv !== undefined) opts.conv = convParam(r)
    return { messages: await ctx.reader.search(ctx.user, q, opts) }
  },

  async convs (ctx, r) {
    const limit = intParam(r, 'limit', { min: 1, max: 1000, def: 100 }) as number
    return { conversations: await ctx.reader.conversations(ctx.user, limit) }
  },

  async unread (ctx) {
    return await ctx.reader.unread(ctx.user)
  },

  async read (ctx, r) { return await watermark(ctx, r, 'read_seq') },
  async delivered (ctx, r) { return await watermark(ctx, r, 'delivered_seq') },

  async receipts (ctx, r) {
    const conv = convParam(r)
    await requireMember(ctx, conv)
    const members = await ctx.reader.members(conv)
    return { members: members.map((m) => ({ user: m.user, read: m.readSeq, delivered: m.deliveredSeq })) }
  },

  async presence (ctx, r) {
    return { users: await ctx.presence(usersParam(r, 'users', 200)) }
  },

  async 'group.create' (ctx, r) {
    const name = checkGroupName(r.name)
    const members = r.members === undefined ? [] : usersParam(r, 'members')
    return await ctx.writer.op((tx) => createGroup(tx, ctx.user, name, members))
  },
  async 'group.rename' (ctx, r) {
    const conv = convParam(r)
    const name = checkGroupName(r.name)
    return await ctx.writer.op((tx) => renameGroup(tx, ctx.user, conv, name))
  },
  async 'group.add' (ctx, r) {
    const conv = convParam(r)
    const users = usersParam(r)
    return await ctx.writer.op((tx) => addMembers(tx, ctx.user, conv, users))
  },
  async 'group.remove' (ctx, r) {
    const conv = convParam(r)
    const users = usersParam(r)
    return await ctx.writer.op((tx) => removeMembers(tx, ctx.user, conv, users))
  },
  async 'group.leave' (ctx, r) {
    const conv = convParam(r)
    return await ctx.writer.op((tx) => leaveGroup(tx, ctx.user, conv))
  },
  async 'group.role' (ctx, r) {
    const conv = convParam(r)
    const target = stringParam(r, 'user', isValidUsername, 'a user name')
    return await ctx.writer.op((tx) => setRole(tx, ctx.user, conv, target, r.role))
  },
  async 'group.members' (ctx, r) {
    const conv = convParam(r)
    await requireMember(ctx, conv)
    const info = await ctx.reader.conversation(conv)
    if (info === null || info.kind !== 'group') throw new ServiceError('not_found', `no group ${conv}`)
    return { conv, name: info.name, members: (await ctx.reader.members(conv)).map((m) => ({ user: m.user, role: m.role })) }
  }
}

export async function handleRequest (ctx: RequestContext, r: RequestFrame): Promise<unknown> {
  return await handlers[r.op](ctx, r)
}
