/**
 * The chat screen: the conversation list (by last activity, unread counts,
 * last message) with search and the new-group form, one open conversation
 * whose history pages in as the user scrolls up, and the send box. Sends go
 * through the SDK, whose IndexedDB outbox keeps them across reloads and lost
 * links until the server has stored them. Around the messages: receipts,
 * typing notices, presence, a group's members panel, notifications while the
 * page is hidden, and a live region that reads new messages out.
 * On a narrow screen the list and the conversation take turns (`.show-conv`).
 */
import { directConversation, newId, type MessageFrame, type State, type WarblerClient } from '@warbler/sdk'
import { bodyText, Conversations } from './conversations.js'
import { field, h } from './dom.js'
import { GroupPanel, newGroupForm } from './group-panel.js'
import { LiveNotices } from './live-notices.js'
import { messageRow, pendingRow } from './message-row.js'
import { Notifier } from './notify.js'
import { Receipts } from './receipts.js'
import { SearchPanel } from './search-panel.js'
import type { Strings } from './strings.js'
import { systemBody, systemText } from './system-text.js'

const PAGE = 30
/** At most one typing notice per this many ms (the service counts one a second). */
const TYPING_EVERY_MS = 2000

interface Pending { cid: string, conv: string, text: string, failed: boolean }

export class ChatView {
  readonly root: HTMLElement
  private readonly convs: Conversations
  private readonly receipts = new Receipts()
  private readonly notices: LiveNotices
  private readonly groups: GroupPanel
  private readonly notifier: Notifier
  private readonly list = h('ul', { class: 'convs', id: 'convs' })
  private readonly messages = h('ol', { class: 'messages', id: 'messages', tabindex: '0' })
  private readonly announce = h('div', { class: 'sr-only', id: 'announce', 'aria-live': 'polite' })
  private readonly typingLine = h('p', { class: 'typing', id: 'typing', 'aria-live': 'polite' })
  private readonly presence = h('span', { class: 'presence', id: 'presence' })
  private readonly title = h('h2', { class: 'title', id: 'title' })
  private readonly state = h('span', { class: 'state', id: 'state', role: 'status' })
  private readonly sendInput: HTMLInputElement
  private readonly pending = new Map<string, Pending>()
  private readonly toMarkDelivered = new Map<string, number>()
  private current: string | null = null
  private loading = false
  private lastTyping = 0

  constructor (private readonly client: WarblerClient, private readonly me: string, private readonly t: Strings, onLogout: () => void) {
    this.convs = new Conversations(me)
    this.notices = new LiveNotices(() => { this.showNotices() })
    this.groups = new GroupPanel(client, me, t, (conv) => { this.convs.byId.delete(conv); this.close() })
    this.notifier = new Notifier(t, (conv) => { void this.open(conv) })
    const logout = h('button', { type: 'button', class: 'logout', id: 'logout' }, t.logOut)
    logout.addEventListener('click', onLogout)
    const msg = field('message', t.message, { autocomplete: 'off', maxlength: '4000', disabled: '' })
    this.sendInput = msg.input
    this.sendInput.addEventListener('input', () => { this.typed() })
    const sendForm = h('form', { class: 'send', id: 'send-form' }, msg.wrap, h('button', { type: 'submit' }, t.send))
    sendForm.addEventListener('submit', (ev) => { ev.preventDefault(); this.send() })
    const back = h('button', { type: 'button', class: 'back', 'aria-label': t.back }, '←')
    back.addEventListener('click', () => { this.root.classList.remove('show-conv') })
    this.messages.addEventListener('scroll', () => { if (this.messages.scrollTop < 40) void this.loadOlder() })
    const search = new SearchPanel(client, t, (conv) => this.convs.title(conv), (conv, seq) => { void this.openAt(conv, seq) })
    this.root = h('div', { class: 'app chat' },
      h('header', { class: 'bar' }, h('h1', {}, t.appName), h('span', { class: 'me' }, me), this.state, this.notifier.button, logout),
      h('div', { class: 'panes' },
        h('aside', { class: 'list' }, h('h2', { class: 'sr-only' }, t.conversations), search.root, this.newChatForm(),
          newGroupForm(client, t, (conv) => { void this.open(conv) }), this.list),
        h('section', { class: 'conv' }, h('div', { class: 'conv-head' }, back, h('div', { class: 'who' }, this.title, this.presence), this.groups.toggle),
          this.groups.root, this.messages, this.typingLine, sendForm)),
      this.announce)
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
    // The browser knows a lost network before MQTT's keepalive does.
    window.addEventListener('offline', () => { this.showState(this.client.state) })
    window.addEventListener('online', () => { this.showState(this.client.state) })
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
    this.client.on('receipt', (r) => { this.receipts.update(r); if (r.conv === this.current) this.renderMessages(false) })
    this.client.on('typing', (e) => { if (e.user !== this.me) this.notices.typing(e) })
    this.client.on('presence', (p) => { this.notices.seen(p) })
    const { conversations } = await this.client.conversations(200)
    this.convs.load(conversations)
    for (const c of conversations) if (c.lastSeq > c.deliveredSeq) this.delivered(c.conv, c.lastSeq)
    this.renderList()
  }

