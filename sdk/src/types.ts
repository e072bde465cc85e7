/** Shapes of the message service's answers (docs/protocol.md, "Requests"). */
import type { MessageFrame } from './protocol.js'

export interface HistoryPage { messages: MessageFrame[], more: boolean }

export interface SyncResult {
  conversations: Array<{ conv: string, lastSeq: number, readSeq: number }>
  messages: MessageFrame[]
  truncated: string[]
}

export interface ConversationSummary {
  conv: string
  kind: 'direct' | 'group'
  name: string | null
  role: string
  lastSeq: number
  lastTs: number
  readSeq: number
  deliveredSeq: number
  unread: number
  last: MessageFrame | null
}

export interface Unread { total: number, conversations: Record<string, number> }
export interface Receipt { user: string, read: number, delivered: number }
export interface Presence { user: string, online: boolean, lastSeen: number | null }
export interface GroupInfo { conv: string, name: string | null, members: Array<{ user: string, role: string }> }
