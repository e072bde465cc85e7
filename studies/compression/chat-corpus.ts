/** The corpus: sends as the SDK publishes them and history/sync replies as the service sends them. */
import { Gen, prng } from './seeded-random.js'
import { LANGS, USERS, type Lang } from './chat-words.js'
import { codePaste, jsonValue, linkPaste, logPaste, mediumText, sentence, shortText } from './chat-text.js'

type BodyClass = 'short' | 'medium' | 'long'
type LongKind = 'log' | 'code' | 'json' | 'links'
interface Body { cls: BodyClass, kind: LongKind | 'text', lang: Lang, value: unknown }

function body (g: Gen, t: number): Body {
  const lang = g.weighted(LANGS)
  const cls = g.weighted<BodyClass>([['short', 85], ['medium', 12], ['long', 3]])
  let text: string
  let kind: Body['kind'] = 'text'
  if (cls === 'short') text = shortText(g, lang)
  else if (cls === 'medium') text = mediumText(g, lang)
  else {
    const target = Math.min(48_000, Math.max(1000, g.lognormal(2500, 0.8)))
    kind = g.weighted<LongKind>([['log', 35], ['code', 25], ['json', 20], ['links', 20]])
    if (kind === 'json') {
      const v = jsonValue(g, target)
      // Pasted JSON is text (pretty-printed or minified); some clients send it as structured data.
      if (g.chance(0.3)) return { cls, kind, lang, value: { text: sentence(g, lang, g.int(2, 6)), data: v } }
      text = g.chance(0.6) ? JSON.stringify(v, null, 2) : JSON.stringify(v)
    } else if (kind === 'log') text = logPaste(g, target, t - 3_600_000)
    else if (kind === 'code') text = codePaste(g, target)
    else text = linkPaste(g, lang, target)
  }
  // Most bodies are a string; some clients send objects (docs/protocol.md: an object's `text` is what search finds).
  const shape = g.weighted([['string', 80], ['lang', 8], ['reply', 8], ['file', 4]] as const)
  if (shape === 'string') return { cls, kind, lang, value: text }
  if (shape === 'lang') return { cls, kind, lang, value: { text, lang } }
  if (shape === 'reply') return { cls, kind, lang, value: { text, reply: messageId(g, t - g.int(1000, 86_400_000)) } }
  return {
    cls,
    kind,
    lang,
    value: { text, file: { name: `${g.pick(['IMG', 'VID', 'scan', 'report'])}_${g.int(1000, 9999)}.${g.pick(['jpg', 'mp4', 'pdf', 'png'])}`, mime: g.pick(['image/jpeg', 'video/mp4', 'application/pdf', 'image/png']), size: g.int(20_000, 20_000_000), url: `/files/${g.token(26)}` } }
  }
}

/** The server's message id (bridge/archive/writer.ts newMessageId): 48-bit ms time + 64 random bits, base32hex. */
function messageId (g: Gen, now: number): string {
  const b = Buffer.alloc(14)
  b.writeUIntBE(now, 0, 6)
  for (let i = 6; i < 14; i++) b[i] = g.int(0, 255)
  let out = ''
  let bits = 0
  let value = 0
  for (const byte of b) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) { out += '0123456789abcdefghijklmnopqrstuv'[(value >>> (bits - 5)) & 31]; bits -= 5 }
  }
  if (bits > 0) out += '0123456789abcdefghijklmnopqrstuv'[(value << (5 - bits)) & 31]
  return out
}

/** The SDK's client message / request id (sdk/src/client.ts newId). */
let idCounter = 0
function clientId (g: Gen, prefix: string, now: number): string {
  return `${prefix}${now.toString(36)}${(++idCounter).toString(36)}${g.token(6)}`
}

function groupConv (g: Gen): string { return 'g:' + g.token(20, '0123456789abcdef') }
function directConv (a: string, b: string): string { return a < b ? `d:${a}:${b}` : `d:${b}:${a}` }

