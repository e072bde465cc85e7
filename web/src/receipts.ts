/**
 * Read and delivered watermarks per conversation and member: loaded with the
 * `receipts` request when a conversation opens and moved by the receipt
 * frames the service sends. Only the highest value seen counts: a receipt may
 * arrive before the message it covers (docs/protocol.md).
 */
import type { Receipt, ReceiptFrame } from '@warbler/sdk'

export type Mark = { kind: 'sent' } | { kind: 'delivered' } | { kind: 'read' } | { kind: 'readBy', users: string[] }

export class Receipts {
  private readonly byConv = new Map<string, Map<string, { read: number, delivered: number }>>()

  private member (conv: string, user: string): { read: number, delivered: number } {
    let c = this.byConv.get(conv)
    if (c === undefined) { c = new Map(); this.byConv.set(conv, c) }
    let m = c.get(user)
    if (m === undefined) { m = { read: 0, delivered: 0 }; c.set(user, m) }
    return m
  }

  load (conv: string, members: Receipt[]): void {
    for (const r of members) this.move(conv, r.user, r.read, r.delivered)
  }

  update (r: ReceiptFrame): void { this.move(r.conv, r.user, r.read ?? 0, r.delivered ?? 0) }

  private move (conv: string, user: string, read: number, delivered: number): void {
    const m = this.member(conv, user)
    m.read = Math.max(m.read, read)
    // Reading implies delivery.
    m.delivered = Math.max(m.delivered, delivered, m.read)
  }

  /**
   * What a message of mine shows: in a direct chat read, delivered or sent by
   * the other's watermarks; in a group who has read it (the others only).
   */
  mark (conv: string, seq: number, me: string): Mark {
    const others = [...(this.byConv.get(conv) ?? new Map<string, { read: number, delivered: number }>()).entries()].filter(([u]) => u !== me)
    if (conv.startsWith('g:')) {
      const users = others.filter(([, m]) => m.read >= seq).map(([u]) => u).sort()
      if (users.length > 0) return { kind: 'readBy', users }
      return others.some(([, m]) => m.delivered >= seq) ? { kind: 'delivered' } : { kind: 'sent' }
    }
    if (others.some(([, m]) => m.read >= seq)) return { kind: 'read' }
    return others.some(([, m]) => m.delivered >= seq) ? { kind: 'delivered' } : { kind: 'sent' }
  }
}
