/**
 * Building the page. Text goes in only as text (textContent), never as
 * HTML: every name and message body comes from other users.
 */
type Attrs = Record<string, string>

/** An element with attributes and children; strings become text nodes. */
export function h<K extends keyof HTMLElementTagNameMap> (tag: K, attrs: Attrs = {}, ...children: Array<Node | string>): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v)
  for (const c of children) e.append(typeof c === 'string' ? document.createTextNode(c) : c)
  return e
}

/** A labelled input: the label names it for screen readers and taps. */
export function field (id: string, label: string, attrs: Attrs): { wrap: HTMLElement, input: HTMLInputElement } {
  const input = h('input', { id, name: id, ...attrs })
  return { wrap: h('div', { class: 'field' }, h('label', { for: id }, label), input), input }
}