/** Frame classes of the report. */
export type FrameClass = 'short' | 'medium' | 'long' | 'history'
export interface Frame { cls: FrameClass, kind: string, lang: Lang | 'mixed', json: Uint8Array }

export const te = new TextEncoder()

export interface Corpus { sends: Frame[], replies: Frame[], inboxBytes: number, inboxFrames: number }

export function buildCorpus (seed: number, nSends: number, nReplies: number): Corpus {
  const g = new Gen(prng(seed))
  const sends: Frame[] = []
  let t = 1_795_000_000_000
  const me = 'alice'
  for (let i = 0; i < nSends; i++) {
    t += g.int(500, 600_000)
    const b = body(g, t)
    const target = g.chance(0.6) ? { to: g.zipf(USERS.filter((u) => u !== me)) } : { conv: groupConv(g) }
    const frame = { t: 'msg', cid: clientId(g, 'm', t), ...target, body: b.value }
    sends.push({ cls: b.cls, kind: b.kind, lang: b.lang, json: te.encode(JSON.stringify(frame)) })
  }
  // History and sync replies: 50-100 MessageFrames (bridge/archive/reader.ts rowToFrame) of real conversations.
  const replies: Frame[] = []
  let inboxBytes = 0
  let inboxFrames = 0
  const conversation = (conv: string, members: string[], from: number, n: number): object[] => {
    const out: object[] = []
    let ts = t - g.int(0, 30) * 86_400_000
    for (let k = 0; k < n; k++) {
      ts += g.int(1000, 3_600_000)
      const sender = g.zipf(members)
      const m: Record<string, unknown> = { t: 'msg', id: messageId(g, ts), conv, seq: from + k, from: sender, ts }
      if (g.chance(0.98)) m.cid = clientId(g, 'm', ts)
      m.body = g.chance(0.01) ? { sys: 'added', by: members[0], users: [g.pick(USERS)] } : body(g, ts).value
      out.push(m)
      inboxBytes += te.encode(JSON.stringify(m)).length
      inboxFrames++
    }
    return out
  }
  for (let i = 0; i < nReplies; i++) {
    const reqId = clientId(g, 'r', t)
    if (i % 3 !== 2) {
      const group = g.chance(0.4)
      const members = group ? [me, ...Array.from({ length: g.int(2, 12) }, () => g.pick(USERS))] : [me, g.pick(USERS.slice(1))]
      const conv = group ? groupConv(g) : directConv(members[0] as string, members[1] as string)
      const n = g.int(50, 100)
      const from = g.int(1, 5000)
      const data = { messages: conversation(conv, [...new Set(members)], from, n), more: from > 1 }
      replies.push({ cls: 'history', kind: 'history', lang: 'mixed', json: te.encode(JSON.stringify({ t: 'res', id: reqId, data })) })
    } else {
      const nConvs = g.int(3, 20)
      const convs: Array<{ conv: string, lastSeq: number, readSeq: number }> = []
      const messages: object[] = []
      const truncated: string[] = []
      let budget = g.int(50, 100)
      for (let c = 0; c < nConvs; c++) {
        const group = g.chance(0.4)
        const other = g.pick(USERS.slice(1))
        const conv = group ? groupConv(g) : directConv(me, other)
        const lastSeq = g.int(5, 3000)
        const missing = Math.min(budget, g.int(0, 30))
        budget -= missing
        convs.push({ conv, lastSeq, readSeq: lastSeq - missing - g.int(0, 3) })
        if (missing > 0) messages.push(...conversation(conv, group ? [me, other, g.pick(USERS), g.pick(USERS)] : [me, other], lastSeq - missing + 1, missing))
        if (g.chance(0.1)) truncated.push(conv)
      }
      const data = { conversations: convs, messages, truncated }
      replies.push({ cls: 'history', kind: 'sync', lang: 'mixed', json: te.encode(JSON.stringify({ t: 'res', id: reqId, data })) })
    }
  }
  return { sends, replies, inboxBytes, inboxFrames }
}
