/**
 * In-order, de-duplicated delivery per conversation. The app sees each
 * conversation's messages in seq order, each once, with no hole: a message
 * whose seq is not the next one is held, and the missing range is fetched
 * (`fill`), once at a time per conversation. The same fetch catches up with
 * the tail of a conversation when the server says it has more than the client
 * (`expect`, after a sync that was cut at its limit). A range the server no
 * longer has (retention removed it) is skipped. A conversation the client has
 * not seen yet starts at the first message it gets (older ones are for
 * history paging); the client's sync on connect asks for those from seq 1,
 * or `start`s them at their last seq (a device that begins from now).
 */
import type { MessageFrame } from './protocol.js'

export class Sequencer {
  private readonly last = new Map<string, number>()
  private readonly held = new Map<string, Map<number, MessageFrame>>()
  /** The highest seq the server is known to have, for conversations behind it. */
  private readonly target = new Map<string, number>()
  private readonly filling = new Set<string>()

  constructor (
    private readonly deliver: (m: MessageFrame) => void,
    /** Fetch messages of `conv` after `after`, oldest first, as many as the server gives; resolves with them (any order). */
    private readonly fill: (conv: string, after: number) => Promise<MessageFrame[]>,
    initial: Readonly<Record<string, number>> = {}
  ) {
    for (const [conv, seq] of Object.entries(initial)) this.last.set(conv, seq)
  }

  /** The last seq delivered per conversation (what to pass to sync, and to persist). */
  state (): Record<string, number> {
    return Object.fromEntries(this.last)
  }

  /** A message from anywhere (live, offline queue, sync, fill): delivered now, held, or dropped as a duplicate. */
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

  /** Take `conv` as seen up to `seq` if nothing of it is known yet: only later messages are delivered. */
  start (conv: string, seq: number): void {
    if (!this.last.has(conv)) this.last.set(conv, seq)
  }

  /** The server has messages of `conv` up to `lastSeq`: fetch those the client lacks. Unknown conversations are left alone. */
  expect (conv: string, lastSeq: number): void {
    const last = this.last.get(conv)
    if (last === undefined || lastSeq <= last) return
    this.target.set(conv, Math.max(this.target.get(conv) ?? 0, lastSeq))
    this.requestFill(conv)
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
  hasGap (conv: string): boolean { return this.held.has(conv) || this.behind(conv) }

  private behind (conv: string): boolean {
    const target = this.target.get(conv)
    if (target === undefined) return false
    if (target > (this.last.get(conv) ?? 0)) return true
    this.target.delete(conv)
    return false
  }

  private requestFill (conv: string): void {
    if (this.filling.has(conv) || !(this.held.has(conv) || this.behind(conv))) return
    this.filling.add(conv)
    const after = this.last.get(conv) as number
    this.fill(conv, after).then((messages) => {
      // Still marked as filling while offering, so that the offers start no second fetch.
      for (const m of [...messages].sort((a, b) => a.seq - b.seq)) if (m.conv === conv) this.offer(m)
      if ((this.last.get(conv) as number) <= after) {
        // The server has nothing right after `after` (retention removed it): skip the hole.
        const held = this.held.get(conv)
        if (held !== undefined) {
          this.last.set(conv, Math.min(...held.keys()) - 1)
          this.drain(conv)
        } else {
          this.target.delete(conv)
        }
      }
      this.filling.delete(conv)
      this.requestFill(conv) // more to fetch (a long gap, in pages)
    }, () => {
      // Retried on the next message of this conversation, or after the next sync.
      this.filling.delete(conv)
    })
  }

  /** After a reconnect: try again to fill every conversation still missing messages. */
  retryGaps (): void {
    for (const conv of new Set([...this.held.keys(), ...this.target.keys()])) this.requestFill(conv)
  }
}
