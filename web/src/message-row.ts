/**
 * One line of the open conversation: a message (with, on one's own, whether
 * it was sent, delivered or read, or who read it in a group), or a group's
 * system event as a line of text. Bodies go in as text only.
 */
import type { MessageFrame } from '@warbler/sdk'
import { bodyText } from './conversations.js'
import { h } from './dom.js'
import type { Receipts } from './receipts.js'
import type { Strings } from './strings.js'
import { systemBody, systemText } from './system-text.js'

export function messageRow (m: MessageFrame, me: string, t: Strings, receipts: Receipts): HTMLElement {
  const sys = systemBody(m)
  if (sys !== null) return h('li', { class: 'system', 'data-seq': String(m.seq) }, systemText(m, sys, t))
  const time = new Date(m.ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
  const mine = m.from === me
  const row = h('li', { class: mine ? 'msg mine' : 'msg', 'data-seq': String(m.seq) },
    h('span', { class: 'from' }, m.from), h('span', { class: 'body' }, bodyText(m)))
  const foot = h('span', { class: 'foot' }, h('time', {}, time))
  if (mine) {
    const mark = receipts.mark(m.conv, m.seq, me)
    const text = mark.kind === 'readBy' ? t.readBy(mark.users.join(', ')) : t[mark.kind]
    foot.append(h('span', { class: `receipt ${mark.kind}`, 'data-receipt': mark.kind }, text))
  }
  row.append(foot)
  return row
}

export function pendingRow (text: string, failed: boolean, t: Strings): HTMLElement {
  return h('li', { class: 'msg mine pending' }, h('span', { class: 'body' }, text),
    h('span', { class: 'foot' }, h('span', { class: 'note' }, failed ? t.notSent : t.sending)))
}
