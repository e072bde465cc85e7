/**
 * The web app: log in (or resume with the kept refresh token), then connect
 * the SDK over MQTT-over-WebSocket with the access token and show the chat.
 * The WebSocket port comes from `<meta name="warbler-ws">`, which the server
 * fills in (server/web-app.ts).
 */
import { IndexedDbOutbox } from '@warbler/sdk/idb-outbox'
import { Warbler, type WarblerClient } from '@warbler/sdk'
import { ChatView } from './chat-view.js'
import { field, h } from './dom.js'
import { type Grant, logIn, logOut, refresh, SessionError } from './session.js'
import { pickStrings } from './strings.js'

const { lang, t } = pickStrings(navigator.language)
document.documentElement.lang = lang
document.title = t.appName

/** ws://host:port/mqtt on the page's own host, wss:// when the page came over https. */
function socketUrl (): string {
  const content = document.querySelector('meta[name="warbler-ws"]')?.getAttribute('content') ?? ''
  const ports = new Map(content.split(' ').filter((p) => p !== '').map((p) => p.split(':') as [string, string]))
  const secure = location.protocol === 'https:'
  const port = ports.get(secure ? 'wss' : 'ws') ?? ports.get('ws') ?? '8083'
  return `${secure && ports.has('wss') ? 'wss' : 'ws'}://${location.hostname}:${port}/mqtt`
}

/** One device name per tab (kept across reloads of it): two tabs with one client id would push each other out. */
function deviceName (): string {
  const d = sessionStorage.getItem('warbler.device') ?? `web-${Math.random().toString(36).slice(2, 8)}`
  sessionStorage.setItem('warbler.device', d)
  return d
}

function errorText (err: unknown): string {
  if (err instanceof SessionError) {
    if (err.code === 'not_authorized') return t.badLogin
    if (err.code === 'rate_limited') return t.tooMany
    if (err.code === 'unavailable') return t.busy
  }
  return `${t.loginFailed}: ${err instanceof Error ? err.message : String(err)}`
}

function showLogin (message = ''): void {
  const user = field('user', t.user, { autocomplete: 'username', autocapitalize: 'none', required: '' })
  const password = field('password', t.password, { type: 'password', autocomplete: 'current-password', required: '' })
  const error = h('p', { class: 'error', id: 'login-error', role: 'alert' }, message)
  const button = h('button', { type: 'submit' }, t.logIn)
  const form = h('form', { class: 'login', id: 'login' }, h('h1', {}, t.appName), h('h2', {}, t.loginTitle), user.wrap, password.wrap, button, error)
  form.addEventListener('submit', (ev) => {
    ev.preventDefault()
    const secret = password.input.value
    password.input.value = '' // not kept in the page once sent
    button.disabled = true
    error.textContent = t.loggingIn
    logIn(user.input.value.trim(), secret).then(startChat).catch((err: unknown) => {
      button.disabled = false
      error.textContent = errorText(err)
    })
  })
  document.body.replaceChildren(form)
  user.input.focus()
}

let client: WarblerClient | null = null

async function startChat (grant: Grant): Promise<void> {
  const device = deviceName()
  client = await Warbler.connect({
    url: socketUrl(),
    username: grant.user,
    token: grant.accessToken,
    // Before a reconnect near the token's end, or after a refusal: a fresh one.
    refreshToken: async () => {
      const g = await refresh()
      if (g === null) throw new Error(t.sessionOver)
      return g.accessToken
    },
    device,
    outbox: new IndexedDbOutbox(`warbler-outbox-${grant.user}-${device}`),
    startAt: 'now'
  })
  const view = new ChatView(client, grant.user, t, () => { void end() })
  document.body.replaceChildren(view.root)
  await view.start()
}

async function end (): Promise<void> {
  await client?.close()
  client = null
  await logOut()
  showLogin()
}

async function boot (): Promise<void> {
  let grant: Grant | null = null
  try {
    grant = await refresh()
  } catch (err) {
    showLogin(err instanceof SessionError && err.code === 'not_authorized' ? t.sessionOver : errorText(err))
    return
  }
  if (grant === null) { showLogin(); return }
  await startChat(grant).catch((err: unknown) => { showLogin(errorText(err)) })
}

void boot()
