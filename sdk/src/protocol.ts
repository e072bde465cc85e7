/**
 * The Warbler wire protocol: topic layout, payload envelope and error codes.
 *
 * This module is the single source of truth shared by the broker, the message
 * service (bridge) and the SDK. It must stay free of Node-only imports so that
 * it runs in browsers too. `docs/protocol.md` documents it for people who write
 * plain MQTT clients; `docs/errors.md` lists every error code (a test keeps the
 * two in step).
 */

/** First level of every Warbler chat topic. */
export const TOPIC_ROOT = 'wb'

/**
 * User names: lower-case ASCII letters, digits, `_` and `.`, starting with a
 * letter, at most 32 characters. No `-` so that `user-device` client ids are
 * unambiguous, and nothing that is special in an MQTT topic.
 */
export const USERNAME_PATTERN = /^[a-z][a-z0-9_.]{0,31}$/

/** Characters allowed in a client id of an authenticated user. */
export const CLIENT_ID_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/

export function isValidUsername (name: string): boolean {
  return USERNAME_PATTERN.test(name)
}

/**
 * A client id that a given user may use: the user name itself, or the user
 * name followed by `-` and a device suffix (`alice`, `alice-phone`). Binding
 * client ids to users stops one user from taking over another user's
 * persistent session (and its offline queue) by reusing its client id.
 */
export function clientIdBelongsTo (clientId: string, username: string): boolean {
  if (!CLIENT_ID_PATTERN.test(clientId)) return false
  if (clientId === username) return true
  return clientId.length > username.length + 1 &&
    clientId.startsWith(username) &&
    clientId.charCodeAt(username.length) === 45 /* '-' */
}

/** Topics of the chat topic space. */
export const topics = {
  /** Everything the service sends to a user, on every device: messages, receipts, presence, events; one frame per publish. */
  inbox: (user: string): string => `${TOPIC_ROOT}/u/${user}/inbox`,
  /**
   * The same frames as the inbox, except that messages stored in one commit
   * for this user may travel together in one `batch` frame. What the SDK reads;
   * a device subscribes to the inbox or to the feed, not both.
   */
  feed: (user: string): string => `${TOPIC_ROOT}/u/${user}/feed`,
  /** Where a user publishes what it sends: chat messages, typing, receipts and requests. */
  out: (user: string): string => `${TOPIC_ROOT}/u/${user}/out`,
  /**
   * What the broker makes of a publish on `out`: it appends the sending
   * connection's client id, which the message service reads (never the payload).
   */
  stampedOut: (user: string, clientId: string): string => `${TOPIC_ROOT}/u/${user}/out/${clientId}`,
  /** The level every topic of one user starts with (the ACL's test). */
  userPrefix: (user: string): string => `${TOPIC_ROOT}/u/${user}/`,
  /** Replies, acknowledgements and errors for one connection (client id). */
  device: (clientId: string): string => `${TOPIC_ROOT}/d/${clientId}`,
  /** The same frames as the device topic, except that acks of one commit may travel together in one `batch` frame. */
  deviceFeed: (clientId: string): string => `${TOPIC_ROOT}/d/${clientId}/feed`,
  /** Server-internal sink for refused publishes; nobody can subscribe to it. */
  refused: '$WB/refused'
} as const

/** The filter the message service subscribes to: every stamped `out` topic. */
export const SERVICE_OUT_FILTER = `${TOPIC_ROOT}/u/+/out/+`

/** (user, clientId) of a stamped out topic (`topics.stampedOut`), or null for any other topic. */
export function parseStampedOut (topic: string): { user: string, clientId: string } | null {
  // Called for every publish the broker routes: reject the others without splitting.
  if (!topic.startsWith(`${TOPIC_ROOT}/u/`) || !topic.includes('/out/')) return null
  const p = topic.split('/')
  if (p.length !== 5 || p[0] !== TOPIC_ROOT || p[1] !== 'u' || p[3] !== 'out') return null
  return { user: p[2] as string, clientId: p[4] as string }
}

/** What a topic of the chat topic space is, or null for any other topic. */
export type ChatTopic =
  | { kind: 'inbox', user: string, feed: boolean }
  | { kind: 'out', user: string }
  | { kind: 'user-other', user: string }
  | { kind: 'device', clientId: string, feed: boolean }
  | { kind: 'reserved' }

