/**
 * The chat screen: the conversation list (by last activity, unread counts,
 * last message), one open conversation whose history pages in as the user
 * scrolls up, and the send box. Sends go through the SDK, whose IndexedDB
 * outbox keeps them across reloads until the server has stored them.
 * On a narrow screen the list and the conversation take turns (`.show-conv`).
 */
import { directConversation, newId, type MessageFrame, type State, type WarblerClient } from '@warbler/sdk'
import { bodyText, Conversations } from './conversations.js'
import { field, h } from './dom.js'
import type { Strings } from './strings.js'

const PAGE = 30

interface Pending { cid: string, conv: string, text: string, failed: boolean }

export class ChatView {
  readonly root: HTMLElement
  private readonly convs: Conversations
  private readonly list = h('ul', { class: 'convs', id: 'convs' })
  private readonly messages = h('ol', { class: 'messages', id: 'messages', 'aria-live': 'polite' })
  private readonly title = h('h2', { class: 'title', id: 'title' })
  private readonly state = h('span', { class: 'state', id: 'state', role: 'status' })
  private readonly sendForm: HTMLFormElement
  private readonly sendInput: HTMLInputElement
  private readonly pending = new Map<string, Pending>()
  private current: string | null = null
  private loading = false

  constructor (private readonly client: WarblerClient, private readonly me: string, private readonly t: Strings, onLogout: () => void) {
    this.convs = new Conversations(me)
    const logout = h('button', { type: 'button', class: 'logout', id: 'logout' }, t.logOut)
    logout.addEventListener('click', onLogout)
    const msg = field('message', t.message, { autocomplete: 'off', maxlength: '4000', disabled: '' })
    this.sendInput = msg.input
    this.sendForm = h('form', { class: 'send', id: 'send-form' }, msg.wrap, h('button', { type: 'submit' }, t.send))
    this.sendForm.addEventListener('submit', (ev) => { ev.preventDefault(); this.send() })
    const back = h('button', { type: 'button', class: 'back', 'aria-label': t.back }, '←')
    back.addEventListener('click', () => { this.root.classList.remove('show-conv') })
    this.messages.addEventListener('scroll', () => { if (this.messages.scrollTop < 40) void this.loadOlder() })
    this.root = h('div', { class: 'app chat' },
      h('header', { class: 'bar' }, h('h1', {}, t.appName), h('span', { class: 'me' }, me), this.state, logout),
      h('div', { class: 'panes' },
        h('aside', { class: 'list' }, h('h2', { class: 'sr-only' }, t.conversations), this.newChatForm(), this.list),
        h('section', { class: 'conv' }, h('div', { class: 'conv-head' }, back, this.title), this.messages, this.sendForm)))
    this.showState(client.state)
  }

  private newChatForm (): HTMLFormElement {
    const who = field('new-chat', this.t.newChat, { autocomplete: 'off', autocapitalize: 'none', required: '', pattern: '[a-z][a-z0-9_.]{0,31}' })
    const form = h('form', { class: 'new-chat', id: 'new-chat-form' }, who.wrap, h('button', { type: 'submit' }, this.t.open))
    form.addEventListener('submit', (ev) => {
      ev.preventDefault()
      const user = who.input.value.trim()
      if (user === '' || user === this.me) return
      who.input.value = ''
      void this.open(directConversation(this.me, user))
    })
    return form
  }

  /** Listen to the client and load the list; call once, right after connect. */
  async start (): Promise<void> {
    this.client.on('state', ({ newState }) => { this.showState(newState) })
    this.client.on('message', (m) => { this.receive(m) })
    this.client.on('status', (s) => {
      const p = this.pending.get(s.cid)
      if (p === undefined) return
      if (s.status === 'sent') {
        this.pending.delete(s.cid)
        // The ack is enough to show it; the copy from the inbox lands on the same seq.
        this.receive({ t: 'msg', id: s.ack.id, conv: s.ack.conv, seq: s.ack.seq, from: this.me, ts: s.ack.ts, cid: s.cid, body: p.text })
      } else if (s.status === 'failed') {
        p.failed = true
        this.renderMessages(false)
      }
    })
    const { conversations } = await this.client.conversations(200)
    this.convs.load(conversations)
    this.renderList()
  }

  private showState (s: State): void {
    this.state.textContent = s === 'connected' ? this.t.connected : s === 'reconnecting' ? this.t.offline : this.t.connecting
    this.state.dataset.state = s
  }

