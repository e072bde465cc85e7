#!/usr/bin/env node
// A terminal chat on Warbler with the SDK: one line per message, slash commands.
//
//   node examples/terminal-chat/chat.mjs --user alice --password alice-password
//   WARBLER_TOKEN=eyJ... node examples/terminal-chat/chat.mjs --user alice --url mqtt://pi.local:1883
//
// Commands (plain text goes to the conversation you used last):
//   /to USER|CONV TEXT       send to a user (direct chat) or a conversation (g:..., d:...)
//   /group NAME MEMBER...    create a group with these members, and talk in it
//   /history USER|CONV [N]   the last N messages (default 20)
//   /convs                   your conversations, by last activity, with unread counts
//   /search WORDS            full-text search in your conversations
//   /who USER...             who is online
//   /read USER|CONV          mark a conversation read up to its last message
//   /help, /quit             (Ctrl-D quits too, after pending sends are acknowledged)
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { parseArgs } from 'node:util'
// In your own app: import { Warbler, directConversation } from '@warbler/sdk'
//                  import { FileOutbox } from '@warbler/sdk/file-outbox'
import { Warbler, WarblerError, directConversation } from '../../sdk/dist/index.js'
import { FileOutbox } from '../../sdk/dist/file-outbox.js'

const HELP = `commands:
  /to USER|CONV TEXT       send (plain lines go to the last conversation)
  /group NAME MEMBER...    create a group and talk in it
  /history USER|CONV [N]   the last N messages (default 20)
  /convs                   conversations with unread counts
  /search WORDS            full-text search
  /who USER...             presence
  /read USER|CONV          mark read
  /help  /quit`

const usage = `usage: node examples/terminal-chat/chat.mjs --user NAME [--password PW | env WARBLER_TOKEN / WARBLER_PASSWORD]
       [--url mqtt://127.0.0.1:1883] [--device term] [--state DIR (default ~/.warbler-chat)]\n\n${HELP}`
let args
try {
  ({ values: args } = parseArgs({
    options: {
      url: { type: 'string', default: process.env.WARBLER_URL ?? 'mqtt://127.0.0.1:1883' },
      user: { type: 'string', default: process.env.WARBLER_USER },
      password: { type: 'string' },
      device: { type: 'string', default: 'term' },
      state: { type: 'string' },
      help: { type: 'boolean', short: 'h' }
    }
  }))
} catch (e) {
  console.error(`${e.message}\n${usage}`)
  process.exit(2)
}
if (args.help === true || args.user === undefined) {
  console.log(usage)
  process.exit(args.help === true ? 0 : 2)
}
const password = args.password ?? process.env.WARBLER_PASSWORD
const token = password === undefined ? process.env.WARBLER_TOKEN : undefined
if (password === undefined && token === undefined) {
  console.error('give --password, or set WARBLER_TOKEN (a token from `warbler token create`) or WARBLER_PASSWORD')
  process.exit(2)
}
const me = args.user

const tty = process.stdin.isTTY === true && process.stdout.isTTY === true
const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: tty })
rl.setPrompt('> ')
// Lines typed (or piped) before the connection is up wait for it, in order.
let client
let connected
let queue = new Promise((resolve) => { connected = resolve })
// One line at a time, in order, so that piped input behaves like typing.
rl.on('line', (line) => {
  queue = queue.then(async () => {
    if (line.trim() === '') return
    try {
      if (line.startsWith('/')) await command(line)
      else if (current === null) say('-- who to? /to USER TEXT first')
      else send(current, line)
    } catch (e) {
      say(`-- ${e instanceof WarblerError ? e.code + ': ' : ''}${e.message}`)
    }
  })
})
rl.on('close', () => {
  void queue.then(async () => {
    if (sending.size > 0) {
      say(`-- waiting for ${sending.size} send(s) to be acknowledged (Ctrl-C leaves them in the outbox)`)
      await Promise.allSettled([...sending])
    }
    await client.close()
    saveSince()
    process.exit(0)
  })
})
// Ctrl-C: leave at once; what is not acknowledged yet stays in the outbox file for the next start.
const quit = () => { if (client === undefined) process.exit(130); void client.close().finally(() => { saveSince(); process.exit(130) }) }
rl.on('SIGINT', quit)
process.on('SIGINT', quit)
process.on('SIGTERM', quit)

/** Print a line without breaking what the user is typing. */
function say (line) {
  if (tty) { readline.clearLine(process.stdout, 0); readline.cursorTo(process.stdout, 0) }
  process.stdout.write(line + '\n')
  if (tty) rl.prompt(true)
}

const time = (ts) => new Date(ts).toTimeString().slice(0, 8)
const text = (body) => typeof body === 'string' ? body : typeof body?.text === 'string' ? body.text : JSON.stringify(body)
function show (m) {
  const b = m.body
  if (b !== null && typeof b === 'object' && 'sys' in b) {
    // Group changes: created, renamed, added, removed, left, role.
    const who = b.members ?? b.users ?? (b.user !== undefined ? [b.user] : [])
    say(`${time(m.ts)} [${m.conv}] * ${m.from} ${b.sys}${b.name ? ` "${b.name}"` : ''}${who.length > 0 ? ': ' + who.join(', ') : ''}${b.role ? ' ' + b.role : ''}`)
  } else {
    say(`${time(m.ts)} [${m.conv}] ${m.from}: ${text(m.body)}`)
  }
}
/** A user name or a conversation id -> a conversation id. */
const conv = (x) => x.includes(':') ? x : directConversation(me, x)
/** A user name or a conversation id -> a send target. */
const target = (x) => x.includes(':') ? { conv: x } : { to: x }

