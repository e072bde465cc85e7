/**
 * What the app knows of the user's conversations: the list (by last
 * activity, with unread counts and the last message) and each open
 * conversation's messages by seq, filled by history pages and live messages.
 */
import type { ConversationSummary, MessageFrame } from '@warbler/sdk'

export interface Conv {
  conv: string
  name: string | null
  lastTs: number
  lastSeq: number
  unread: number
  last: MessageFrame | null
  /** Loaded messages by seq. */
  messages: Map<number, MessageFrame>
  /** Whether older messages than the first loaded one remain on the server. */
  more: boolean
}

/** The text a message shows: a string body, a `{text}` body, or the JSON of anything else. */
export function bodyText (m: MessageFrame): string {
  const b = m.body
  if (typeof b === 'string') return b
  if (typeof b === 'object' && b !== null && typeof (b as { text?: unknown }).text === 'string') return (b as { text: string }).text
  return JSON.stringify(b)
}

export class Conversations {
  readonly byId = new Map<string, Conv>()

  constructor (private readonly me: string) {}

  /** The list as the server gave it (convs request). */
  load (list: ConversationSummary[]): void {
    for (const c of list) {
      const known = this.byId.get(c.conv)
      this.byId.set(c.conv, {
        conv: c.conv, name: c.name, lastTs: c.lastTs, lastSeq: c.lastSeq, unread: c.unread, last: c.last,
        messages: known?.messages ?? new Map<number, MessageFrame>(), more: known?.more ?? true
      })
    }
  }

  get (conv: string): Conv {
    let c = this.byId.get(conv)
    if (c === undefined) {
      c = { conv, name: null, lastTs: 0, lastSeq: 0, unread: 0, last: null, messages: new Map(), more: true }
      this.byId.set(conv, c)
    }
    return c
  }

  /** Most recent activity first. */
  sorted (): Conv[] {
    return [...this.byId.values()].sort((a, b) => b.lastTs - a.lastTs || a.conv.localeCompare(b.conv))
  }

  /** A live message: stored, and the list's last message and unread count follow it unless `open`. */
  receive (m: MessageFrame, open: boolean): void {
    const c = this.get(m.conv)
    c.messages.set(m.seq, m)
    if (m.seq > c.lastSeq) {
      if (!open && m.from !== this.me) c.unread++
      c.lastSeq = m.seq
      c.last = m
      c.lastTs = Math.max(c.lastTs, m.ts)
    }
  }

  /** A page of history, older than what was loaded. */
  page (conv: string, messages: MessageFrame[], more: boolean): void {
    const c = this.get(conv)
    for (const m of messages) c.messages.set(m.seq, m)
    c.more = more
  }

  /** The other user of a direct conversation, the group's name, or the id. */
  title (conv: string): string {
    const c = this.byId.get(conv)
    if (c?.name != null && c.name !== '') return c.name
    if (conv.startsWith('d:')) return conv.slice(2).split(':').find((u) => u !== this.me) ?? this.me
    return conv
  }
}
