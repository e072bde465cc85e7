/** Chat text of the corpus: short messages, paragraphs and long pastes (logs, code, JSON, links). */
import type { Gen } from './seeded-random.js'
import { CANNED, DOMAINS, EMOJI, USERS, WORDS, type Lang } from './chat-words.js'

export function sentence (g: Gen, lang: Lang, words: number): string {
  const w: string[] = []
  for (let i = 0; i < words; i++) w.push(g.zipf(WORDS[lang]))
  if (lang === 'zh' || lang === 'ja') return w.join('') + g.pick(lang === 'zh' ? ['。', '！', '？', '，', '…', ''] : ['。', '！', '？', '…', ''])
  let s = w.join(' ')
  if (g.chance(0.6)) s = s.charAt(0).toUpperCase() + s.slice(1)
  return s + g.pick(['.', '!', '?', '', '', '...', ' :)'])
}

function emojis (g: Gen): string {
  let s = ''
  const n = g.weighted([[1, 6], [2, 3], [3, 1]])
  for (let i = 0; i < n; i++) s += g.zipf(EMOJI)
  return s
}

const utf8 = (s: string): number => Buffer.byteLength(s)

/** Short chat text: 5-200 UTF-8 bytes, median about 30. */
export function shortText (g: Gen, lang: Lang): string {
  if (g.chance(0.03)) return emojis(g)
  if (g.chance(0.18)) return g.pick(CANNED[lang]) + (g.chance(0.2) ? ' ' + emojis(g) : '')
  const target = Math.min(200, Math.max(5, g.lognormal(32, 0.8)))
  let s = ''
  while (utf8(s) < target) s += (s === '' ? '' : ' ') + sentence(g, lang, g.int(2, 9))
  while (utf8(s) > 200) s = s.slice(0, -1)
  if (g.chance(0.22)) s += ' ' + emojis(g)
  return s
}

/** A paragraph: 200-1000 bytes, sometimes a list. */
export function mediumText (g: Gen, lang: Lang): string {
  const target = Math.min(1000, Math.max(200, g.lognormal(380, 0.45)))
  const list = g.chance(0.2)
  let s = ''
  while (utf8(s) < target) s += (s === '' ? '' : list ? '\n- ' : ' ') + sentence(g, lang, g.int(5, 16))
  if (list) s = sentence(g, lang, g.int(3, 6)) + '\n- ' + s
  if (g.chance(0.15)) s += ' ' + emojis(g)
  return s
}

function isoTime (ms: number): string { return new Date(ms).toISOString() }

export function logPaste (g: Gen, target: number, t0: number): string {
  const modules = ['broker', 'bridge', 'store', 'auth', 'ws', 'http', 'retention', 'sqlite', 'mqtt', 'systemd']
  const events = [
    (): string => `client connected id=${g.pick(USERS)}-${g.pick(['phone', 'laptop', 'web', 'esp32'])} ip=192.168.${g.int(0, 3)}.${g.int(2, 254)} keepalive=${g.pick([30, 60, 120])}`,
    (): string => `client disconnected id=${g.pick(USERS)}-${g.pick(['phone', 'laptop', 'web'])} reason=${g.pick(['keepalive timeout', 'connection reset by peer', 'client closed', 'protocol error'])}`,
    (): string => `commit batch=${g.int(1, 512)} ms=${(g.rnd() * 80).toFixed(2)} wal=${g.int(10, 4000)}KiB`,
    (): string => `publish topic=wb/u/${g.pick(USERS)}/inbox qos=1 bytes=${g.int(60, 4000)} mid=${g.int(1, 65535)}`,
    (): string => `slow query ms=${g.int(100, 3000)} sql="SELECT m.id, m.conv, m.seq FROM messages m WHERE m.conv = ? AND m.seq > ? ORDER BY m.seq LIMIT ?"`,
    (): string => `GET /metrics 200 ${g.int(1, 40)}ms ${g.int(2000, 9000)}b`,
    (): string => `login failed user=${g.pick(USERS)} ip=${g.int(1, 223)}.${g.int(0, 255)}.${g.int(0, 255)}.${g.int(1, 254)} count=${g.int(1, 9)}`,
    (): string => `Error: ${g.pick(['ECONNRESET', 'ETIMEDOUT', 'SQLITE_BUSY: database is locked', 'EADDRINUSE: address already in use :::1883'])}\n    at ${g.pick(['Socket.onread', 'Database.exec', 'Server.listen'])} (node:internal/${g.pick(['net', 'stream_base_commons'])}:${g.int(100, 900)}:${g.int(5, 40)})\n    at ${g.pick(['ArchiveWriter.flush', 'Bridge.handle', 'Broker.onPublish'])} (file:///opt/warbler/dist/${g.pick(['bridge/writer', 'bridge/service', 'broker/server'])}.js:${g.int(20, 600)}:${g.int(3, 50)})`
  ]
  const lines: string[] = []
  let size = 0
  let t = t0
  while (size < target) {
    t += g.int(0, 4000)
    const level = g.weighted([['INFO', 60], ['DEBUG', 20], ['WARN', 12], ['ERROR', 8]] as const)
    const line = `${isoTime(t)} ${level.padEnd(5)} [${g.zipf(modules)}] ${g.zipf(events)()}`
    lines.push(line)
    size += utf8(line) + 1
  }
  return (g.chance(0.5) ? '```\n' : '') + lines.join('\n') + (g.chance(0.5) ? '\n```' : '')
}

