/**
 * The line a group's system message shows ({sys: created|renamed|added|
 * removed|left|role}, bridge/groups.ts). Every name in it comes from users:
 * it is returned as a string for textContent, never as markup.
 */
import type { MessageFrame } from '@warbler/sdk'
import type { Strings } from './strings.js'

/** A system message's body, or null when the message is a user's. */
export function systemBody (m: MessageFrame): Record<string, unknown> | null {
  const b = m.body
  if (typeof b !== 'object' || b === null || Array.isArray(b)) return null
  return typeof (b as { sys?: unknown }).sys === 'string' ? b as Record<string, unknown> : null
}

const str = (v: unknown): string => typeof v === 'string' ? v : ''
const list = (v: unknown): string => Array.isArray(v) ? v.filter((u) => typeof u === 'string').join(', ') : ''

export function systemText (m: MessageFrame, body: Record<string, unknown>, t: Strings): string {
  const who = m.from
  switch (body.sys) {
    case 'created': return t.sysCreated(who, str(body.name), list((body.members as unknown[] | undefined)?.filter((u) => u !== who)))
    case 'renamed': return t.sysRenamed(who, str(body.name))
    case 'added': return t.sysAdded(who, list(body.users))
    case 'removed': return t.sysRemoved(who, list(body.users))
    case 'left': return t.sysLeft(str(body.user) !== '' ? str(body.user) : who)
    case 'role': return t.sysRole(who, str(body.user), str(body.role))
    default: return t.sysOther
  }
}
