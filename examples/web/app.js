// The web chat example: the SDK's browser bundle (served as /warbler.js by
// serve.mjs), an IndexedDB outbox, a conversation list and one open chat.
// In your own app: import { Warbler } from '@warbler/sdk' and
// import { IndexedDbOutbox } from '@warbler/sdk/idb-outbox', then bundle.
import { Warbler, IndexedDbOutbox, WarblerError, directConversation } from '/warbler.js'

const $ = (sel) => document.querySelector(sel)
const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e }

// One device name per tab, kept across reloads of that tab: the client id is
// user-device, and two connections with one client id would push each other out.
const device = sessionStorage.getItem('warbler-device') ?? `web-${Math.random().toString(36).slice(2, 8)}`
sessionStorage.setItem('warbler-device', device)

const login = $('#login')
login.url.value = localStorage.getItem('warbler-url') ?? `ws://${location.hostname || '127.0.0.1'}:8083/mqtt`
login.username.value = localStorage.getItem('warbler-user') ?? ''

let client = null
let me = ''
let current = null // the open conversation id
const convs = new Map() // conv -> { conv, name, unread }
const messages = new Map() // conv -> Map(seq -> message)
const pending = new Map() // cid -> { conv, text }
const sinceKey = () => `warbler-since-${me}-${device}`

login.addEventListener('submit', async (ev) => {
  ev.preventDefault()
  $('#login-error').textContent = ''
  const secret = login.password.value
  // Tokens from `warbler token create` start with eyJ (signed) or wbd. (device); anything else is a password.
  const auth = /^(eyJ|wbd\.)/.test(secret) ? { token: secret } : { password: secret }
  me = login.username.value.trim()
  $('#state').textContent = 'connecting…'
  try {
    client = await Warbler.connect({
      url: login.url.value.trim(),
      username: me,
      ...auth,
      device,
      // Unsent messages survive a reload or a closed tab and go out on the next connect.
      outbox: new IndexedDbOutbox(`warbler-outbox-${me}-${device}`),
      // What this tab has seen already (saved below): a reload gets only what is new.
      since: JSON.parse(localStorage.getItem(sinceKey()) ?? '{}')
    })
  } catch (err) {
    $('#state').textContent = 'not connected'
    $('#login-error').textContent = err instanceof WarblerError ? `${err.code}: ${err.message}` : String(err)
    return
  }
  localStorage.setItem('warbler-url', login.url.value.trim())
  localStorage.setItem('warbler-user', me)
  login.style.display = 'none'
  $('#chat').style.display = 'flex'
  $('#state').textContent = `${me} (${client.clientId}): connected`
  const { conversations } = await client.conversations()
  for (const c of conversations) convs.set(c.conv, { conv: c.conv, name: c.name, unread: c.unread, lastSeq: c.lastSeq })
  renderConvs()
  wire() // messages that came with the connect's sync are handed to the first 'message' listener
  if (conversations[0] !== undefined) await open(conversations[0].conv)
})

function wire () {
  client.on('state', ({ newState }) => { $('#state').textContent = `${me} (${client.clientId}): ${newState}` })
  client.on('message', (m) => {
    store(m)
    localStorage.setItem(sinceKey(), JSON.stringify(client.syncState))
    if (!convs.has(m.conv)) convs.set(m.conv, { conv: m.conv, name: null, unread: 0, lastSeq: 0 })
    const c = convs.get(m.conv)
    if (m.conv === current) {
      renderMessages()
      void client.markRead(m.conv, m.seq).catch(() => {})
    } else if (m.from !== me && m.seq > c.lastSeq) {
      c.unread++ // the list's counts already include messages up to its lastSeq
    }
    c.lastSeq = Math.max(c.lastSeq, m.seq)
    renderConvs()
  })
  client.on('status', (s) => {
    if (s.status === 'failed') { pending.delete(s.cid); renderMessages(); alert(`not sent: ${s.error.code}: ${s.error.message}`) }
  })
  let typingTimer = null
  client.on('typing', (t) => {
    if (t.conv !== current) return
    $('#title').textContent = `${title(current)} · ${t.user} is typing…`
    clearTimeout(typingTimer)
    typingTimer = setTimeout(() => { $('#title').textContent = title(current) }, 3000)
  })
}