/**
 * Classify a topic name or filter of the chat topic space. Returns null for
 * topics outside `wb/`. Filters with wildcards in the user or client id level
 * are `reserved` (they would span other users).
 */
export function parseChatTopic (topic: string): ChatTopic | null {
  if (topic !== TOPIC_ROOT && !topic.startsWith(TOPIC_ROOT + '/')) {
    // '#', '+/...' also span wb/: callers check wildcards separately.
    return null
  }
  const parts = topic.split('/')
  const scope = parts[1]
  const id = parts[2]
  if (scope === 'u' && id !== undefined && id !== '+' && id !== '#' && id !== '') {
    if (parts.length === 4 && (parts[3] === 'inbox' || parts[3] === 'feed')) return { kind: 'inbox', user: id, feed: parts[3] === 'feed' }
    if (parts.length === 4 && parts[3] === 'out') return { kind: 'out', user: id }
    return { kind: 'user-other', user: id }
  }
  if (scope === 'd' && id !== undefined && id !== '+' && id !== '#' && id !== '' && (parts.length === 3 || (parts.length === 4 && parts[3] === 'feed'))) {
    return { kind: 'device', clientId: id, feed: parts.length === 4 }
  }
  return { kind: 'reserved' }
}

// ---------------------------------------------------------------------------
// Payload envelope
// ---------------------------------------------------------------------------

/**
 * A payload is self-describing by its first byte:
 * - `{` (0x7b): plain UTF-8 JSON, what plain MQTT clients send and read;
 * - 0x01: deflate-compressed (raw deflate, RFC 1951) UTF-8 JSON;
 * - 0x02: LZ4 block-compressed UTF-8 JSON, the 4-byte little-endian
 *   uncompressed length first.
 * Any other first byte means the payload is not a Warbler envelope.
 */
export const Encoding = {
  json: 0x7b,
  deflate: 0x01,
  lz4: 0x02
} as const
export type EncodingName = keyof typeof Encoding

/** Which encoding a payload uses, or null if it is not a Warbler envelope. */
export function payloadEncoding (payload: Uint8Array): EncodingName | null {
  const b = payload[0]
  // Tolerate leading whitespace before plain JSON (`mosquitto_pub -m ' {...}'`).
  if (b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09) {
    for (const c of payload) {
      if (c === 0x7b) return 'json'
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return null
    }
    return null
  }
  if (b === Encoding.json) return 'json'
  if (b === Encoding.deflate) return 'deflate'
  if (b === Encoding.lz4) return 'lz4'
  return null
}

// ---------------------------------------------------------------------------
// MQTT 5 publish properties (docs/protocol.md, "MQTT 5")
// ---------------------------------------------------------------------------

/**
 * MQTT 5 user properties as mqtt.js and mqtt-packet carry them: a repeated
 * key holds its values in a list, in order.
 */
export type UserProperties = Record<string, string | string[]>

/** The MQTT 5 properties of a publish the message service reads or writes (mqtt-packet's names). */
export interface PublishProperties {
  /** A request's answer goes here instead of the device topic. */
  responseTopic?: string
  /** Echoed with the answer on the response topic. */
  correlationData?: Uint8Array
  /** Kept with a chat message and delivered with it (bounded: USER_PROPERTIES_MAX_*). */
  userProperties?: UserProperties
  /** Seconds before a broker drops the message from a session's queue. */
  messageExpiryInterval?: number
}

/** Message Expiry Interval of typing notices, seconds: a notice older than this means nothing. */
export const TYPING_EXPIRY_S = 5
/** Message Expiry Interval of presence notices, seconds: a later change or a `presence` request says more. */
export const PRESENCE_EXPIRY_S = 60
/** Most user property pairs one chat message may carry. */
export const USER_PROPERTIES_MAX_PAIRS = 16
/** Most UTF-8 bytes of one chat message's user property keys and values together. */
export const USER_PROPERTIES_MAX_BYTES = 1024

/** A notice the service sends to one connection on `wb/d/{clientId}`. */
export interface ErrorFrame {
  t: 'error'
  /** Stable code from {@link ErrorCodes}. */
  code: ErrorCode
  /** Human-readable detail; never parse it. */
  message: string
  /** The topic of the refused publish, when the error is about one. */
  topic?: string
  /** The MQTT packet id of the refused publish (QoS 1/2), when known. */
  mid?: number
  /** The request or client message id the error answers, when known. */
  ref?: string
  /** With `out_of_order`: the number `n` the service expects next from the send's `epoch`. */
  next?: number
}

