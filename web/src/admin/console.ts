/**
 * The admin console at /admin: log in as in the chat app (the password
 * once, then a refresh token), and only for an admin build the console:
 * live figures from $SYS over MQTT-over-WebSocket, users, device tokens,
 * groups and the node. Everything it shows comes from the admin API after
 * the login (the page itself holds no admin data) and goes in as text.
 * A user who is not an admin gets a page saying so and nothing else; the
 * admin API refuses such a user anyway (403).
 */
import { field, h } from '../dom.js'
import { type Grant, logIn, logOut, refresh, SessionError } from '../session.js'
import { AdminApi, ApiError } from './api-client.js'
import { pickConsoleStrings } from './console-strings.js'
import { FiguresPanel } from './figures.js'
import { GroupsPanel } from './groups-panel.js'
import { NodePanel } from './node-panel.js'
import { TokensPanel } from './tokens-panel.js'
import { UsersPanel } from './users-panel.js'
import { SysFeed } from './sys-feed.js'

const { lang, t } = pickConsoleStrings(navigator.language)
document.documentElement.lang = lang
document.title = t.title

/** The node's MQTT-over-WebSocket URL on this page's host (the server names the ports in a meta tag). */
function socketUrl (): string {
  const content = document.querySelector('meta[name="warbler-ws"]')?.getAttribute('content') ?? ''
  const ports = new Map(content.split(' ').filter((p) => p !== '').map((p) => p.split(':') as [string, string]))
  const secure = location.protocol === 'https:' && ports.has('wss')
  return `${secure ? 'wss' : 'ws'}://${location.hostname}:${ports.get(secure ? 'wss' : 'ws') ?? '8083'}/mqtt`
}

function loginError (err: unknown): string {
  if (err instanceof SessionError && err.code === 'not_authorized') return t.badLogin
  if (err instanceof SessionError && err.code === 'rate_limited') return t.tooMany
  return `${t.loginFailed}: ${err instanceof Error ? err.message : String(err)}`
}

function showLogin (message = ''): void {
  const user = field('user', t.user, { autocomplete: 'username', autocapitalize: 'none', required: '' })
  const password = field('password', t.password, { type: 'password', autocomplete: 'current-password', required: '' })
  const error = h('p', { class: 'error', id: 'login-error', role: 'alert' }, message)
  const submit = h('button', { type: 'submit' }, t.logIn)
  const form = h('form', { class: 'login', id: 'login' }, h('h1', {}, t.title), h('h2', {}, t.loginTitle), user.wrap, password.wrap, submit, error)
  form.addEventListener('submit', (ev) => {
    ev.preventDefault()
    const secret = password.input.value
    password.input.value = '' // not kept in the page once sent
    submit.disabled = true
    error.textContent = t.loggingIn
    logIn(user.input.value.trim(), secret).then(start).catch((err: unknown) => {
      submit.disabled = false
      error.textContent = loginError(err)
    })
  })
  document.body.replaceChildren(form)
  user.input.focus()
}

async function end (): Promise<void> {
  feed?.stop()
  feed = null
  await logOut()
  showLogin()
}

function showNotAdmin (user: string): void {
  feed?.stop()
  feed = null
  const out = h('button', { type: 'button', id: 'logout' }, t.logOut)
  out.addEventListener('click', () => { void end() })
  document.body.replaceChildren(h('main', { class: 'not-admin', id: 'not-admin' },
    h('h1', {}, t.notAdmin), h('p', {}, t.notAdminText(user)), h('p', {}, h('a', { href: '/' }, t.toChat)), out))
  out.focus()
}

let feed: SysFeed | null = null

/** The section nav: one section shown at a time, chosen with buttons (keyboard: Tab, Enter). */
function layout (user: string, sections: Array<{ id: keyof typeof t.sections, el: HTMLElement }>): HTMLElement {
  const out = h('button', { type: 'button', class: 'logout', id: 'logout' }, t.logOut)
  out.addEventListener('click', () => { void end() })
  const nav = h('nav', { 'aria-label': t.title })
  const choose = (id: string): void => {
    for (const s of sections) s.el.hidden = s.id !== id
    for (const b of nav.querySelectorAll('button')) b.setAttribute('aria-current', String(b.dataset.section === id))
  }
  for (const s of sections) {
    const b = h('button', { type: 'button', 'data-section': s.id, id: `nav-${s.id}` }, t.sections[s.id])
    b.addEventListener('click', () => { choose(s.id); s.el.querySelector<HTMLElement>('h2')?.focus() })
    nav.append(b)
  }
  for (const s of sections) s.el.querySelector('h2')?.setAttribute('tabindex', '-1')
  choose(sections[0]?.id ?? 'figures')
  return h('div', { class: 'console' }, h('header', { class: 'bar' }, h('h1', {}, t.title), h('span', { class: 'who', id: 'who' }, user), out), nav,
    h('main', {}, ...sections.map((s) => s.el)))
}

async function start (grant: Grant): Promise<void> {
  // The login's answer says whether the user is an admin (broker/web-session.ts).
  if ((grant as Grant & { admin?: boolean }).admin !== true) { showNotAdmin(grant.user); return }
  let current = grant
  const api = new AdminApi(grant, (g) => { current = g })
  const users = new UsersPanel(api, t, lang)
  const tokens = new TokensPanel(api, t, lang)
  const groups = new GroupsPanel(api, t, lang)
  const node = new NodePanel(api, t, lang)
  const figures = new FiguresPanel(t)
  users.onUsers = (names) => { tokens.setUsers(names) }
  try {
    await users.load()
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) { showNotAdmin(grant.user); return }
    throw err
  }
  document.body.replaceChildren(layout(grant.user, [
    { id: 'figures', el: figures.root }, { id: 'users', el: users.root }, { id: 'tokens', el: tokens.root },
    { id: 'groups', el: groups.root }, { id: 'node', el: node.root }
  ]))
  await Promise.all([tokens.load(), groups.load(), node.load()])
  figures.start()
  feed = new SysFeed({
    url: socketUrl(),
    user: grant.user,
    // A fresh access token for each (re)connect: the one of the login lasts 15 minutes.
    token: async () => current.accessExpiresAt - Date.now() > 60_000 ? current.accessToken : (current = (await refresh()) ?? current).accessToken,
    filter: '$SYS/broker/#',
    onValue: (topic, value) => { figures.onValue(topic, value) },
    onState: (s, detail) => { figures.setState(s, detail) }
  })
  await feed.start()
}

async function boot (): Promise<void> {
  let grant: Grant | null = null
  try {
    grant = await refresh()
  } catch (err) {
    showLogin(err instanceof SessionError && err.code === 'not_authorized' ? t.sessionOver : loginError(err))
    return
  }
  if (grant === null) { showLogin(); return }
  await start(grant).catch((err: unknown) => { showLogin(loginError(err)) })
}

void boot()
