/** Users: the list, and add, disable or enable, reset password, make or unmake admin, remove (admin API /users). */
import { field, h } from '../dom.js'
import type { AdminApi, UserRow } from './api-client.js'
import type { ConsoleStrings } from './console-strings.js'
import { button, StatusLine, table, when } from './ui.js'

export class UsersPanel {
  readonly root: HTMLElement
  private readonly list = h('div', { class: 'list' })
  private readonly status = new StatusLine('users-status')
  /** Tells the tokens panel which users there are. */
  onUsers: (names: string[]) => void = () => {}

  constructor (private readonly api: AdminApi, private readonly t: ConsoleStrings, private readonly lang: string) {
    const name = field('new-user', t.name, { autocomplete: 'off', autocapitalize: 'none', required: '' })
    const password = field('new-password', t.passwordOptional, { type: 'password', autocomplete: 'new-password' })
    const admin = h('input', { type: 'checkbox', id: 'new-admin' })
    const form = h('form', { class: 'inline', id: 'add-user' }, name.wrap, password.wrap,
      h('label', { class: 'check', for: 'new-admin' }, admin, t.asAdmin), h('button', { type: 'submit' }, t.addUser))
    form.addEventListener('submit', (ev) => {
      ev.preventDefault()
      const user = name.input.value.trim()
      const body = { name: user, admin: admin.checked, ...(password.input.value !== '' ? { password: password.input.value } : {}) }
      password.input.value = ''
      this.api.call<{ password?: string }>('POST', 'users', body).then(async (r) => {
        this.status.ok(r.password !== undefined ? t.generated(user, r.password) : t.added(user))
        name.input.value = ''
        admin.checked = false
        await this.load()
      }).catch((err: unknown) => { this.status.fail(err, t.addUser) })
    })
    this.root = h('section', { id: 'users', 'aria-labelledby': 'users-h' }, h('h2', { id: 'users-h' }, t.sections.users), form, this.status.el, this.list)
  }

  async load (): Promise<void> {
    const { users } = await this.api.get<{ users: UserRow[] }>('users')
    this.onUsers(users.map((u) => u.name))
    const t = this.t
    this.list.replaceChildren(table('users-table', [t.name, t.role, t.created, t.actions], users.map((u) => [
      u.name,
      `${u.admin ? t.admin : u.service ? t.service : t.plainUser}${u.disabled ? ` (${t.disabled})` : ''}`,
      when(u.createdAt, this.lang),
      this.actions(u)
    ]), ''))
  }

  private actions (u: UserRow): HTMLElement {
    const t = this.t
    const act = (label: string, run: () => Promise<string>): HTMLButtonElement => button(label, () => {
      run().then(async (msg) => { this.status.ok(msg); await this.load() }).catch((err: unknown) => { this.status.fail(err, label) })
    }, { 'data-user': u.name })
    const admin = act(u.admin ? t.unmakeAdmin : t.makeAdmin, async () => {
      await this.api.call('PUT', `users/${encodeURIComponent(u.name)}/admin`, { admin: !u.admin })
      return u.admin ? t.adminOff(u.name) : t.adminOn(u.name)
    })
    const disable = act(u.disabled ? t.enable : t.disable, async () => {
      await this.api.call('PUT', `users/${encodeURIComponent(u.name)}/disabled`, { disabled: !u.disabled })
      return u.disabled ? t.enabledOne(u.name) : t.disabledOne(u.name)
    })
    const reset = act(t.resetPassword, async () => {
      const r = await this.api.call<{ password: string }>('POST', `users/${encodeURIComponent(u.name)}/password`, {})
      return t.newPassword(u.name, r.password)
    })
    // Removing asks twice, on the same button: no dialog, and the keyboard stays where it was.
    const remove = button(t.remove, (b) => {
      if (b.dataset.armed !== 'yes') { b.dataset.armed = 'yes'; b.textContent = t.confirmRemove(u.name); return }
      this.api.call('DELETE', `users/${encodeURIComponent(u.name)}`).then(async () => { this.status.ok(t.removed(u.name)); await this.load() })
        .catch((err: unknown) => { this.status.fail(err, t.remove) })
    }, { class: 'danger', 'data-user': u.name })
    admin.classList.add('toggle-admin')
    disable.classList.add('toggle-disabled')
    reset.classList.add('reset')
    return h('div', { class: 'actions' }, admin, disable, reset, remove)
  }
}