// ---------------------------------------------------------------------------
// Error codes
// ---------------------------------------------------------------------------

/**
 * Every error code a client can receive, with its meaning. Codes are stable:
 * never rename one; add new ones. `docs/errors.md` documents each.
 */
export const ErrorCodes = {
  payload_too_large: 'The publish payload is larger than the configured maximum (`maxPayload`); it was not routed.',
  rate_limited: 'The client publishes faster than its allowed rate (`publishRate`, `publishBurst`); the message was not routed.',
  not_authorized: 'The client may not publish to this topic; the message was not routed. Also: a request\'s MQTT 5 Response Topic is not a device topic of the requester\'s own; the request was not carried out.',
  too_many_subscriptions: 'The client already holds the maximum number of subscriptions (`maxSubscriptions`).',
  bad_request: 'The payload or request is malformed: not JSON, not an object, a field is missing or mistyped, or a chat message\'s MQTT 5 user properties are over their limits (the message names it). Nothing was stored.',
  unknown_type: 'The envelope has a type `t` or a request `op` the message service does not know.',
  not_member: 'The sender is not a member of the conversation it writes to or reads from.',
  not_found: 'The conversation, group or user does not exist.',
  forbidden: 'The member\'s group role does not allow the operation (for example, a member renaming the group).',
  conflict: 'The change clashes with what is there (an admin API call: the user already exists, the token is already revoked); nothing changed.',
  out_of_order: 'A numbered send (`epoch`, `n`) came before an earlier send of the same epoch was stored (it was lost on the way); it was not stored. Send again, in order, from the number in the notice\'s `next` (the SDK does this by itself).',
  unavailable: 'The message service is stopping; retry later (the SDK does this by itself).',
  internal: 'An unexpected server error; the request had no effect and may be retried.'
} as const
export type ErrorCode = keyof typeof ErrorCodes

export function isErrorCode (code: string): code is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ErrorCodes, code)
}

/** MQTT 3.1.1 CONNACK return codes Warbler uses, with when it uses them. */
export const ConnackCodes = {
  1: 'unacceptable protocol version',
  2: 'identifier rejected: the client id is not valid for this user (see docs/protocol.md)',
  3: 'server unavailable: connection limits reached (too many connections, or too many from this address)',
  4: 'bad user name or password, or an invalid, expired or revoked token; also while login is rate-limited',
  5: 'not authorized: anonymous connect outside development mode'
} as const

// ---------------------------------------------------------------------------
// Conversations and frames of the message service
// ---------------------------------------------------------------------------

/** Direct conversations are `d:{a}:{b}` with a < b; groups are `g:{id}`. */
export type ConversationId = string

export const GROUP_ID_PATTERN = /^g:[a-z0-9]{1,32}$/

export function directConversation (a: string, b: string): ConversationId {
  return a < b ? `d:${a}:${b}` : `d:${b}:${a}`
}

/** The two users of a direct conversation id, or null if it is not one. */
export function directMembers (conv: string): [string, string] | null {
  const m = /^d:([a-z][a-z0-9_.]{0,31}):([a-z][a-z0-9_.]{0,31})$/.exec(conv)
  if (m === null || !((m[1] as string) < (m[2] as string))) return null
  return [m[1] as string, m[2] as string]
}

export function isConversationId (conv: string): boolean {
  return GROUP_ID_PATTERN.test(conv) || directMembers(conv) !== null
}

/** Client message ids: 1-64 characters of A-Z a-z 0-9 _ - . : */
export const CLIENT_MESSAGE_ID_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/
/** Send epochs (`SendFrame.epoch`): 1-32 characters of the same alphabet. */
export const SEND_EPOCH_PATTERN = /^[A-Za-z0-9_.:-]{1,32}$/
/** Request ids: same alphabet. @alias */
export const REQUEST_ID_PATTERN = CLIENT_MESSAGE_ID_PATTERN

export type GroupRole = 'owner' | 'admin' | 'member'

