/** Pieces every panel of the console uses: tables, a status line, buttons. */
import { h } from '../dom.js'
import { ApiError } from './api-client.js'

export function table (id: string, heads: string[], rows: Array<Array<Node | string>>, empty: string): HTMLElement {
  if (rows.length === 0) return h('p', { class: 'empty', id }, empty)
  return h('table', { id },
    h('thead', {}, h('tr', {}, ...heads.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c) => h('td', {}, c))))))
}

export function button (label: string, onClick: (b: HTMLButtonElement) => void, attrs: Record<string, string> = {}): HTMLButtonElement {
  const b = h('button', { type: 'button', ...attrs }, label)
  b.addEventListener('click', () => { onClick(b) })
  return b
}

export function when (ms: number, lang: string): string {
  return new Date(ms).toLocaleString(lang)
}

/** A panel's status line: what the last action did, or why it failed (the server's message names the field). */
export class StatusLine {
  readonly el: HTMLElement
  constructor (id: string) {
    this.el = h('p', { class: 'status', id, role: 'status', 'aria-live': 'polite' })
  }

  ok (text: string): void {
    this.el.className = 'status ok'
    this.el.textContent = text
  }

  fail (err: unknown, prefix: string): void {
    this.el.className = 'status error'
    this.el.textContent = `${prefix}: ${err instanceof ApiError ? `${err.message} (${err.code})` : err instanceof Error ? err.message : String(err)}`
  }
}
