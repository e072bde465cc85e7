/**
 * The archive's read side: history pages, sync, search, the conversation
 * list, unread counts and receipts. It has its own SQLite connection, so a
 * read never sees the writer's uncommitted batch (WAL gives it the last
 * committed state) and never waits for it.
 */
import type { MessageFrame, UserProperties } from '@warbler/sdk/protocol'
import type { ConversationSummary } from '@warbler/sdk/protocol'
import type { Database } from '../../shared/sqlite.js'

type MessageRow = { id: string, conv: string, seq: number, sender: string, cid: string | null, ts: number, body: string, props: string | null }

function rowToFrame (r: MessageRow): MessageFrame {
  const f: MessageFrame = { t: 'msg', id: r.id, conv: r.conv, seq: r.seq, from: r.sender, ts: r.ts, body: JSON.parse(r.body) as unknown }
  if (r.cid !== null) f.cid = r.cid
  if (r.props != null) f.props = JSON.parse(r.props) as UserProperties
  return f
}

/** The same shape the SDK types, so the reply and the SDK's type cannot drift apart. */
export type { ConversationSummary }

const COLUMNS = 'id, conv, seq, sender, cid, ts, body, props'

/** Turn free text into an FTS5 query of quoted terms (no operators from users). */
function ftsQuery (q: string): string {
  // Each term quoted, so FTS5 syntax is taken literally; a quote or a NUL (which ends
  // FTS5's query string early: "unterminated string") cannot be quoted, so it goes.
  // eslint-disable-next-line no-control-regex -- the NUL is the point
  const terms = q.split(/\s+/).map((t) => t.replace(/["\u0000]/g, '')).filter((t) => t.length > 0).slice(0, 16)
  return terms.map((t) => `"${t}"`).join(' ')
}

/**
 * A member's unread count in SQL (over `c` conversations and `mb` members):
 * the messages after its read seq that are still stored. Retention deletes
 * the oldest messages, so the count starts after the larger of the read seq
 * and the seq before the oldest one kept (one lookup in the (conv, seq) index).
 */
const UNREAD = `MAX(0, c.last_seq - MAX(mb.read_seq,
  COALESCE((SELECT MIN(seq) FROM messages WHERE conv = c.id) - 1, c.last_seq)))`

export class ArchiveReader {
  constructor (private readonly db: Database) {}

  async role (conv: string, user: string): Promise<string | null> {
    const r = await this.db.get<{ role: string }>('SELECT role FROM members WHERE conv = ? AND user = ?', [conv, user])
    return r?.role ?? null
  }

  /** Messages of a conversation: the newest `limit` before `before`, or the oldest `limit` after `after`; ascending. */
  async history (conv: string, opts: { before?: number, after?: number, limit: number }): Promise<{ messages: MessageFrame[], more: boolean }> {
    let rows: MessageRow[]
    if (opts.after !== undefined) {
      const upper = opts.before ?? Number.MAX_SAFE_INTEGER
      rows = await this.db.all<MessageRow>(`SELECT ${COLUMNS} FROM messages WHERE conv = ? AND seq > ? AND seq < ? ORDER BY seq ASC LIMIT ?`,
        [conv, opts.after, upper, opts.limit + 1])
      const more = rows.length > opts.limit
      return { messages: rows.slice(0, opts.limit).map(rowToFrame), more }
    }
    rows = await this.db.all<MessageRow>(`SELECT ${COLUMNS} FROM messages WHERE conv = ? AND seq < ? ORDER BY seq DESC LIMIT ?`,
      [conv, opts.before ?? Number.MAX_SAFE_INTEGER, opts.limit + 1])
    const more = rows.length > opts.limit
    return { messages: rows.slice(0, opts.limit).reverse().map(rowToFrame), more }
  }

  async message (id: string): Promise<MessageFrame | null> {
    const r = await this.db.get<MessageRow>(`SELECT ${COLUMNS} FROM messages WHERE id = ?`, [id])
    return r === undefined ? null : rowToFrame(r)
  }

  /** The user's conversations, most recently active first, with the last message and unread count. */
  async conversations (user: string, limit: number): Promise<ConversationSummary[]> {
    const rows = await this.db.all<{
      conv: string
      kind: 'direct' | 'group'
      name: string | null
      role: string
      last_seq: number
      last_ts: number
      read_seq: number
      delivered_seq: number
      unread: number
    } & Partial<MessageRow>>(
      `SELECT c.id AS conv, c.kind, c.name, mb.role, c.last_seq, c.last_ts, mb.read_seq, mb.delivered_seq,
              ${UNREAD} AS unread,
              m.id, m.seq, m.sender, m.cid, m.ts, m.body, m.props
         FROM members mb JOIN conversations c ON c.id = mb.conv
         LEFT JOIN messages m ON m.conv = c.id AND m.seq = c.last_seq
        WHERE mb.user = ? ORDER BY c.last_ts DESC LIMIT ?`, [user, limit])
    return rows.map((r) => ({
      conv: r.conv,
      kind: r.kind,
      name: r.name,
      role: r.role,
      lastSeq: r.last_seq,
      lastTs: r.last_ts,
      readSeq: r.read_seq,
      deliveredSeq: r.delivered_seq,
      unread: r.unread,
      last: r.id == null ? null : rowToFrame({ id: r.id, conv: r.conv, seq: r.seq as number, sender: r.sender as string, cid: r.cid ?? null, ts: r.ts as number, body: r.body as string, props: r.props ?? null })
    }))
  }

  async unread (user: string): Promise<{ total: number, conversations: Record<string, number> }> {
    const rows = await this.db.all<{ conv: string, n: number }>(
      `SELECT * FROM (SELECT c.id AS conv, ${UNREAD} AS n FROM members mb JOIN conversations c ON c.id = mb.conv
        WHERE mb.user = ? AND c.last_seq > mb.read_seq) WHERE n > 0`, [user])
    const conversations: Record<string, number> = {}
    let total = 0
    for (const r of rows) { conversations[r.conv] = r.n; total += r.n }
    return { total, conversations }
  }

  /** For sync: the user's conversations with their last seq, and messages after the seqs the client has. */
  async sync (user: string, after: Record<string, number>, limitPerConv: number): Promise<{
    conversations: Array<{ conv: string, lastSeq: number, readSeq: number }>
    messages: MessageFrame[]
    truncated: string[]
  }> {
    const convs = await this.db.all<{ conv: string, last_seq: number, read_seq: number }>(
      'SELECT c.id AS conv, c.last_seq, mb.read_seq FROM members mb JOIN conversations c ON c.id = mb.conv WHERE mb.user = ? ORDER BY c.last_ts DESC', [user])
    const messages: MessageFrame[] = []
    const truncated: string[] = []
    for (const c of convs) {
      const have = after[c.conv] ?? 0
      if (c.last_seq <= have) continue
      const page = await this.history(c.conv, { after: have, limit: limitPerConv })
      messages.push(...page.messages)
      if (page.more) truncated.push(c.conv)
    }
    return { conversations: convs.map((c) => ({ conv: c.conv, lastSeq: c.last_seq, readSeq: c.read_seq })), messages, truncated }
  }

  /** Full-text search in the conversations the user belongs to (or one of them), newest first. */
  async search (user: string, q: string, opts: { conv?: string, limit: number }): Promise<MessageFrame[]> {
    const match = ftsQuery(q)
    if (match === '') return []
    const rows = await this.db.all<MessageRow>(
      `SELECT m.id, m.conv, m.seq, m.sender, m.cid, m.ts, m.body, m.props FROM messages_fts f JOIN messages m ON m.rowid = f.rowid
        WHERE messages_fts MATCH ? AND m.conv IN (SELECT conv FROM members WHERE user = ?) ${opts.conv !== undefined ? 'AND m.conv = ?' : ''}
        ORDER BY m.ts DESC LIMIT ?`,
      opts.conv !== undefined ? [match, user, opts.conv, opts.limit] : [match, user, opts.limit])
    return rows.map(rowToFrame)
  }

  async members (conv: string): Promise<Array<{ user: string, role: string, readSeq: number, deliveredSeq: number }>> {
    const rows = await this.db.all<{ user: string, role: string, read_seq: number, delivered_seq: number }>(
      'SELECT user, role, read_seq, delivered_seq FROM members WHERE conv = ? ORDER BY user', [conv])
    return rows.map((r) => ({ user: r.user, role: r.role, readSeq: r.read_seq, deliveredSeq: r.delivered_seq }))
  }

  /** Every group, most recently active first, with its member count (the admin console's list). */
  async groups (limit: number): Promise<Array<{ conv: string, name: string | null, members: number, lastSeq: number, lastTs: number }>> {
    const rows = await this.db.all<{ conv: string, name: string | null, members: number, last_seq: number, last_ts: number }>(
      `SELECT c.id AS conv, c.name, (SELECT count(*) FROM members m WHERE m.conv = c.id) AS members, c.last_seq, c.last_ts
        FROM conversations c WHERE c.kind = 'group' ORDER BY c.last_ts DESC, c.id LIMIT ?`, [limit])
    return rows.map((r) => ({ conv: r.conv, name: r.name, members: r.members, lastSeq: r.last_seq, lastTs: r.last_ts }))
  }

  async conversation (conv: string): Promise<{ kind: string, name: string | null, lastSeq: number } | null> {
    const r = await this.db.get<{ kind: string, name: string | null, last_seq: number }>('SELECT kind, name, last_seq FROM conversations WHERE id = ?', [conv])
    return r === undefined ? null : { kind: r.kind, name: r.name, lastSeq: r.last_seq }
  }

  /** When `user` was last seen online (stored when their last device went away), or null. */
  async lastSeen (user: string): Promise<number | null> {
    const r = await this.db.get<{ ts: number }>('SELECT ts FROM last_seen WHERE user = ?', [user])
    return r?.ts ?? null
  }

  /** Users that share a direct conversation with `user` (who hear about its presence). */
  async directPeers (user: string): Promise<string[]> {
    // Asked at every connect and disconnect (presence): a prepared statement, not one compiled per call.
    const stmt = await this.db.prepare(`SELECT m2.user FROM members m1 JOIN conversations c ON c.id = m1.conv AND c.kind = 'direct'
         JOIN members m2 ON m2.conv = m1.conv AND m2.user <> m1.user WHERE m1.user = ?`)
    const rows = await stmt.all<{ user: string }>([user])
    return rows.map((r) => r.user)
  }
}