/** A chat message a client sends (on `wb/u/{me}/out`, QoS 1). */
export interface SendFrame {
  t: 'msg'
  /** Client message id: unique per sender; a retry with the same id is stored once. */
  cid: string
  /** The recipient user of a direct message, or... */
  to?: string
  /** ...the conversation (`d:a:b` or `g:id`). */
  conv?: ConversationId
  /** Any JSON value; a string, or an object's `text` field, is what search finds. */
  body: unknown
  /**
   * Optional, with `n`: an id the sender picked for a run of numbered sends
   * (the SDK: one per client instance). The service stores the sends of one
   * epoch in the order of `n` and refuses one that comes before an earlier
   * one (`out_of_order`); a send without them is stored as it comes.
   */
  epoch?: string
  /** The send's number in its epoch: 1, 2, 3, ... in the order sent. */
  n?: number
}

/** A typing notice (ephemeral: never stored; rate-limited). */
export interface TypingFrame { t: 'typing', conv: ConversationId }

/** A request to the message service; the reply goes to `wb/d/{clientId}`. */
export interface RequestFrame {
  t: 'req'
  id: string
  op: RequestOp
  [param: string]: unknown
}

export const RequestOps = [
  'history', 'sync', 'search', 'convs', 'unread', 'read', 'delivered', 'receipts', 'presence',
  'group.create', 'group.rename', 'group.add', 'group.remove', 'group.leave', 'group.role', 'group.members'
] as const
export type RequestOp = typeof RequestOps[number]

export type ClientFrame = SendFrame | TypingFrame | RequestFrame

/** A stored chat message as every member receives it on its inbox. */
export interface MessageFrame {
  t: 'msg'
  /** Server id, unique across conversations. */
  id: string
  conv: ConversationId
  /** Position in the conversation: 1, 2, 3, ... with no gaps. */
  seq: number
  /** The sender, as the broker authenticated it; `system` for membership events. */
  from: string
  /** Server time, milliseconds since the epoch. */
  ts: number
  /** The sender's client message id (not on system messages). */
  cid?: string
  body: unknown
  /** The MQTT 5 user properties the sender gave the message, when it gave any. */
  props?: UserProperties
}

/** Sent to the sending connection once a message is stored. */
export interface AckFrame { t: 'ack', cid: string, conv: ConversationId, seq: number, id: string, ts: number }

/** The answer to a request. */
export interface ResultFrame { t: 'res', id: string, data: unknown }

/** Read or delivery watermark of a member, sent to the other members. */
export interface ReceiptFrame { t: 'receipt', conv: ConversationId, user: string, read?: number, delivered?: number }

export interface PresenceFrame { t: 'presence', user: string, online: boolean, lastSeen: number }

export interface TypingEvent { t: 'typing', conv: ConversationId, user: string }

/**
 * Several frames in one publish, only on the feed topics (`wb/u/{user}/feed`,
 * `wb/d/{clientId}/feed`): the messages of one commit for one user, or the
 * acks of one commit for one device, in order. Never nested.
 */
export interface BatchFrame { t: 'batch', frames: SingleFrame[] }

/** Most frames in one batch frame. */
export const BATCH_MAX_FRAMES = 256
/** Most bytes of one batch frame's JSON; a frame longer than this alone travels alone. */
export const BATCH_MAX_BYTES = 64 * 1024

export type SingleFrame = MessageFrame | AckFrame | ResultFrame | ErrorFrame | ReceiptFrame | PresenceFrame | TypingEvent
export type ServerFrame = SingleFrame | BatchFrame

// ---- Answers: the `data` of each request's `res` (docs/protocol.md, "Requests") ----

export interface HistoryPage { messages: MessageFrame[], more: boolean }

export interface SyncResult {
  conversations: Array<{ conv: string, lastSeq: number, readSeq: number }>
  messages: MessageFrame[]
  truncated: string[]
}

export interface ConversationSummary {
  conv: string
  kind: 'direct' | 'group'
  name: string | null
  role: string
  lastSeq: number
  lastTs: number
  readSeq: number
  deliveredSeq: number
  unread: number
  last: MessageFrame | null
}

export interface Unread { total: number, conversations: Record<string, number> }
export interface Receipt { user: string, read: number, delivered: number }
export interface Presence { user: string, online: boolean, lastSeen: number | null }
export interface GroupInfo { conv: string, name: string | null, members: Array<{ user: string, role: string }> }