  private receive (m: MessageFrame): void {
    if (m.cid !== undefined) this.pending.delete(m.cid)
    const open = m.conv === this.current
    this.convs.receive(m, open)
    this.renderList()
    if (open) {
      this.renderMessages(this.nearBottom())
      void this.client.markRead(m.conv, m.seq).catch(() => {})
    }
  }

  private nearBottom (): boolean {
    const e = this.messages
    return e.scrollHeight - e.scrollTop - e.clientHeight < 80
  }

  async open (conv: string): Promise<void> {
    this.current = conv
    const c = this.convs.get(conv)
    c.unread = 0
    this.title.textContent = this.convs.title(conv)
    this.sendInput.disabled = false
    this.root.classList.add('show-conv')
    this.renderList()
    this.renderMessages(true)
    if (c.messages.size === 0 && c.lastSeq > 0) await this.loadOlder()
    if (c.lastSeq > 0) await this.client.markRead(conv, c.lastSeq).catch(() => {})
    this.sendInput.focus()
  }

  /** The page before the first loaded message, kept in place on the screen. */
  private async loadOlder (): Promise<void> {
    const conv = this.current
    if (conv === null || this.loading) return
    const c = this.convs.get(conv)
    if (!c.more) return
    this.loading = true
    try {
      const first = Math.min(...c.messages.keys())
      const page = await this.client.history(conv, { limit: PAGE, ...(Number.isFinite(first) ? { before: first } : {}) })
      const fromBottom = this.messages.scrollHeight - this.messages.scrollTop
      this.convs.page(conv, page.messages, page.more)
      if (this.current !== conv) return
      this.renderMessages(false)
      this.messages.scrollTop = this.messages.scrollHeight - fromBottom
    } finally {
      this.loading = false
    }
    // A first page that does not fill the screen cannot be scrolled up: fetch the next at once.
    if (c.more && this.current === conv && this.messages.scrollHeight <= this.messages.clientHeight) await this.loadOlder()
  }

  private send (): void {
    const conv = this.current
    const text = this.sendInput.value.trim()
    if (conv === null || text === '') return
    this.sendInput.value = ''
    const cid = newId('w')
    this.pending.set(cid, { cid, conv, text, failed: false })
    this.renderMessages(true)
    const other = conv.startsWith('d:') ? this.convs.title(conv) : null
    // Failures come as a 'failed' status too; a send kept in the outbox goes out on the next connect.
    this.client.send(other !== null ? { to: other } : { conv }, text, { cid }).catch(() => {})
  }

  private renderList (): void {
    const items = this.convs.sorted().map((c) => {
      const name = h('span', { class: 'name' }, this.convs.title(c.conv))
      const last = h('span', { class: 'last' }, c.last === null ? '' : `${c.last.from === this.me ? this.t.you : c.last.from}: ${bodyText(c.last)}`)
      const button = h('button', { type: 'button', class: 'conv-item', 'data-conv': c.conv }, name, last)
      if (c.unread > 0) button.append(h('span', { class: 'unread', 'aria-label': this.t.unread(c.unread) }, String(c.unread)))
      if (c.conv === this.current) button.setAttribute('aria-current', 'true')
      button.addEventListener('click', () => { void this.open(c.conv) })
      return h('li', {}, button)
    })
    this.list.replaceChildren(...(items.length > 0 ? items : [h('li', { class: 'empty' }, this.t.noConversations)]))
  }

  private renderMessages (toBottom: boolean): void {
    const conv = this.current
    if (conv === null) return
    const c = this.convs.get(conv)
    const rows: HTMLElement[] = []
    if (!c.more || c.lastSeq === 0) rows.push(h('li', { class: 'edge' }, this.t.beginning))
    for (const m of [...c.messages.values()].sort((a, b) => a.seq - b.seq)) {
      const time = new Date(m.ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
      rows.push(h('li', { class: m.from === this.me ? 'msg mine' : 'msg', 'data-seq': String(m.seq) },
        h('span', { class: 'from' }, m.from), h('span', { class: 'body' }, bodyText(m)), h('time', {}, time)))
    }
    for (const p of this.pending.values()) {
      if (p.conv !== conv) continue
      rows.push(h('li', { class: 'msg mine pending' }, h('span', { class: 'body' }, p.text), h('span', { class: 'note' }, p.failed ? this.t.notSent : this.t.sending)))
    }
    this.messages.replaceChildren(...rows)
    if (toBottom) this.messages.scrollTop = this.messages.scrollHeight
  }
}
