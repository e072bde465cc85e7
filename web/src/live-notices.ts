/**
 * Who is typing where, and who is online: typing notices expire a few seconds
 * after the last one (the service forwards at most one a second per user, and
 * never says that typing stopped); presence comes from the `presence` request
 * when a direct chat opens and from presence frames after that.
 */
import type { Presence, PresenceFrame, TypingEvent } from '@warbler/sdk'

/** How long "is typing" stays up after the last notice. */
const TYPING_SHOWN_MS = 4000

export class LiveNotices {
  private readonly typingUntil = new Map<string, Map<string, number>>()
  private readonly presence = new Map<string, { online: boolean, lastSeen: number | null }>()
  private timer: ReturnType<typeof setTimeout> | null = null

  /** `changed` is called whenever what shows changes (a notice came or expired). */
  constructor (private readonly changed: () => void) {}

  typing (e: TypingEvent): void {
    let c = this.typingUntil.get(e.conv)
    if (c === undefined) { c = new Map(); this.typingUntil.set(e.conv, c) }
    c.set(e.user, Date.now() + TYPING_SHOWN_MS)
    this.schedule()
    this.changed()
  }

  /** A message from the user ends its typing notice at once. */
  stopped (conv: string, user: string): void {
    if (this.typingUntil.get(conv)?.delete(user) === true) this.changed()
  }

  /** Users typing in `conv` now, in name order. */
  typists (conv: string): string[] {
    const now = Date.now()
    return [...(this.typingUntil.get(conv) ?? new Map<string, number>()).entries()].filter(([, until]) => until > now).map(([u]) => u).sort()
  }

  private schedule (): void {
    if (this.timer !== null) clearTimeout(this.timer)
    const now = Date.now()
    let next = Infinity
    for (const c of this.typingUntil.values()) {
      for (const [u, until] of c) {
        if (until <= now) c.delete(u)
        else next = Math.min(next, until)
      }
    }
    this.timer = Number.isFinite(next) ? setTimeout(() => { this.timer = null; this.schedule(); this.changed() }, next - now + 10) : null
  }

  seen (p: Presence | PresenceFrame): void {
    this.presence.set(p.user, { online: p.online, lastSeen: p.lastSeen })
    this.changed()
  }

  presenceOf (user: string): { online: boolean, lastSeen: number | null } | undefined { return this.presence.get(user) }

  stop (): void { if (this.timer !== null) clearTimeout(this.timer) }
}
