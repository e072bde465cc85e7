/* eslint-disable max-lines -- every generator of fuzz cases in one file, so the weights of their mix stay side by side */
/**
 * What the fuzzer sends, generated from a seeded Rng so that every case can
 * be replayed from (seed, case number):
 * - MQTT level: valid packet streams made with mqtt-packet (CONNECT with a
 *   real device token or not, then PUBLISH, SUBSCRIBE, UNSUBSCRIBE, PINGREQ,
 *   PUBACK/PUBREC/PUBREL/PUBCOMP, DISCONNECT), then mutated (bit flips,
 *   interesting bytes, truncation, insertion, deletion, duplication,
 *   remaining-length corruption, splicing with another stream); random bytes;
 *   declared lengths over the limit; malformed lengths; server-only packet
 *   types; packets before CONNECT.
 * - Application level (publishes on `wb/u/{me}/out` of an authenticated
 *   client): envelopes of every kind with good and bad fields, truncated,
 *   mutated, not JSON, deflated, deflate bombs, LZ4, deeply nested, oversized.
 *
 * Chat sends only ever target users and conversations that do not exist or
 * that the fuzzing user is not in (and deeply nested bodies, which must be
 * refused), so nothing the fuzzer sends may end up in the archive.
 *
 * Where the outcome is certain, a case says what it must be: the connection
 * closed by the server (and counted), or the service's answer to its id.
 */
import { deflateRawSync } from 'node:zlib'
import mqttPacket, { type Packet } from 'mqtt-packet'
import type { Rng } from '../helpers/rng.js'
import { directConversation } from '../../sdk/src/protocol.js'
import { remainingLength } from '../helpers/raw.js'

/** What a case needs to know about the node under test. */
export interface FuzzContext {
  user: string
  /** A device token of `user` (token logins cost no scrypt). */
  token: string
  /** Client ids the MQTT-level cases use (a small pool: persistent sessions stay bounded). */
  clientIds: readonly string[]
  maxPacket: number
  maxPayload: number
  /** Users that exist, and a conversation `user` is not a member of. */
  others: readonly string[]
  foreignConv: string
}

export interface MqttCase {
  kind: 'mqtt'
  label: string
  /** Bytes to write, in this many writes. */
  chunks: Buffer[]
  protocolVersion: 3 | 4 | 5
  /** The server must close the connection by itself, counting this reason. */
  serverCloses: 'packet_too_large' | 'malformed_packet' | null
  /**
   * It starts with a CONNECT whose secret is not the intact device token: the
   * broker may check it as a password, with scrypt (tens of ms of libuv's
   * thread pool each). The runner paces these.
   */
  login: boolean
}

/** Outcomes of an app-level publish: `ack`, `res`, or an error code. */
type Outcome = string

export interface AppCase {
  kind: 'app'
  label: string
  payload: Buffer
  qos: 0 | 1
  /**
   * The answer it must get, if certain: by its id (`ref`) when the service
   * can read one, or (ref null) counted among the answers without an id.
   * `payload_too_large` is the broker's refusal (a notice that may be
   * suppressed): counted by the refusal metric instead.
   */
  expect: { ref: string | null, outcomes: readonly Outcome[] } | null
}

export type FuzzCase = MqttCase | AppCase

const GHOSTS = ['ghost', 'ghost2', 'nobody', 'zed', 'q']
const WEIRD = [
  '\u0000', '\ud800', '\udfff', '\ufeff', '\u202e', '\u2028', '😀', '\\', '"', '\n', '\t', 'é', '\u0001', '\u007f',
  '%s', '${x}', '<script>', '\' OR 1=1 --', 'NEAR(', '*', 'AND', 'OR', '^', '-', ':', '(', ')', '{', '}', '__proto__'
]
const INTERESTING_BYTES = [0x00, 0x01, 0x02, 0x7f, 0x80, 0xff, 0xfe, 0x7b, 0x7d, 0x22, 0x23, 0x2b, 0x2f, 0x24, 0x30, 0xc0, 0xe0]
const NUMBERS = [0, -1, 1, 1.5, -0, 2 ** 31, 2 ** 53, 2 ** 53 + 2, -(2 ** 63), 1e308, 5e-324, 65535, 65536, 200, 201, 1000, 1001]