export function codePaste (g: Gen, target: number): string {
  const ids = ['client', 'frame', 'payload', 'conv', 'seq', 'user', 'message', 'result', 'options', 'config', 'buffer', 'store', 'batch', 'topic', 'timeout', 'retry', 'count', 'items', 'data', 'err']
  const snippets = [
    (): string => `export async function ${g.pick(['handle', 'load', 'fetch', 'send', 'parse'])}${g.pick(['Message', 'Frame', 'Config', 'Batch'])} (${g.pick(ids)}: ${g.pick(['string', 'number', 'Buffer', 'Options'])}): Promise<void> {\n  const ${g.pick(ids)} = await ${g.pick(ids)}.${g.pick(['get', 'read', 'open', 'query'])}(${g.pick(ids)})\n  if (${g.pick(ids)} === undefined) {\n    throw new Error(\`${g.pick(ids)} not found: \${${g.pick(ids)}}\`)\n  }\n  for (const ${g.pick(ids)} of ${g.pick(ids)}) {\n    ${g.pick(ids)}.push(${g.pick(ids)}.${g.pick(['id', 'seq', 'length', 'body'])})\n  }\n  return ${g.pick(ids)}\n}\n`,
    (): string => `def ${g.pick(['parse', 'load', 'main', 'run'])}_${g.pick(ids)}(${g.pick(ids)}, ${g.pick(ids)}=None):\n    """${sentence(g, 'en', g.int(4, 10))}"""\n    with open(${g.pick(ids)}, "r", encoding="utf-8") as f:\n        for line in f:\n            if not line.strip():\n                continue\n            ${g.pick(ids)}.append(json.loads(line))\n    return ${g.pick(ids)}\n`,
    (): string => `$ ${g.pick(['sudo systemctl status warbler', 'docker compose logs -f --tail=50', 'npm run build', 'journalctl -u warbler --since today', 'df -h'])}\n${g.pick(['● warbler.service - Warbler chat server\n     Loaded: loaded (/etc/systemd/system/warbler.service; enabled; vendor preset: enabled)\n     Active: active (running) since ' + isoTime(1.7e12 + g.int(0, 1e10)) + '\n   Main PID: ' + g.int(300, 30000) + ' (node)\n      Tasks: 11 (limit: 4915)\n     Memory: ' + g.int(40, 200) + '.3M\n        CPU: ' + g.int(1, 900) + 'ms', 'Filesystem      Size  Used Avail Use% Mounted on\n/dev/root        29G  ' + g.int(3, 28) + 'G   ' + g.int(1, 20) + 'G  ' + g.int(10, 99) + '% /\ntmpfs           1.9G     0  1.9G   0% /dev/shm', 'src/index.ts(' + g.int(1, 300) + ',' + g.int(1, 80) + '): error TS2345: Argument of type \'string | undefined\' is not assignable to parameter of type \'string\'.'])}\n`,
    (): string => `  const ${g.pick(ids)} = new Map<string, ${g.pick(['number', 'string[]', 'Frame'])}>()\n  ${g.pick(ids)}.on('${g.pick(['message', 'close', 'error', 'connect'])}', (${g.pick(ids)}) => {\n    console.log('${g.pick(ids)}', ${g.pick(ids)}.${g.pick(['length', 'id', 'toString()'])})\n  })\n`
  ]
  let s = '```' + g.pick(['ts', 'python', 'sh', '', 'js']) + '\n'
  while (utf8(s) < target) s += g.pick(snippets)() + '\n'
  return s + '```'
}

export function jsonValue (g: Gen, target: number): unknown {
  const items: unknown[] = []
  let size = 0
  while (size < target) {
    const u = g.pick(USERS)
    const item = {
      id: g.int(1, 99999),
      name: u,
      email: `${u}@example.${g.pick(['com', 'org', 'de', 'cn'])}`,
      created_at: isoTime(1.6e12 + g.int(0, 1e11)),
      tags: Array.from({ length: g.int(0, 4) }, () => g.zipf(['admin', 'beta', 'family', 'work', 'ops', 'friends'])),
      active: g.chance(0.7),
      score: Math.round(g.rnd() * 10000) / 100,
      device: { model: g.pick(['Pixel 7', 'iPhone 13', 'Raspberry Pi 4 Model B', 'ESP32-S3', 'ThinkPad X1']), os: g.pick(['Android 14', 'iOS 17.4', 'Debian 12', 'FreeRTOS']) }
    }
    items.push(item)
    size += JSON.stringify(item).length
  }
  return { status: 'ok', page: g.int(1, 9), per_page: items.length, total: g.int(items.length, 5000), data: items }
}

function url (g: Gen): string {
  const d = g.pick(DOMAINS)
  const segs = Array.from({ length: g.int(1, 4) }, () => g.chance(0.5) ? g.zipf(WORDS.en) : g.token(g.int(4, 12)))
  let u = `https://${d}/${segs.join('/')}`
  if (g.chance(0.7)) {
    const q: string[] = []
    if (g.chance(0.5)) q.push(`utm_source=${g.pick(['share', 'twitter', 'newsletter', 'android_app'])}`, `utm_medium=${g.pick(['social', 'email', 'copy_link'])}`)
    if (g.chance(0.4)) q.push(`si=${g.token(16, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-')}`)
    if (g.chance(0.3)) q.push(`fbclid=IwAR${g.token(40, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-')}`)
    if (g.chance(0.4)) q.push(`v=${g.token(11, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-')}`, `t=${g.int(1, 3000)}s`)
    if (q.length > 0) u += '?' + q.join('&')
  }
  return u
}

export function linkPaste (g: Gen, lang: Lang, target: number): string {
  let s = sentence(g, lang, g.int(3, 10)) + '\n'
  while (utf8(s) < target) s += (g.chance(0.4) ? sentence(g, lang, g.int(2, 8)) + ' ' : '') + url(g) + '\n'
  return s
}