function store (m) {
  let byseq = messages.get(m.conv)
  if (byseq === undefined) { byseq = new Map(); messages.set(m.conv, byseq) }
  byseq.set(m.seq, m)
  if (m.cid !== undefined) pending.delete(m.cid)
}

const title = (conv) => {
  const c = convs.get(conv)
  if (c?.name) return c.name
  if (conv.startsWith('d:')) return conv.slice(2).split(':').find((u) => u !== me) ?? conv
  return conv
}

function renderConvs () {
  const ul = $('#convs')
  ul.replaceChildren(...[...convs.values()].map((c) => {
    const li = el('li', c.conv === current ? 'active' : '')
    li.append(el('span', '', title(c.conv)))
    if (c.unread > 0) li.append(el('span', 'unread', String(c.unread)))
    li.addEventListener('click', () => { void open(c.conv) })
    return li
  }))
}

function renderMessages () {
  const ul = $('#messages')
  const list = [...(messages.get(current)?.values() ?? [])].sort((a, b) => a.seq - b.seq)
  ul.replaceChildren(...list.map((m) => {
    const li = el('li')
    li.append(el('span', 'time', new Date(m.ts).toLocaleTimeString()))
    if (m.body !== null && typeof m.body === 'object' && 'sys' in m.body) {
      li.append(el('span', 'sys', `${m.from} ${m.body.sys} ${m.body.name ?? ''} ${(m.body.members ?? m.body.users ?? []).join(', ')}`))
    } else {
      li.append(el('span', 'from', m.from), el('span', '', typeof m.body === 'string' ? m.body : m.body?.text ?? JSON.stringify(m.body)))
    }
    return li
  }), ...[...pending.values()].filter((p) => p.conv === current).map((p) => el('li', 'pending', `${me}: ${p.text} (sending…)`)))
  ul.scrollTop = ul.scrollHeight
}

async function open (conv) {
  current = conv
  if (!convs.has(conv)) convs.set(conv, { conv, name: null, unread: 0, lastSeq: 0 })
  convs.get(conv).unread = 0
  $('#title').textContent = title(conv)
  for (const e of $('#send').elements) e.disabled = false
  renderConvs()
  try {
    const page = await client.history(conv, { limit: 50 })
    for (const m of page.messages) store(m)
    const last = page.messages.at(-1)
    if (last !== undefined) void client.markRead(conv, last.seq).catch(() => {})
  } catch (err) {
    if (!(err instanceof WarblerError)) throw err // a new direct chat has no history yet (not_found)
  }
  renderMessages()
  $('#send').text.focus()
}

$('#send').addEventListener('submit', (ev) => {
  ev.preventDefault()
  const input = ev.target.text
  const text = input.value
  input.value = ''
  const cid = crypto.randomUUID()
  pending.set(cid, { conv: current, text })
  renderMessages()
  // Resolves once the server has stored it; until then it waits in the IndexedDB outbox.
  client.send({ conv: current }, text, { cid }).catch(() => {})
})

let lastTyping = 0
$('#send').text.addEventListener('input', () => {
  if (Date.now() - lastTyping < 1000 || current === null) return
  lastTyping = Date.now()
  void client.typing(current)
})

$('#new-direct').addEventListener('submit', (ev) => {
  ev.preventDefault()
  const user = ev.target.user.value.trim()
  ev.target.reset()
  void open(directConversation(me, user))
})

$('#new-group').addEventListener('submit', async (ev) => {
  ev.preventDefault()
  const [name, ...members] = ev.target.spec.value.trim().split(/[\s,]+/)
  ev.target.reset()
  try {
    const g = await client.createGroup(name, members)
    convs.set(g.conv, { conv: g.conv, name, unread: 0, lastSeq: 0 })
    await open(g.conv)
  } catch (err) {
    alert(err instanceof WarblerError ? `${err.code}: ${err.message}` : String(err))
  }
})