// -- values -------------------------------------------------------------------

function weirdString (r: Rng, max = 24): string {
  let s = ''
  const n = r.int(max + 1)
  for (let i = 0; i < n; i++) {
    const k = r.int(10)
    if (k < 5) s += r.string(1, 'abcdefghijklmnopqrstuvwxyz ')
    else if (k < 8) s += r.pick(WEIRD)
    else s += String.fromCharCode(r.int(0x10000))
  }
  return s
}

/** A random JSON value (never containing a `sys` key), at most `depth` levels deep. */
function jsonValue (r: Rng, depth: number): unknown {
  const k = r.int(depth > 0 ? 8 : 5)
  switch (k) {
    case 0: return r.bool()
    case 1: return r.pick(NUMBERS)
    case 2: return r.int(1e9) - 5e8
    case 3:
    case 4: return weirdString(r)
    case 5:
    case 6: return Array.from({ length: r.int(5) }, () => jsonValue(r, depth - 1))
    default: {
      const o: Record<string, unknown> = {}
      for (let i = r.int(5); i > 0; i--) {
        const key = r.bool(0.2) ? r.pick(['__proto__', 'constructor', 'text', 'toString', 't', '']) : weirdString(r, 8)
        if (key !== 'sys') o[key] = jsonValue(r, depth - 1)
      }
      return o
    }
  }
}

function nested (r: Rng, depth: number): string {
  if (r.bool()) return '['.repeat(depth) + ']'.repeat(depth)
  return '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)
}

// -- application level ----------------------------------------------------------

interface Envelope { json: string, ref: string | null, outcomes: readonly Outcome[] | null }

const j = JSON.stringify
const REQUEST_OPS = ['history', 'sync', 'search', 'convs', 'unread', 'read', 'delivered', 'receipts', 'presence',
  'group.rename', 'group.add', 'group.remove', 'group.leave', 'group.role', 'group.members'] as const

/** A request with random, often wrong, parameters; the outcome when certain. */
function request (r: Rng, ctx: FuzzContext, id: string): Envelope {
  const op = r.pick(REQUEST_OPS)
  const head = `{"t":"req","id":${j(id)},"op":${j(op)}`
  const env = (params: Record<string, unknown>, outcomes: readonly Outcome[] | null): Envelope => {
    const rest = Object.entries(params).map(([k, v]) => `,${j(k)}:${v === undefined ? 'null' : j(v)}`).join('')
    return { json: head + rest + '}', ref: id, outcomes }
  }
  const badInt = (): unknown => r.pick(['1', 1.5, -5, Number('1e400') === Infinity ? 1e300 : 0, null, [], {}, true, 2 ** 60])
  const conv = (): string => r.pick([ctx.foreignConv, 'g:nonexistent', directConversation(r.pick(GHOSTS), ctx.user), 'g:abc'])
  switch (op) {
    case 'history':
      if (r.bool()) return env({ conv: r.pick(['x', 'd:b:a', 'g:UP', 5, '']), limit: 10 }, ['bad_request'])
      if (r.bool()) return env({ conv: conv(), limit: r.pick([0, 201, '5', 1.5, -1]) }, ['bad_request'])
      return env({ conv: conv(), ...(r.bool() ? { before: r.range(1, 100) } : {}), ...(r.bool() ? { after: r.range(0, 100) } : {}) }, ['not_member'])
    case 'sync': {
      if (r.bool()) return env({ after: r.pick([[], 'x', { 'd:a:b': -1 }, { 'd:a:b': 1.5 }, { 'd:a:b': '3' }, 7]) }, ['bad_request'])
      const after: Record<string, number> = {}
      for (let i = r.int(6); i > 0; i--) after[r.bool(0.3) ? r.pick(['__proto__', 'constructor', '']) : weirdString(r, 12)] = r.int(1000)
      if (r.bool(0.1)) return env({ after, limit: r.pick([0, 501, 'x']) }, ['bad_request'])
      return env({ after, ...(r.bool() ? { limit: r.range(1, 500) } : {}) }, ['res'])
    }
    case 'search': {
      if (r.bool(0.3)) return env({ q: r.pick(['', '   ', 'x'.repeat(201), 5, null]) }, ['bad_request'])
      let q = weirdString(r, 60)
      if (q.trim().length === 0 || q.length > 200) q = 'needle' + q.slice(0, 100)
      if (r.bool(0.2)) return env({ q, conv: r.pick(['bad', 7]) }, ['bad_request'])
      return env({ q, ...(r.bool() ? { limit: r.range(1, 100) } : {}) }, ['res'])
    }
    case 'convs': return r.bool(0.3) ? env({ limit: r.pick([0, 1001, 'x']) }, ['bad_request']) : env({ limit: r.range(1, 1000) }, ['res'])
    case 'unread': return env({}, ['res'])
    case 'read':
    case 'delivered':
      if (r.bool(0.3)) return env({ conv: conv(), seq: badInt() }, ['bad_request'])
      if (r.bool(0.2)) return env({ conv: conv() }, ['bad_request'])
      return env({ conv: conv(), seq: r.int(50) }, ['not_member'])
    case 'receipts':
      return r.bool(0.3) ? env({ conv: r.pick([1, 'nope', '']) }, ['bad_request']) : env({ conv: conv() }, ['not_member'])
    case 'presence':
      if (r.bool(0.3)) return env({ users: r.pick([[], 'alice', [1], ['Bad Name'], Array.from({ length: 201 }, (_, i) => `u${i}`)]) }, ['bad_request'])
      return env({ users: Array.from({ length: r.range(1, 5) }, () => r.pick([...GHOSTS, ...ctx.others])) }, ['res'])
    default:
      // Group operations on groups that do not exist, or with bad parameters.
      return env({
        conv: r.bool(0.8) ? conv() : r.pick(['bad', 1]),
        ...(r.bool() ? { name: r.bool() ? weirdString(r, 10) : r.pick([5, '', 'x'.repeat(300)]) } : {}),
        ...(r.bool() ? { users: r.bool() ? [r.pick([...GHOSTS, ...ctx.others])] : r.pick([[], 'bob', [5]]) } : {}),
        ...(r.bool() ? { user: r.pick([...GHOSTS, ...ctx.others, 'Bad!']), role: r.pick(['admin', 'member', 'owner', 'god']) } : {})
      }, ['bad_request', 'not_found', 'not_member', 'forbidden'])
  }
}

