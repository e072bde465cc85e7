/**
 * Groups: the "new group" form (a name and members) beside the conversation
 * list, and for an open group the members panel: add and remove members,
 * rename, leave. The service checks every right (owner, admin, member); a
 * refusal shows as its message in the panel and changes nothing.
 */
import type { WarblerClient } from '@warbler/sdk'
import { isValidUsername } from '@warbler/sdk/protocol'
import { field, h } from './dom.js'
import type { Strings } from './strings.js'

/** User names from a comma- or space-separated list; null naming the first bad one. */
function users (text: string): { ok: string[] } | { bad: string } {
  const list = text.split(/[\s,，]+/).filter((u) => u !== '')
  const bad = list.find((u) => !isValidUsername(u))
  return bad === undefined ? { ok: [...new Set(list)] } : { bad }
}

const why = (err: unknown): string => err instanceof Error ? err.message : String(err)

export function newGroupForm (client: WarblerClient, t: Strings, created: (conv: string) => void): HTMLElement {
  const name = field('group-name', t.groupName, { autocomplete: 'off', required: '', maxlength: '100' })
  const members = field('group-members', t.groupMembers, { autocomplete: 'off', autocapitalize: 'none' })
  const error = h('p', { class: 'error', role: 'alert' })
  const form = h('form', { class: 'new-group', id: 'new-group-form' }, name.wrap, members.wrap, error, h('button', { type: 'submit' }, t.create))
  const box = h('details', { class: 'new-group-box' }, h('summary', {}, t.newGroup), form)
  form.addEventListener('submit', (ev) => {
    ev.preventDefault()
    const list = users(members.input.value)
    if ('bad' in list) { error.textContent = t.groupFailed(`“${list.bad}”`); return }
    error.textContent = ''
    client.createGroup(name.input.value.trim(), list.ok).then(({ conv }) => {
      name.input.value = ''
      members.input.value = ''
      box.open = false
      created(conv)
    }, (err: unknown) => { error.textContent = t.groupFailed(why(err)) })
  })
  return box
}

export class GroupPanel {
  readonly toggle: HTMLButtonElement
  readonly root = h('section', { class: 'group-panel', id: 'group-panel', hidden: '' })
  private readonly memberList = h('ul', { class: 'members' })
  private readonly error = h('p', { class: 'error', role: 'alert' })
  private readonly renameInput: HTMLInputElement
  /** Adding members and renaming: shown to the owner and admins only. */
  private readonly manageForms: HTMLElement[]
  private conv: string | null = null

  constructor (private readonly client: WarblerClient, private readonly me: string, private readonly t: Strings, private readonly left: (conv: string) => void) {
    this.toggle = h('button', { type: 'button', class: 'members-toggle', id: 'members-toggle', 'aria-expanded': 'false', 'aria-controls': 'group-panel', hidden: '' }, t.members)
    this.toggle.addEventListener('click', () => { this.root.hidden ? void this.show() : this.hide() })
    // The forms are made once: a refresh of the member list (after any change) keeps what is being typed.
    const add = field('add-member', t.addMember, { autocomplete: 'off', autocapitalize: 'none' })
    const addForm = h('form', { class: 'inline' }, add.wrap, h('button', { type: 'submit' }, t.add))
    addForm.addEventListener('submit', (ev) => {
      ev.preventDefault()
      const list = users(add.input.value)
      if ('bad' in list) { this.error.textContent = t.groupFailed(`“${list.bad}”`); return }
      if (list.ok.length > 0) this.act((conv) => this.client.addMembers(conv, list.ok), () => { add.input.value = '' })
    })
    const rename = field('rename-group', t.newName, { autocomplete: 'off', required: '', maxlength: '100' })
    this.renameInput = rename.input
    const renameForm = h('form', { class: 'inline' }, rename.wrap, h('button', { type: 'submit' }, t.rename))
    renameForm.addEventListener('submit', (ev) => {
      ev.preventDefault()
      const name = rename.input.value.trim()
      this.act((conv) => this.client.renameGroup(conv, name), () => {})
    })
    const leave = h('button', { type: 'button', class: 'danger', id: 'leave-group' }, t.leave)
    leave.addEventListener('click', () => {
      const conv = this.conv
      if (conv === null) return
      this.client.leaveGroup(conv).then(() => { this.set(null); this.left(conv) }, (err: unknown) => { this.error.textContent = t.groupFailed(why(err)) })
    })
    this.manageForms = [addForm, renameForm]
    this.root.append(h('h3', {}, t.members), this.memberList, addForm, renameForm, leave, this.error)
  }

  /** The open conversation changed: the toggle shows only for groups. */
  set (conv: string | null): void {
    this.conv = conv
    this.toggle.hidden = conv === null || !conv.startsWith('g:')
    this.renameInput.value = ''
    this.error.textContent = ''
    this.hide()
  }

  /** A system message of the open group: what the panel shows may have changed. */
  changed (): void { if (!this.root.hidden) void this.show() }

  private hide (): void {
    this.root.hidden = true
    this.toggle.setAttribute('aria-expanded', 'false')
  }

  /** A request about the open group; a refusal shows in the panel, success refreshes it. */
  private act (request: (conv: string) => Promise<unknown>, done: () => void): void {
    const conv = this.conv
    if (conv === null) return
    this.error.textContent = ''
    request(conv).then(() => { done(); void this.show() }, (err: unknown) => { this.error.textContent = this.t.groupFailed(why(err)) })
  }

  private async show (): Promise<void> {
    const conv = this.conv
    if (conv === null) return
    this.root.hidden = false
    this.toggle.setAttribute('aria-expanded', 'true')
    let info
    try { info = await this.client.members(conv) } catch (err) { this.error.textContent = this.t.groupFailed(why(err)); return }
    if (this.conv !== conv) return
    // Offer only what the service allows this member (bridge/groups.ts): the
    // owner manages everyone but the owner, an admin plain members; a plain
    // member only leaves.
    const mine = info.members.find((m) => m.user === this.me)?.role
    const manages = mine === 'owner' || mine === 'admin'
    for (const f of this.manageForms) f.hidden = !manages
    const rows = info.members.map((m) => {
      const li = h('li', {}, h('span', { class: 'who' }, m.user), h('span', { class: 'role' }, m.role))
      if (m.user !== this.me && (mine === 'owner' ? m.role !== 'owner' : mine === 'admin' && m.role === 'member')) {
        const rm = h('button', { type: 'button', class: 'small', 'aria-label': this.t.remove(m.user) }, this.t.removeLabel)
        rm.addEventListener('click', () => { this.act((c) => this.client.removeMembers(c, [m.user]), () => {}) })
        li.append(rm)
      }
      return li
    })
    this.memberList.replaceChildren(...rows)
    if (this.renameInput.value === '' && document.activeElement !== this.renameInput) this.renameInput.value = info.name ?? ''
  }
}
