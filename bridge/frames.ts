/**
 * Decoding and validating what clients send on `wb/u/{me}/out`. Every refusal
 * is a ServiceError with a stable code and a message naming what was wrong.
 */
import { inflateRawSync } from 'node:zlib'
import {
  CLIENT_MESSAGE_ID_PATTERN, type ClientFrame, clientIdBelongsTo, directConversation, isConversationId, isValidUsername,
  parseChatTopic, payloadEncoding, REQUEST_ID_PATTERN, SEND_EPOCH_PATTERN, type RequestFrame, RequestOps, type SendFrame, type TypingFrame,
  USER_PROPERTIES_MAX_BYTES, USER_PROPERTIES_MAX_PAIRS, type UserProperties
} from '@warbler/sdk/protocol'
import { ServiceError } from './archive/archive-errors.js'

/** Decode a payload envelope (plain or deflated JSON) into a JSON value. */
export function decodePayload (payload: Buffer, maxBytes: number): unknown {
  const enc = payloadEncoding(payload)
  let text: string
  if (enc === 'json') {
    text = payload.toString('utf8')
  } else if (enc === 'deflate') {
    try {
      text = inflateRawSync(payload.subarray(1), { maxOutputLength: maxBytes }).toString('utf8')
    } catch (err) {
      throw new ServiceError('bad_request', `cannot inflate the payload: ${(err as Error).message}`)
    }
  } else if (enc === 'lz4') {
    throw new ServiceError('bad_request', 'LZ4 payloads (first byte 0x02) are reserved and not accepted yet; send plain or deflated JSON')
  } else {
    throw new ServiceError('bad_request', 'the payload is not JSON: it must start with "{" (or 0x01 for deflated JSON)')
  }
  try {
    return JSON.parse(text) as unknown
  } catch (err) {
    throw new ServiceError('bad_request', `malformed JSON: ${(err as Error).message}`)
  }
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** The searchable text of a body: a string body, or an object body's `text`. */
export function bodyText (body: unknown): string {
  if (typeof body === 'string') return body
  if (isObject(body) && typeof body.text === 'string') return body.text
  return ''
}

/** Most levels of arrays and objects a chat body may nest (docs/protocol.md). */
const MAX_BODY_DEPTH = 64

/**
 * Refuse a body nested deeper than MAX_BODY_DEPTH. JSON.parse takes any
 * depth, but storing and delivering a body stringifies it, recursively: a
 * body thousands of levels deep would overflow the stack inside the
 * archive's batch transaction and fail every send batched with it.
 * Iterative, so the check itself cannot overflow.
 */
export function checkBody (body: unknown): void {
  const stack: Array<[unknown, number]> = [[body, 1]]
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const [v, depth] = item
    if (typeof v !== 'object' || v === null) continue
    if (depth > MAX_BODY_DEPTH) throw new ServiceError('bad_request', `body is nested deeper than ${MAX_BODY_DEPTH} levels`)
    for (const x of Array.isArray(v) ? v : Object.values(v)) stack.push([x, depth + 1])
  }
}

/** A validated send, with its conversation resolved. */
export interface ValidSend { frame: SendFrame, conv: string, peer: string | null }

/**
 * What an answer to a decoded frame names it by (`ref`): a send's `cid`, a
 * request's `id`. Read before the rest of the frame is checked, so that a
 * refusal of a bad send or request still says which one it was. Only a
 * well-formed id is echoed back (a malformed one is what gets refused).
 */
export function frameRef (value: unknown): string | undefined {
  if (!isObject(value)) return undefined
  if (value.t === 'msg') return typeof value.cid === 'string' && CLIENT_MESSAGE_ID_PATTERN.test(value.cid) ? value.cid : undefined
  if (value.t === 'req') return typeof value.id === 'string' && REQUEST_ID_PATTERN.test(value.id) ? value.id : undefined
  return undefined
}

export function parseFrame (value: unknown): ClientFrame {
  if (!isObject(value)) throw new ServiceError('bad_request', 'the envelope must be a JSON object')
  const t = value.t
  if (t === 'msg') {
    if (typeof value.cid !== 'string' || !CLIENT_MESSAGE_ID_PATTERN.test(value.cid)) {
      throw new ServiceError('bad_request', 'cid must be 1-64 characters of A-Z a-z 0-9 _ . : -')
    }
    if (!('body' in value) || value.body === null || value.body === undefined) throw new ServiceError('bad_request', 'body is missing')
    if ((value.to === undefined) === (value.conv === undefined)) throw new ServiceError('bad_request', 'give exactly one of to (a user) and conv (a conversation id)')
    checkNumbering(value)
    return value as unknown as SendFrame
  }
  if (t === 'typing') {
    if (typeof value.conv !== 'string' || !isConversationId(value.conv)) throw new ServiceError('bad_request', 'conv must be a conversation id')
    return value as unknown as TypingFrame
  }
  if (t === 'req') {
    if (typeof value.id !== 'string' || !REQUEST_ID_PATTERN.test(value.id)) throw new ServiceError('bad_request', 'id must be 1-64 characters of A-Z a-z 0-9 _ . : -')
    if (typeof value.op !== 'string' || !(RequestOps as readonly string[]).includes(value.op)) {
      throw new ServiceError('unknown_type', `unknown op ${JSON.stringify(value.op)}; known: ${RequestOps.join(', ')}`)
    }
    return value as unknown as RequestFrame
  }
  throw new ServiceError('unknown_type', `unknown frame type t=${JSON.stringify(t)}; known: msg, typing, req`)
}