/**
 * A chat send that must never be stored; the outcome when certain. A send
 * that will be mutated (`mutable`) names no user that exists: a flipped bit
 * could make a refused send to one valid ("Bob" is one bit from "bob", a
 * "sys" key one bit from a plain one).
 */
function send (r: Rng, ctx: FuzzContext, cid: string, mutable: boolean): Envelope {
  const body = (): string => j(r.bool(0.2) ? weirdString(r, 40) : jsonValue(r, 4))
  const head = `{"t":"msg","cid":${j(cid)}`
  const real = (): string => (mutable ? r.pick(GHOSTS) : r.pick(ctx.others))
  switch (r.int(9)) {
    case 0: return { json: `${head},"to":${j(r.pick(GHOSTS))},"body":${body()}}`, ref: cid, outcomes: ['not_found'] }
    case 1: return { json: `${head},"conv":${j(directConversation(r.pick(GHOSTS), ctx.user))},"body":${body()}}`, ref: cid, outcomes: ['not_found'] }
    case 2: return { json: `${head},"conv":${j(ctx.foreignConv)},"body":${body()}}`, ref: cid, outcomes: ['not_member'] }
    case 3: return { json: `${head},"conv":"g:nonexistent${r.int(100)}","body":${body()}}`, ref: cid, outcomes: ['not_found'] }
    case 4: return { json: `${head},"to":${j(r.pick([ctx.user, '', mutable ? 'Q!' : 'Bob', 'a b', 5, null]))},"body":${body()}}`, ref: cid, outcomes: ['bad_request'] }
    case 5: return { json: `${head},"to":${j(real())},"body":{"sys":"created","text":"spoof"}}`, ref: cid, outcomes: ['bad_request'] }
    case 6:
      // Deeper than any chat body needs, to a user that exists: refused, never stored.
      return { json: `${head},"to":${j(real())},"body":${nested(r, r.range(65, Math.floor(ctx.maxPayload / 12)))}}`, ref: cid, outcomes: ['bad_request'] }
    case 7:
      // Nested within the limit, to nobody.
      return { json: `${head},"to":${j(r.pick(GHOSTS))},"body":${nested(r, r.range(1, 60))}}`, ref: cid, outcomes: ['not_found'] }
    default: {
      // Shapes parseFrame refuses: the refusal names the send whenever its cid is well-formed.
      const shapes = [
        `{"t":"msg","cid":${j(r.pick(['', 'a b', 'x'.repeat(65), 5, null]))},"to":"ghost","body":1}`,
        `{"t":"msg","cid":${j(cid)},"to":"ghost"}`,
        `{"t":"msg","cid":${j(cid)},"to":"ghost","body":null}`,
        `{"t":"msg","cid":${j(cid)},"to":"ghost","conv":${j(directConversation('ghost', ctx.user))},"body":1}`,
        `{"t":"msg","cid":${j(cid)},"body":"nowhere"}`
      ]
      const k = r.int(shapes.length)
      return { json: shapes[k] as string, ref: k === 0 ? null : cid, outcomes: ['bad_request'] }
    }
  }
}

