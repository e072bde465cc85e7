/**
 * Searching one's messages (the service's `search` request): a box above the
 * conversation list and the results under it, each naming its conversation
 * with the matching text; picking one opens the conversation at that message.
 */
import type { MessageFrame, WarblerClient } from '@warbler/sdk'
import { bodyText } from './conversations.js'
import { field, h } from './dom.js'
import type { Strings } from './strings.js'

export class SearchPanel {
  readonly root: HTMLElement
  private readonly results = h('ul', { class: 'results', id: 'search-results', hidden: '' })
  private readonly input: HTMLInputElement

  constructor (private readonly client: WarblerClient, private readonly t: Strings,
    private readonly title: (conv: string) => string, private readonly pick: (conv: string, seq: number) => void) {
    const q = field('search', t.search, { type: 'search', autocomplete: 'off', maxlength: '200' })
    this.input = q.input
    const form = h('form', { class: 'search', id: 'search-form', role: 'search' }, q.wrap, h('button', { type: 'submit' }, t.searchButton))
    form.addEventListener('submit', (ev) => { ev.preventDefault(); void this.run() })
    this.root = h('div', { class: 'search-box' }, form, this.results)
  }

  private async run (): Promise<void> {
    const q = this.input.value.trim()
    if (q === '') { this.close(); return }
    let found: MessageFrame[]
    try {
      found = (await this.client.search(q, { limit: 30 })).messages
    } catch (err) {
      this.show([h('li', { class: 'empty', role: 'alert' }, this.t.groupFailed(err instanceof Error ? err.message : String(err)))])
      return
    }
    const close = h('button', { type: 'button', class: 'link', id: 'search-close' }, this.t.closeResults)
    close.addEventListener('click', () => { this.close(); this.input.focus() })
    const items = found.map((m) => {
      const b = h('button', { type: 'button', class: 'result', 'data-conv': m.conv, 'data-seq': String(m.seq) },
        h('span', { class: 'name' }, this.title(m.conv)), h('span', { class: 'last' }, `${m.from}: ${bodyText(m).slice(0, 300)}`))
      b.addEventListener('click', () => { this.close(); this.pick(m.conv, m.seq) })
      return h('li', {}, b)
    })
    this.show([h('li', { class: 'results-head' }, h('h2', {}, this.t.searchResults), close),
      ...(items.length > 0 ? items : [h('li', { class: 'empty' }, this.t.noResults)])])
  }

  private show (rows: HTMLElement[]): void {
    this.results.replaceChildren(...rows)
    this.results.hidden = false
  }

  private close (): void {
    this.results.hidden = true
    this.results.replaceChildren()
  }
}
