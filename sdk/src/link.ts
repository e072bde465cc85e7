/**
 * A link: one MQTT connection attempt and what belongs to it alone (whether
 * it got its CONNACK, was subscribed, synced; the frames it received, in
 * order; the payloads published on it and their MQTT packet ids). Everything
 * a link started ends when it closes; nothing waits on a dead link.
 */
import mqtt, { type MqttClient } from 'mqtt'
import { ConnectionLostError, ServerError } from './errors.js'
import { connackReturnCode, pubackErrorCode } from './reason-codes.js'

export const noop = (): void => {}

export interface Link {
  readonly gen: number
  readonly client: MqttClient
  /** Resolves when the link is gone. */
  readonly closed: Promise<void>
  end: () => void
  /** CONNACK accepted. */
  connacked: boolean
  /** Subscribed to the feed and device feed topics: requests may go out. */
  subscribed: boolean
  /** Synced: live messages go straight to the sequencer, and the outbox is sent. */
  ready: boolean
  /** The CONNACK return code of a refused login (MQTT 3.1.1's 1-5, whatever the protocol: reason-codes.ts). */
  refused: number | null
  /** Incoming frames are handled one after the other, in arrival order. */
  frames: Promise<void>
  /** Payloads being published -> their cid or request id; then MQTT packet id -> that id (the broker's refusal notices name the packet id). */
  readonly payloads: Map<string | Uint8Array, string>
  readonly mids: Map<number, string>
}

export interface LinkOptions {
  url: string
  clientId: string
  username: string
  password: string
  /** Seconds. */
  keepalive: number
  /** Milliseconds. */
  connectTimeout: number
  /** 5 (MQTT 5) or 4 (MQTT 3.1.1). */
  protocolVersion: 4 | 5
}

/** What the client is told about a link. */
export interface LinkHandlers {
  /** A payload arrived; the next one waits until this settles. */
  payload: (link: Link, payload: Uint8Array) => Promise<void>
  /** Handling a payload threw. */
  failed: (err: unknown) => void
  /** CONNACK accepted. */
  connected: (link: Link) => void
  /** The connection closed (either side), or the attempt failed. */
  closed: (link: Link) => void
}

/** Dial once (mqtt.js does not reconnect by itself: the client's policy decides). */
export function openLink (gen: number, o: LinkOptions, on: LinkHandlers): Link {
  const client = mqtt.connect(o.url, {
    clientId: o.clientId,
    username: o.username,
    password: o.password,
    clean: false,
    protocolVersion: o.protocolVersion,
    // An MQTT 5 session ends with its connection unless it says otherwise: it
    // never expires here, as an MQTT 3.1.1 persistent session does not.
    ...(o.protocolVersion === 5 ? { properties: { sessionExpiryInterval: 0xFFFFFFFF } } : {}),
    keepalive: o.keepalive,
    reconnectPeriod: 0, // our own policy (backoff.ts), one attempt in flight
    connectTimeout: o.connectTimeout,
    resubscribe: false
  })
  let end = noop
  const closed = new Promise<void>((resolve) => { end = resolve })
  const link: Link = {
    gen, client, closed, end, connacked: false, subscribed: false, ready: false, refused: null,
    frames: Promise.resolve(), payloads: new Map(), mids: new Map()
  }
  client.on('packetsend', (p) => {
    if (p.cmd !== 'publish' || p.messageId === undefined) return
    const id = link.payloads.get(p.payload)
    if (id === undefined) return
    link.payloads.delete(p.payload)
    link.mids.set(p.messageId, id)
  })
  client.on('message', (_topic, payload) => {
    link.frames = link.frames.then(async () => { await on.payload(link, payload) })
      .catch((err: unknown) => { on.failed(err) })
  })
  client.on('connect', () => {
    link.connacked = true
    on.connected(link)
  })
  client.on('error', (err: Error & { code?: unknown }) => {
    // A refused CONNACK (1-5, or MQTT 5's 0x80 and up); other errors (sockets, protocol) just close the link.
    if (!link.connacked && typeof err.code === 'number') link.refused = connackReturnCode(err.code)
  })
  client.on('close', () => { on.closed(link) })
  return link
}

/** `p`, or a ConnectionLostError as soon as the link is gone (mqtt.js keeps a dead link's callbacks forever). */
export async function untilClosed<R> (link: Link, p: Promise<R>): Promise<R> {
  p.catch(noop)
  return await Promise.race([p, link.closed.then(() => { throw new ConnectionLostError() })])
}

/**
 * Publish encoded bytes on a link; `id` (a cid or request id, QoS 1 only) is
 * remembered under the packet id it goes out with. Returns the promise of its
 * PUBACK, which rejects once the link is gone (nobody needs to wait for it),
 * or with a ServerError naming `id` when an MQTT 5 PUBACK refuses the publish.
 */
export function publishBytes (link: Link, topic: string, bytes: Uint8Array, id: string | undefined, qos: 0 | 1): Promise<void> {
  // Node's Buffer when there is one; browsers' mqtt.js takes the bytes as they are.
  const B = (globalThis as { Buffer?: { from: (a: ArrayBufferLike, o: number, l: number) => Uint8Array } }).Buffer
  const payload = (B === undefined ? bytes : B.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)) as Buffer
  if (id !== undefined && qos === 1) link.payloads.set(payload, id)
  const acked = new Promise<void>((resolve, reject) => {
    link.client.publish(topic, payload, { qos }, (err, ack) => {
      link.payloads.delete(payload)
      if (err === undefined || err === null) { resolve(); return }
      const code = (err as Error & { code?: unknown }).code
      if (typeof code === 'number' && code >= 0x80) reject(refusal(code, err, ack, id))
      else reject(new ConnectionLostError(String(err)))
    })
  })
  const done = untilClosed(link, acked)
  done.catch(noop) // the caller may not wait for it
  return done
}

/** A refusing PUBACK as the server's error; its Reason String, when the server sent one, is the message. */
function refusal (reasonCode: number, err: Error, ack: unknown, id: string | undefined): ServerError {
  const hex = `0x${reasonCode.toString(16)}`
  const packet = ack as { properties?: { reasonString?: unknown } } | undefined
  const why = typeof packet?.properties?.reasonString === 'string' ? packet.properties.reasonString : err.message
  return new ServerError(pubackErrorCode(reasonCode), `the server refused the publish (PUBACK ${hex}): ${why}`, id)
}