/** Envelopes of an unknown type or op, or without a well-formed id; a request with a well-formed `id` is named by it. */
function badShape (r: Rng, id: string): Envelope {
  const unknown = [
    '{}', '{"t":5}', '{"t":"nope"}', '{"t":"MSG"}', '{"t":null}', '{"t":["msg"]}',
    `{"t":"req","id":${j(id)},"op":${j(r.pick(['__proto__', 'constructor', 'toString', 'group.create2', 'HISTORY', '', 5]))}}`
  ]
  const bad = [
    `{"t":"req","id":${j(r.pick(['', 'a b', 'x'.repeat(65), 5, null, {}]))},"op":"unread"}`,
    `{"t":"typing","conv":${j(r.pick(['x', 5, null, 'd:b:a']))}}`,
    '{"t":"typing"}'
  ]
  if (!r.bool()) return { json: r.pick(bad), ref: null, outcomes: ['bad_request'] }
  const k = r.int(unknown.length)
  return { json: unknown[k] as string, ref: k === unknown.length - 1 ? id : null, outcomes: ['unknown_type'] }
}

function envelope (r: Rng, ctx: FuzzContext, id: string, mutable = false): Envelope {
  const k = r.int(10)
  if (k < 4) return request(r, ctx, id)
  if (k < 8) return send(r, ctx, id, mutable)
  if (k < 9) return badShape(r, id)
  return { json: `{"t":"typing","conv":${j(r.pick([ctx.foreignConv, 'g:nonexistent']))}}`, ref: null, outcomes: null }
}

/** Mutations of bytes; `from` keeps the first bytes (a valid CONNECT) intact when possible. */
function mutateOnce (r: Rng, b: Buffer, from: number, other: () => Buffer): Buffer {
  const lo = from < b.length ? from : 0
  const at = (): number => lo + r.int(Math.max(1, b.length - lo))
  switch (r.weighted({ flip: 4, set: 3, truncate: 1, insert: 2, remove: 2, dup: 1, length: 3, splice: 1 })) {
    case 'flip': {
      if (b.length === 0) return b
      const c = Buffer.from(b)
      const i = Math.min(at(), c.length - 1)
      c[i] = (c[i] as number) ^ (1 << r.int(8))
      return c
    }
    case 'set': {
      if (b.length === 0) return b
      const c = Buffer.from(b)
      c[Math.min(at(), c.length - 1)] = r.bool(0.7) ? r.pick(INTERESTING_BYTES) : r.int(256)
      return c
    }
    case 'truncate': return b.subarray(0, at())
    case 'insert': {
      const i = at()
      return Buffer.concat([b.subarray(0, i), r.bool() ? r.bytes(r.range(1, 16)) : Buffer.alloc(r.range(1, 8), r.pick(INTERESTING_BYTES)), b.subarray(i)])
    }
    case 'remove': {
      const i = at()
      return Buffer.concat([b.subarray(0, i), b.subarray(i + r.range(1, 16))])
    }
    case 'dup': {
      const i = at()
      const n = r.range(1, 32)
      return Buffer.concat([b.subarray(0, i + n), b.subarray(i, i + n), b.subarray(i + n)])
    }
    case 'length': return corruptLength(r, b, lo)
    default: {
      const o = other()
      return Buffer.concat([b.subarray(0, at()), o.subarray(r.int(Math.max(1, o.length)))])
    }
  }
}