/** A send's numbering (docs/protocol.md, "Numbered sends"): both `epoch` and `n`, well-formed, or neither. */
function checkNumbering (value: Record<string, unknown>): void {
  if (value.epoch === undefined && value.n === undefined) return
  if (typeof value.epoch !== 'string' || !SEND_EPOCH_PATTERN.test(value.epoch)) {
    throw new ServiceError('bad_request', 'epoch must be 1-32 characters of A-Z a-z 0-9 _ . : - (and comes with n)')
  }
  if (typeof value.n !== 'number' || !Number.isSafeInteger(value.n) || value.n < 1) {
    throw new ServiceError('bad_request', 'n must be a positive integer (and comes with epoch)')
  }
}

/** Resolve the conversation of a send from `to` or `conv`. */
export function resolveSend (user: string, f: SendFrame): ValidSend {
  if (f.to !== undefined) {
    if (typeof f.to !== 'string' || !isValidUsername(f.to)) throw new ServiceError('bad_request', 'to must be a user name')
    if (f.to === user) throw new ServiceError('bad_request', 'to must be another user')
    return { frame: f, conv: directConversation(user, f.to), peer: f.to }
  }
  if (typeof f.conv !== 'string' || !isConversationId(f.conv)) throw new ServiceError('bad_request', 'conv must be a conversation id (d:a:b or g:id)')
  const m = /^d:([^:]+):([^:]+)$/.exec(f.conv)
  const peer = m === null ? null : (m[1] === user ? m[2] as string : m[2] === user ? m[1] as string : null)
  if (m !== null && peer === null) throw new ServiceError('not_member', `${user} is not a member of ${f.conv}`)
  return { frame: f, conv: f.conv, peer }
}

// Request parameter helpers: each names the field that is wrong.
export function intParam (r: RequestFrame, name: string, opts: { min: number, max: number, def?: number }): number | undefined {
  const v = r[name]
  if (v === undefined) return opts.def
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < opts.min || v > opts.max) {
    throw new ServiceError('bad_request', `${name} must be an integer from ${opts.min} to ${opts.max}`)
  }
  return v
}

export function stringParam (r: RequestFrame, name: string, check?: (s: string) => boolean, what = 'a string'): string {
  const v = r[name]
  if (typeof v !== 'string' || (check !== undefined && !check(v))) throw new ServiceError('bad_request', `${name} must be ${what}`)
  return v
}

export function convParam (r: RequestFrame): string {
  return stringParam(r, 'conv', isConversationId, 'a conversation id (d:a:b or g:id)')
}

export function usersParam (r: RequestFrame, name = 'users', max = 500): string[] {
  const v = r[name]
  if (!Array.isArray(v) || v.length === 0 || v.length > max || !v.every((u) => typeof u === 'string' && isValidUsername(u))) {
    throw new ServiceError('bad_request', `${name} must be a list of 1 to ${max} user names`)
  }
  return [...new Set(v as string[])]
}

/**
 * An MQTT 5 Response Topic the service may answer a request of `user` on:
 * the device topic (or device feed) of one of the user's own client ids,
 * which only that user may read. Anything else (another user's topic, the
 * user's inbox or out topic, a topic outside wb/) is refused: the service
 * never publishes a reply where someone else could read it, and the broker
 * lets the service write only inboxes and device topics.
 */
export function checkResponseTopic (user: string, topic: string): void {
  const chat = parseChatTopic(topic)
  if (chat?.kind === 'device' && clientIdBelongsTo(chat.clientId, user)) return
  throw new ServiceError('not_authorized', `response topic ${JSON.stringify(topic)} is not one of ${user}'s: use wb/d/{clientId} (or wb/d/{clientId}/feed) of a client id of ${user} (${user} or ${user}-...)`)
}

/**
 * The MQTT 5 user properties of a chat send, checked: at most
 * USER_PROPERTIES_MAX_PAIRS pairs and USER_PROPERTIES_MAX_BYTES bytes of
 * keys and values (they are stored with the message and delivered with it
 * to every member, every time). Undefined when there are none.
 */
export function checkUserProperties (props: unknown): UserProperties | undefined {
  if (props === undefined || props === null) return undefined
  if (!isObject(props)) throw new ServiceError('bad_request', 'user properties must be string pairs')
  let pairs = 0
  let bytes = 0
  const out: UserProperties = {}
  for (const [key, v] of Object.entries(props)) {
    const values = Array.isArray(v) ? v : [v]
    for (const value of values) {
      if (typeof value !== 'string') throw new ServiceError('bad_request', `user property ${JSON.stringify(key)} must have string values`)
      pairs++
      bytes += Buffer.byteLength(key) + Buffer.byteLength(value)
    }
    out[key] = Array.isArray(v) ? [...values as string[]] : v as string
  }
  if (pairs > USER_PROPERTIES_MAX_PAIRS) throw new ServiceError('bad_request', `${pairs} user properties, more than the limit of ${USER_PROPERTIES_MAX_PAIRS}`)
  if (bytes > USER_PROPERTIES_MAX_BYTES) throw new ServiceError('bad_request', `user properties of ${bytes} bytes (keys and values), over the limit of ${USER_PROPERTIES_MAX_BYTES}`)
  return pairs === 0 ? undefined : out
}