// What this device has seen (client.syncState), kept between runs and given back as
// `since`: the next start gets only what came after, not every conversation again.
const stateDir = args.state ?? path.join(os.homedir(), '.warbler-chat')
const sinceFile = path.join(stateDir, `${me}-${args.device}.since.json`)
let since = {}
try { since = JSON.parse(readFileSync(sinceFile, 'utf8')) } catch { /* no saved state yet (first start): everything */ }
let sinceTimer = null
function saveSince () {
  clearTimeout(sinceTimer)
  sinceTimer = null
  if (client === undefined) return
  mkdirSync(stateDir, { recursive: true })
  writeFileSync(sinceFile + '.tmp', JSON.stringify(client.syncState))
  renameSync(sinceFile + '.tmp', sinceFile)
}

try {
  client = await Warbler.connect({
    url: args.url,
    username: me,
    ...(token !== undefined ? { token } : { password }),
    device: args.device,
    // Unsent messages survive a crash or Ctrl-C and go out on the next start.
    outbox: new FileOutbox(path.join(stateDir, `${me}-${args.device}.outbox.json`)),
    since
  })
} catch (err) {
  console.error(`cannot connect to ${args.url} as ${me}: ${err instanceof WarblerError ? `${err.code}: ${err.message}` : err}`)
  process.exit(1)
}

client.on('message', (m) => {
  show(m)
  sinceTimer ??= setTimeout(saveSince, 1000)
})
client.on('state', ({ newState, error }) => {
  if (newState === 'reconnecting') say(`-- disconnected${error !== undefined && error.code !== 'connection_lost' ? ` (${error.code}: ${error.message})` : ''}; reconnecting`)
  else if (newState === 'connected') say('-- connected again')
})
client.on('status', (s) => { if (s.status === 'failed') say(`-- not sent (${s.error.code}): ${s.error.message}`) })
client.on('presence', (p) => say(`-- ${p.user} is ${p.online ? 'online' : 'offline'}`))
client.on('error', (e) => say(`-- ${e.code}: ${e.message}`))

say(`connected to ${args.url} as ${me} (${client.clientId}); /help for commands`)
// What arrived while this program was not running: unread counts per conversation.
await client.conversations(20).then(({ conversations }) => {
  for (const c of conversations.filter((c) => c.unread > 0)) say(`-- ${c.conv}${c.name ? ` "${c.name}"` : ''}: ${c.unread} unread (/history ${c.conv})`)
}, (e) => say(`-- conversation list: ${e.message}`))

let current = null // the last conversation target used
const sending = new Set()
function send (to, body) {
  current = to
  // Resolves with the server's ack; a refusal is shown by the 'status' listener, and
  // on close or Ctrl-C an unacknowledged message stays in the outbox for the next start.
  const p = client.send(target(to), body).catch(() => {})
  sending.add(p)
  void p.finally(() => sending.delete(p))
}

async function command (line) {
  const [cmd, ...rest] = line.trim().split(/\s+/)
  const arg = line.trim().slice(cmd.length).trim()
  switch (cmd) {
    case '/to': {
      const to = rest[0]
      const body = arg.slice(to?.length ?? 0).trim()
      if (to === undefined || body === '') return say('usage: /to USER|CONV TEXT')
      return send(to, body)
    }
    case '/group': {
      if (rest.length < 1) return say('usage: /group NAME MEMBER...')
      const [name, ...members] = rest
      const g = await client.createGroup(name, members.flatMap((m) => m.split(',')).filter((m) => m !== ''))
      current = g.conv
      return say(`-- group "${name}" is ${g.conv}; plain lines now go there`)
    }
    case '/history': {
      if (rest[0] === undefined) return say('usage: /history USER|CONV [N]')
      const page = await client.history(conv(rest[0]), { limit: Number(rest[1] ?? 20) })
      for (const m of page.messages) show(m)
      return say(`-- ${page.messages.length} message(s)${page.more ? ', more before' : ''}`)
    }
    case '/convs': {
      const { conversations } = await client.conversations()
      for (const c of conversations) say(`${c.conv}${c.name ? ` "${c.name}"` : ''}: ${c.lastSeq} message(s), ${c.unread} unread${c.last ? `, last ${c.last.from}: ${text(c.last.body)}` : ''}`)
      return say(`-- ${conversations.length} conversation(s)`)
    }
    case '/search': {
      const { messages } = await client.search(arg)
      for (const m of messages) show(m)
      return say(`-- ${messages.length} found`)
    }
    case '/who': {
      const { users } = await client.presence(rest)
      for (const u of users) say(`${u.user}: ${u.online ? 'online' : `offline${u.lastSeen ? ', last seen ' + new Date(u.lastSeen).toLocaleString() : ''}`}`)
      return
    }
    case '/read': {
      if (rest[0] === undefined) return say('usage: /read USER|CONV')
      const c = conv(rest[0])
      const last = (await client.history(c, { limit: 1 })).messages[0]
      if (last !== undefined) await client.markRead(c, last.seq)
      return say(`-- ${c} read up to ${last?.seq ?? 0}`)
    }
    case '/help': return say(HELP)
    case '/quit': return rl.close()
    default: return say(`unknown command ${cmd}; /help`)
  }
}

connected() // now the lines typed so far run
if (tty) rl.prompt()