/** Packets of an MQTT byte stream: where each remaining length starts, how many bytes it takes, and its value. */
function packetsOf (b: Buffer): Array<{ at: number, lenAt: number, lenBytes: number, length: number }> {
  const out = []
  let i = 0
  while (i < b.length && out.length < 64) {
    let length = 0
    let mult = 1
    let n = 0
    let ok = false
    while (i + 1 + n < b.length && n < 4) {
      const x = b[i + 1 + n] as number
      length += (x & 0x7f) * mult
      mult *= 128
      n++
      if ((x & 0x80) === 0) { ok = true; break }
    }
    if (!ok) break
    out.push({ at: i, lenAt: i + 1, lenBytes: n, length })
    i += 1 + n + length
  }
  return out
}

/** Rewrite one packet's remaining length: shorter, longer, huge, or not a valid length at all. */
function corruptLength (r: Rng, b: Buffer, from: number): Buffer {
  const all = packetsOf(b)
  const later = all.filter((p) => p.at >= from)
  const p = later.length > 0 ? r.pick(later) : all.length > 0 ? r.pick(all) : null
  if (p === null) return b
  const choice = r.int(8)
  const enc = choice === 7
    ? Buffer.from([0xff, 0xff, 0xff, 0xff, r.int(256)])
    : remainingLength(r.pick([0, Math.max(0, p.length - 1), p.length + 1, p.length * 2, r.int(256), 127, 128, 16383, 16384, 268_435_455]))
  return Buffer.concat([b.subarray(0, p.lenAt), enc, b.subarray(p.lenAt + p.lenBytes)])
}

function mutate (r: Rng, b: Buffer, times: number, from: number, other: () => Buffer): Buffer {
  let out = b
  for (let i = 0; i < times; i++) out = mutateOnce(r, out, from, other)
  return out
}

