/**
 * In-order, de-duplicated delivery per conversation. The app sees each
 * conversation's messages in seq order, each once, with no hole: a message
 * whose seq is not the next one is held, and the missing range is fetched
 * (`fill`), once at a time per conversation. A conversation the client has
 * not seen yet starts at the first message it gets (older ones are for
 * history paging).
 */
import type { MessageFrame } from './protocol.js'

export class Sequencer {
  private readonly last = new Map<string, number>()
  private readonly held = new Map<string, Map<number, MessageFrame>>()
  private readonly filling = new Set<string>()

  constructor (
    private readonly deliver: (m: MessageFrame) => void,
    /** Fetch messages of `conv` after `after`; resolves with them (any order). */
    private readonly fill: (conv: string, after: number) => Promise<MessageFrame[]>,
    initial: Record<string, number> = {}
  ) {
    for (const [conv, seq] of Object.entries(initial)) this.last.set(conv, seq)
  }

  /** The last seq delivered per conversation (what to pass to sync, and to persist). */
  state (): Record<string, number> {
    return Object.fromEntries(this.last)
  }

  offer (m: MessageFrame): void {
    let last = this.last.get(m.conv)
    if (last === undefined) {
      last = m.seq - 1
      this.last.set(m.conv, last)
    }
    if (m.seq <= last) return // a duplicate (retry, redelivery, or sync overlap)
    if (m.seq === last + 1) {
      this.last.set(m.conv, m.seq)
      this.deliver(m)
      this.drain(m.conv)
      return
    }
    let held = this.held.get(m.conv)
    if (held === undefined) { held = new Map(); this.held.set(m.conv, held) }
    held.set(m.seq, m)
    this.requestFill(m.conv)
  }

  private drain (conv: string): void {
    const held = this.held.get(conv)
    if (held === undefined) return
    let last = this.last.get(conv) as number
    for (const seq of [...held.keys()]) if (seq <= last) held.delete(seq)
    for (let next = held.get(last + 1); next !== undefined; next = held.get(last + 1)) {
      held.delete(last + 1)
      last++
      this.last.set(conv, last)
      this.deliver(next)
    }
    if (held.size === 0) this.held.delete(conv)
  }

  /** Whether a conversation is waiting for missing messages. */
  hasGap (conv: string): boolean { return this.held.has(conv) }

  private requestFill (conv: string): void {
    if (this.filling.has(conv)) return
    this.filling.add(conv)
    const after = this.last.get(conv) as number
    this.fill(conv, after).then((messages) => {
      this.filling.delete(conv)
      for (const m of messages.sort((a, b) => a.seq - b.seq)) this.offer(m)
      const held = this.held.get(conv)
      if (held === undefined) return
      if ((this.last.get(conv) as number) > after) {
        this.requestFill(conv)
      } else {
        // The server has nothing in the gap (retention removed it): skip it.
        this.last.set(conv, Math.min(...held.keys()) - 1)
        this.drain(conv)
      }
    }, () => {
      // Retried on the next message of this conversation or the next sync.
      this.filling.delete(conv)
    })
  }

  /** After a reconnect: try again to fill every conversation still holding messages. */
  retryGaps (): void {
    for (const conv of this.held.keys()) this.requestFill(conv)
  }
}