  private showState (s: State): void {
    const down = !navigator.onLine || s === 'reconnecting'
    this.state.textContent = down ? this.t.offline : s === 'connected' ? this.t.connected : this.t.connecting
    this.state.dataset.state = down && s === 'connected' ? 'offline' : s
  }

  private receive (m: MessageFrame): void {
    if (m.cid !== undefined) this.pending.delete(m.cid)
    const open = m.conv === this.current
    const fresh = m.seq > this.convs.get(m.conv).lastSeq
    this.convs.receive(m, open)
    const sys = systemBody(m)
    if (sys !== null && typeof sys.name === 'string') this.convs.get(m.conv).name = sys.name
    this.notices.stopped(m.conv, m.from)
    this.renderList()
    if (fresh && m.from !== this.me) {
      const text = sys === null ? bodyText(m) : ''
      this.announce.textContent = this.t.newMessageFrom(m.from, text.slice(0, 500))
      this.notifier.message(m.conv, `${this.t.newMessages}: ${this.convs.title(m.conv)}`, this.t.newMessageFrom(m.from, text))
    }
    if (open) {
      if (this.current?.startsWith('g:') === true && sys !== null) {
        this.title.textContent = this.convs.title(m.conv)
        this.groups.changed()
      }
      this.renderMessages(this.nearBottom())
      if (document.visibilityState === 'visible') void this.client.markRead(m.conv, m.seq).catch(() => {})
      else this.delivered(m.conv, m.seq)
    } else if (m.from !== this.me) {
      this.delivered(m.conv, m.seq)
    }
  }

  /** Tell the sender it arrived; several messages in a row cost one request. */
  private delivered (conv: string, seq: number): void {
    const before = this.toMarkDelivered.get(conv)
    this.toMarkDelivered.set(conv, Math.max(before ?? 0, seq))
    if (before !== undefined) return
    setTimeout(() => {
      const upTo = this.toMarkDelivered.get(conv) ?? seq
      this.toMarkDelivered.delete(conv)
      void this.client.markDelivered(conv, upTo).catch(() => {})
    }, 200)
  }

  private nearBottom (): boolean {
    const e = this.messages
    return e.scrollHeight - e.scrollTop - e.clientHeight < 80
  }

  private close (): void {
    this.current = null
    this.title.textContent = ''
    this.presence.textContent = ''
    this.messages.replaceChildren()
    this.sendInput.disabled = true
    this.root.classList.remove('show-conv')
    this.renderList()
  }

  async open (conv: string): Promise<void> {
    this.current = conv
    const c = this.convs.get(conv)
    c.unread = 0
    this.title.textContent = this.convs.title(conv)
    this.groups.set(conv)
    this.sendInput.disabled = false
    this.root.classList.add('show-conv')
    this.renderList()
    this.showNotices()
    this.renderMessages(true)
    this.sendInput.focus()
    const other = conv.startsWith('d:') ? this.convs.title(conv) : null
    if (other !== null) this.client.presence([other]).then(({ users }) => { for (const p of users) this.notices.seen(p) }, () => {})
    this.client.receipts(conv).then(({ members }) => { this.receipts.load(conv, members); if (this.current === conv) this.renderMessages(false) }, () => {})
    if (c.messages.size === 0 && c.lastSeq > 0) await this.loadOlder()
    if (c.lastSeq > 0) await this.client.markRead(conv, c.lastSeq).catch(() => {})
  }