function appCase (r: Rng, ctx: FuzzContext, i: number): AppCase {
  const id = `x${i}`
  const plain = (e: Envelope, label: string): AppCase => ({
    kind: 'app', label, payload: Buffer.from(e.json), qos: 1,
    expect: e.outcomes === null ? null : { ref: e.ref, outcomes: e.outcomes }
  })
  switch (r.weighted({ envelope: 6, mutated: 6, truncated: 2, random: 2, deflate: 1, bomb: 1, lz4: 1, oversized: 1, deepWhole: 1, padded: 1 })) {
    case 'envelope': {
      const e = envelope(r, ctx, id)
      const c = plain(e, 'envelope')
      if (r.bool(0.1)) c.qos = 0
      return c
    }
    case 'mutated': {
      // Ids of mutated cases start with m: a mutation never makes them answer another case's id.
      const e = envelope(r, ctx, `m${i}`, true)
      const b = mutate(r, Buffer.from(e.json), r.range(1, 4), 0, () => Buffer.from(envelope(r, ctx, `m${i}`, true).json))
      return { kind: 'app', label: 'mutated envelope', payload: b, qos: r.bool(0.9) ? 1 : 0, expect: null }
    }
    case 'truncated': {
      const e = envelope(r, ctx, id)
      return { kind: 'app', label: 'truncated envelope', payload: Buffer.from(e.json).subarray(0, r.int(e.json.length - 1)), qos: 1, expect: { ref: null, outcomes: ['bad_request'] } }
    }
    case 'random': {
      // Anything not starting like JSON (whitespace or "{") or 0x01 (deflate): not an envelope.
      const b = r.bytes(r.range(1, 300))
      if ([0x7b, 0x20, 0x0a, 0x0d, 0x09].includes(b[0] as number)) b[0] = 0x5b
      return { kind: 'app', label: 'random bytes', payload: b, qos: 1, expect: { ref: null, outcomes: ['bad_request'] } }
    }
    case 'deflate': {
      const corrupt = r.bool()
      const e = envelope(r, ctx, id, corrupt)
      const z = Buffer.concat([Buffer.from([0x01]), deflateRawSync(Buffer.from(e.json))])
      if (!corrupt) return { kind: 'app', label: 'deflated envelope', payload: z, qos: 1, expect: e.outcomes === null ? null : { ref: e.ref, outcomes: e.outcomes } }
      // Corrupt the compressed stream: refused, or (rarely) still inflating to something.
      return { kind: 'app', label: 'corrupt deflate', payload: mutate(r, z, r.range(1, 3), 1, () => z), qos: 1, expect: null }
    }
    case 'bomb': {
      // Small on the wire, far over the limit once inflated.
      const z = deflateRawSync(Buffer.alloc(ctx.maxPayload * r.range(2, 16), r.bool() ? 0x20 : 0x5b))
      return { kind: 'app', label: 'deflate bomb', payload: Buffer.concat([Buffer.from([0x01]), z]), qos: 1, expect: { ref: null, outcomes: ['bad_request'] } }
    }
    case 'lz4':
      return { kind: 'app', label: 'lz4 (reserved)', payload: Buffer.concat([Buffer.from([0x02]), r.bytes(r.range(0, 64))]), qos: 1, expect: { ref: null, outcomes: ['bad_request'] } }
    case 'oversized': {
      const n = r.range(ctx.maxPayload + 1, Math.min(ctx.maxPayload * 2, ctx.maxPacket - 1024))
      return { kind: 'app', label: 'over maxPayload', payload: Buffer.alloc(n, 0x7b), qos: r.bool(0.8) ? 1 : 0, expect: { ref: null, outcomes: ['payload_too_large'] } }
    }
    case 'deepWhole': {
      // The whole envelope nested: not an object, or an object with a deep field.
      if (r.bool()) return { kind: 'app', label: 'deep array envelope', payload: Buffer.from(' ' + nested(r, r.range(10, 20_000)).replace(/^\{"a":/, '[')), qos: 1, expect: null }
      const depth = r.range(10, Math.floor(ctx.maxPayload / 8))
      return { kind: 'app', label: 'deep field', payload: Buffer.from(`{"t":"req","id":"${id}","op":"unread","x":${nested(r, depth)}}`), qos: 1, expect: { ref: id, outcomes: ['res'] } }
    }
    default: {
      // Leading whitespace and indentation: still JSON.
      const e = request(r, ctx, id)
      const ws = r.pick([' ', '\n', '\r\n\t ', ' '.repeat(r.range(1, 1000))])
      const spaced = JSON.stringify(JSON.parse(e.json), null, r.pick([1, 2, '\t']))
      return { kind: 'app', label: 'padded envelope', payload: Buffer.from(ws + spaced), qos: 1, expect: e.outcomes === null ? null : { ref: e.ref, outcomes: e.outcomes } }
    }
  }
}

// -- MQTT level ---------------------------------------------------------------

/** mqtt-packet's bytes for a packet; a packet it will not encode (a v3.1 CONNECT without client id...) becomes a PINGREQ. */
function encode (p: Packet, protocolVersion: 3 | 4 | 5 = 4): Buffer {
  try {
    return mqttPacket.generate(p, { protocolVersion })
  } catch {
    return mqttPacket.generate({ cmd: 'pingreq' })
  }
}

const PUBLISH_TOPICS = (ctx: FuzzContext): string[] => [
  `wb/u/${ctx.user}/out`, `wb/u/${ctx.user}/out`, `wb/u/${ctx.user}/inbox`, `wb/u/${ctx.others[0] ?? 'alice'}/out`,
  `wb/u/${ctx.others[0] ?? 'alice'}/inbox`, `wb/d/${ctx.user}`, 'fuzz/a', 'fuzz/b/c', '$SYS/broker/x', 'x', '/', 'fuzz/' + 'l/'.repeat(20)
]
const FILTERS = (ctx: FuzzContext, clientId: string): string[] => [
  `wb/u/${ctx.user}/inbox`, `wb/u/${ctx.user}/#`, `wb/d/${clientId}`, 'fuzz/#', 'fuzz/+/c', '#', '+', '$SYS/#', 'wb/#',
  'wb/u/+/inbox', `wb/u/${ctx.others[0] ?? 'alice'}/inbox`, 'wb/d/+', '+/+/+', 'fuzz/a/#/b', 'fuzz/a+', ''
]

function packetAfterConnect (r: Rng, ctx: FuzzContext, clientId: string): Packet {
  const messageId = r.range(1, 65535)
  switch (r.weighted({ publish: 6, subscribe: 2, unsubscribe: 1, ping: 1, ack: 2, disconnect: 0.3 })) {
    case 'publish': {
      const qos = r.pick([0, 1, 1, 2] as const)
      const topic = r.pick(PUBLISH_TOPICS(ctx))
      const env = topic.endsWith('/out') ? envelope(r, ctx, `m${messageId}`, true).json : weirdString(r, 40)
      return { cmd: 'publish', topic, payload: Buffer.from(env), qos, dup: r.bool(0.1), retain: r.bool(0.1), ...(qos > 0 ? { messageId } : {}) }
    }
    case 'subscribe':
      return { cmd: 'subscribe', messageId, subscriptions: Array.from({ length: r.range(1, 3) }, () => ({ topic: r.pick(FILTERS(ctx, clientId)), qos: r.pick([0, 1, 2] as const) })) }
    case 'unsubscribe':
      return { cmd: 'unsubscribe', messageId, unsubscriptions: [r.pick(FILTERS(ctx, clientId))] }
    case 'ping': return { cmd: 'pingreq' }
    case 'ack': return { cmd: r.pick(['puback', 'pubrec', 'pubrel', 'pubcomp'] as const), messageId }
    default: return { cmd: 'disconnect' }
  }
}

function connectPacket (r: Rng, ctx: FuzzContext, clientId: string, version: 3 | 4 | 5): Packet {
  const auth = r.weighted({ token: 8, wrongToken: 1, password: 0.2, none: 0.5 })
  return {
    cmd: 'connect',
    protocolId: version === 3 ? 'MQIsdp' : 'MQTT',
    protocolVersion: version,
    clean: r.bool(0.8),
    clientId: r.bool(0.95) ? clientId : r.pick(['', 'alice-x', 'Mallory', 'x'.repeat(70)]),
    keepalive: r.pick([0, 1, 10, 60, 65535]),
    ...(auth !== 'none' ? { username: r.bool(0.95) ? ctx.user : r.pick(['alice', 'ghost', 'A']) } : {}),
    ...(auth === 'token' ? { password: Buffer.from(ctx.token) } : {}),
    ...(auth === 'wrongToken' ? { password: Buffer.from(ctx.token.slice(0, -4) + 'AAAA') } : {}),
    ...(auth === 'password' ? { password: Buffer.from(weirdString(r, 12) + 'pw') } : {}),
    ...(r.bool(0.15)
      ? { will: { topic: r.pick(PUBLISH_TOPICS(ctx)), payload: Buffer.from(envelope(r, ctx, `w${r.int(1e6)}`, true).json), qos: r.pick([0, 1, 2] as const), retain: r.bool(0.1) } }
      : {})
  }
}

/** A valid stream: CONNECT (usually), then a few packets. Returns the bytes and the CONNECT's length. */
function stream (r: Rng, ctx: FuzzContext, version: 3 | 4 | 5): { bytes: Buffer, connectLength: number } {
  const clientId = r.pick(ctx.clientIds)
  const parts: Buffer[] = []
  let connectLength = 0
  if (r.bool(0.9)) {
    const c = encode(connectPacket(r, ctx, clientId, version), version)
    parts.push(c)
    connectLength = c.length
  }
  for (let n = r.int(5); n > 0; n--) parts.push(encode(packetAfterConnect(r, ctx, clientId), version))
  return { bytes: Buffer.concat(parts), connectLength }
}

/** A valid CONNECT with the device token: the rest of the case is read by an authenticated session. */
function goodConnect (r: Rng, ctx: FuzzContext): Buffer {
  return encode({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: r.pick(ctx.clientIds), keepalive: 60, username: ctx.user, password: Buffer.from(ctx.token) })
}

function split (r: Rng, b: Buffer): Buffer[] {
  const n = b.length < 2 ? 1 : r.range(1, 3)
  const cuts = Array.from({ length: n - 1 }, () => 1 + r.int(b.length - 1)).sort((x, y) => x - y)
  const out: Buffer[] = []
  let prev = 0
  for (const c of [...cuts, b.length]) { if (c > prev) out.push(b.subarray(prev, c)); prev = c }
  return out
}

const DEVICE_TOKEN = /^wbd\.[0-9a-f]{16}\.[A-Za-z0-9_-]{32,64}$/
const JWT = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/

/** Whether the stream starts with a CONNECT the broker would check with scrypt: a user name and a secret not shaped like a token. */
function checksPassword (bytes: Buffer): boolean {
  if ((bytes[0] ?? 0) >> 4 !== 1) return false
  let found = false
  for (const version of [4, 5] as const) {
    const parser = mqttPacket.parser({ protocolVersion: version })
    parser.on('error', () => {})
    parser.on('packet', (p: Packet) => {
      if (p.cmd !== 'connect' || p.username === undefined || p.password === undefined) return
      const secret = p.password.toString()
      if (!DEVICE_TOKEN.test(secret) && !JWT.test(secret)) found = true
    })
    try { parser.parse(bytes) } catch { /* a refused packet is a valid outcome here */ }
  }
  return found
}

function mqttCase (r: Rng, ctx: FuzzContext): MqttCase {
  const version = r.weighted({ 4: 8, 3: 1, 5: 1 }) === '4' ? 4 : r.bool() ? 3 : 5
  const make = (label: string, bytes: Buffer, serverCloses: MqttCase['serverCloses'] = null, v: 3 | 4 | 5 = 4): MqttCase =>
    ({ kind: 'mqtt', label, chunks: split(r, bytes), protocolVersion: v, serverCloses, login: checksPassword(bytes) })
  const prefix = (): Buffer => (r.bool(0.7) ? goodConnect(r, ctx) : Buffer.alloc(0))
  switch (r.weighted({ mutated: 12, valid: 1, random: 2, oversize: 1, badLength: 1, serverType: 1, beforeConnect: 0.5, secondConnect: 0.5 })) {
    case 'mutated': {
      const s = stream(r, ctx, version)
      // Mostly past the CONNECT: a mangled secret costs the broker a scrypt check (see MqttCase.login).
      const from = r.bool(0.95) ? s.connectLength : 0
      return make('mutated stream', mutate(r, s.bytes, r.range(1, 4), from, () => stream(r, ctx, version).bytes), null, version)
    }
    case 'valid': return make('valid stream', stream(r, ctx, version).bytes, null, version)
    case 'random': return make('random bytes', Buffer.concat([prefix(), r.bytes(r.range(1, 512))]))
    case 'oversize': {
      // A declared remaining length over maxPacket: closed before the body is read.
      const type = r.pick([1, 3, 3, 3, 8, 10, 12, 14])
      const len = r.range(ctx.maxPacket + 1, 268_435_455)
      return make('declared length over maxPacket', Buffer.concat([prefix(), Buffer.from([(type << 4) | (type === 3 ? r.int(16) & 0x0b : type === 8 || type === 10 ? 2 : 0)]), remainingLength(len), r.bytes(r.range(0, 64))]), 'packet_too_large')
    }
    case 'badLength':
      return make('remaining length of 5 bytes', Buffer.concat([prefix(), Buffer.from([r.pick([0x10, 0x30, 0x32, 0x82, 0xc0]), 0xff, 0xff, 0xff, 0xff, r.int(256)])]), 'malformed_packet')
    case 'serverType': {
      // CONNACK, SUBACK, UNSUBACK, PINGRESP or the reserved type 0, from a client.
      const type = r.pick([0, 2, 9, 11, 13])
      return make('server-only packet type', Buffer.concat([prefix(), Buffer.from([type << 4]), remainingLength(r.int(4)), r.bytes(3)]), 'malformed_packet')
    }
    case 'beforeConnect': {
      const p = packetAfterConnect(r, ctx, r.pick(ctx.clientIds))
      if (p.cmd === 'disconnect') return make('DISCONNECT before CONNECT', encode(p))
      return make(`${p.cmd} before CONNECT`, encode(p), 'malformed_packet')
    }
    default: return make('second CONNECT', Buffer.concat([goodConnect(r, ctx), goodConnect(r, ctx)]), 'malformed_packet')
  }
}

/** Case `i` of a run: about half MQTT-level, half application-level. */
export function makeCase (r: Rng, ctx: FuzzContext, i: number): FuzzCase {
  return r.bool(0.5) ? mqttCase(r, ctx) : appCase(r, ctx, i)
}