  /** Open a conversation at one message (a search result): older pages load until it is there. */
  async openAt (conv: string, seq: number): Promise<void> {
    await this.open(conv)
    const c = this.convs.get(conv)
    while (!c.messages.has(seq) && c.more && this.current === conv) {
      const before = c.messages.size
      await this.loadOlder()
      if (c.messages.size === before) break
    }
    const row = this.messages.querySelector<HTMLElement>(`li[data-seq="${seq}"]`)
    if (row === null) return
    row.classList.add('found')
    row.tabIndex = -1
    row.scrollIntoView({ block: 'center' })
    row.focus()
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

  private typed (): void {
    const now = Date.now()
    if (this.current === null || now - this.lastTyping < TYPING_EVERY_MS) return
    this.lastTyping = now
    void this.client.typing(this.current)
  }

  private send (): void {
    const conv = this.current
    const text = this.sendInput.value.trim()
    if (conv === null || text === '') return
    this.sendInput.value = ''
    this.lastTyping = 0
    const cid = newId('w')
    this.pending.set(cid, { cid, conv, text, failed: false })
    this.renderMessages(true)
    const other = conv.startsWith('d:') ? this.convs.title(conv) : null
    // Failures come as a 'failed' status too; a send kept in the outbox goes out on the next connect.
    this.client.send(other !== null ? { to: other } : { conv }, text, { cid }).catch(() => {})
  }

  /** The typing line and, for a direct chat, the other's presence. */
  private showNotices (): void {
    const conv = this.current
    if (conv === null) return
    const typists = this.notices.typists(conv)
    this.typingLine.textContent = typists.length === 0 ? '' : typists.length === 1 ? this.t.typing(typists[0] as string) : this.t.typingMany(typists.join(', '))
    const p = conv.startsWith('d:') ? this.notices.presenceOf(this.convs.title(conv)) : undefined
    this.presence.dataset.online = String(p?.online === true)
    this.presence.textContent = p === undefined ? '' : p.online ? this.t.online : p.lastSeen === null ? this.t.neverSeen : this.t.lastSeen(new Date(p.lastSeen).toLocaleString([], { dateStyle: 'short', timeStyle: 'short' }))
  }

  private renderList (): void {
    const items = this.convs.sorted().map((c) => {
      const name = h('span', { class: 'name' }, this.convs.title(c.conv))
      const sys = c.last === null ? null : systemBody(c.last)
      const lastText = c.last === null ? '' : sys !== null ? systemText(c.last, sys, this.t) : `${c.last.from === this.me ? this.t.you : c.last.from}: ${bodyText(c.last).slice(0, 200)}`
      const button = h('button', { type: 'button', class: 'conv-item', 'data-conv': c.conv }, name, h('span', { class: 'last' }, lastText))
      if (c.unread > 0) button.append(h('span', { class: 'unread', 'aria-label': this.t.unread(c.unread) }, String(c.unread)))
      if (c.conv === this.current) button.setAttribute('aria-current', 'true')
      button.addEventListener('click', () => { void this.open(c.conv) })
      return h('li', {}, button)
    })
    // The list is rebuilt: a keyboard user's focus stays on the same conversation.
    const had = document.activeElement instanceof HTMLElement && this.list.contains(document.activeElement) ? document.activeElement.dataset.conv : undefined
    this.list.replaceChildren(...(items.length > 0 ? items : [h('li', { class: 'empty' }, this.t.noConversations)]))
    if (had !== undefined) this.list.querySelector<HTMLElement>(`[data-conv="${CSS.escape(had)}"]`)?.focus()
  }

  private renderMessages (toBottom: boolean): void {
    const conv = this.current
    if (conv === null) return
    const c = this.convs.get(conv)
    const rows: HTMLElement[] = []
    if (!c.more || c.lastSeq === 0) rows.push(h('li', { class: 'edge' }, this.t.beginning))
    for (const m of [...c.messages.values()].sort((a, b) => a.seq - b.seq)) rows.push(messageRow(m, this.me, this.t, this.receipts))
    for (const p of this.pending.values()) if (p.conv === conv) rows.push(pendingRow(p.text, p.failed, this.t))
    this.messages.replaceChildren(...rows)
    if (toBottom) this.messages.scrollTop = this.messages.scrollHeight
  }
}
