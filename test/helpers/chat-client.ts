/**
 * A small chat client for tests, on mqtt.js and the documented protocol only
 * (no SDK): it subscribes to its inbox and device topic (or, with `feed`, to
 * the feed topics, whose batch frames it unpacks), sends messages and
 * requests, and collects what arrives.
 */
import mqtt, { type MqttClient } from 'mqtt'
import type {
  AckFrame, ConversationSummary, ErrorFrame, GroupInfo, HistoryPage, MessageFrame, Presence, Receipt, RequestOp, ServerFrame,
  SingleFrame, SyncResult, Unread
} from '../../sdk/src/protocol.js'

/** The `data` of each request's answer (docs/protocol.md, "Requests"), as the SDK's client types them. */
export interface Answers {
  history: HistoryPage
  sync: SyncResult
  search: { messages: MessageFrame[] }
  convs: { conversations: ConversationSummary[] }
  unread: Unread
  read: { conv: string, seq: number }
  delivered: { conv: string, seq: number }
  receipts: { members: Receipt[] }
  presence: { users: Presence[] }
  'group.create': { conv: string, seq: number }
  'group.rename': { seq: number }
  'group.add': { seq: number | null, added: string[] }
  'group.remove': { seq: number | null, removed: string[] }
  'group.leave': { seq: number, owner?: string }
  'group.role': { seq: number }
  'group.members': GroupInfo
}

let counter = 0

export class ChatClient {
  /** Single frames; a batch frame's frames each with its topic. */
  readonly frames: Array<{ topic: string, frame: SingleFrame }> = []
  /** Publishes received, by topic. */
  readonly publishes = new Map<string, number>()
  private readonly waiters = new Set<() => void>()

  private constructor (readonly mqtt: MqttClient, readonly user: string, readonly clientId: string) {
    mqtt.on('message', (topic, payload) => {
      let frame: ServerFrame
      try { frame = JSON.parse(payload.toString('utf8')) as ServerFrame } catch { return }
      this.publishes.set(topic, (this.publishes.get(topic) ?? 0) + 1)
      for (const f of frame.t === 'batch' ? frame.frames : [frame]) this.frames.push({ topic, frame: f })
      for (const w of [...this.waiters]) w()
    })
  }

  static async connect (url: string, user: string, password: string, opts: { device?: string, clean?: boolean, feed?: boolean, protocolVersion?: 4 | 5, rejectUnauthorized?: boolean } = {}): Promise<ChatClient> {
    const clientId = `${user}-${opts.device ?? `t${++counter}`}`
    const client = mqtt.connect(url, {
      username: user, password, clientId, clean: opts.clean ?? true, reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: opts.protocolVersion ?? 4,
      ...(opts.rejectUnauthorized !== undefined ? { rejectUnauthorized: opts.rejectUnauthorized } : {})
    })
    // Listen before CONNACK: a persistent session's queued messages follow it at once.
    const chat = new ChatClient(client, user, clientId)
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve())
      client.once('error', reject)
    })
    const feed = opts.feed === true ? '/feed' : ''
    await client.subscribeAsync([`wb/u/${user}/${feed === '' ? 'inbox' : 'feed'}`, `wb/d/${clientId}${feed}`], { qos: 1 })
    return chat
  }

  /** Chat messages received on the inbox (or feed), in arrival order. */
  get messages (): MessageFrame[] {
    return this.frames.filter((f) => f.frame.t === 'msg' && (f.topic.endsWith('/inbox') || f.topic === `wb/u/${this.user}/feed`)).map((f) => f.frame as MessageFrame)
  }

  /** Wait until `pred` holds over what was received, or fail after timeoutMs. */
  async until<T> (pred: () => T | undefined | false, timeoutMs = 5000, what = 'condition'): Promise<T> {
    const now = pred()
    if (now !== undefined && now !== false) return now
    return await new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => { this.waiters.delete(check); reject(new Error(`${this.user}: timed out waiting for ${what}`)) }, timeoutMs)
      const check = (): void => {
        const v = pred()
        if (v !== undefined && v !== false) { clearTimeout(timer); this.waiters.delete(check); resolve(v) }
      }
      this.waiters.add(check)
    })
  }

  /** Publish raw bytes on the user's out topic. */
  async publishRaw (payload: string | Buffer, qos: 0 | 1 = 1): Promise<void> {
    await this.mqtt.publishAsync(`wb/u/${this.user}/out`, payload, { qos })
  }

  /** Send a chat message; resolves with the ack or the error frame for its cid. */
  async send (target: { to: string } | { conv: string }, body: unknown, cid = `c${++counter}-${Date.now()}`): Promise<AckFrame | ErrorFrame> {
    await this.publishRaw(JSON.stringify({ t: 'msg', cid, ...target, body }))
    return await this.until(() => {
      const f = this.frames.find((x) => (x.frame.t === 'ack' && x.frame.cid === cid) || (x.frame.t === 'error' && x.frame.ref === cid))
      return f?.frame as AckFrame | ErrorFrame | undefined
    }, 5000, `ack of ${cid}`)
  }

  /** Send and expect success. */
  async sendOk (target: { to: string } | { conv: string }, body: unknown, cid?: string): Promise<AckFrame> {
    const r = await this.send(target, body, cid)
    if (r.t !== 'ack') throw new Error(`send refused: ${r.code} ${r.message}`)
    return r
  }

  /**
   * A request; resolves with `data`, or rejects with the error frame's code.
   * A known op's answer has its type; any other op (a test of refusals) or
   * an explicit type argument gives what the test says it expects.
   */
  async req<K extends RequestOp> (op: K, params?: Record<string, unknown>): Promise<Answers[K]>
  async req<T = unknown> (op: string, params?: Record<string, unknown>): Promise<T>
  async req (op: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = `r${++counter}`
    await this.publishRaw(JSON.stringify({ t: 'req', id, op, ...params }))
    const f = await this.until(() => this.frames.find((x) => (x.frame.t === 'res' && x.frame.id === id) || (x.frame.t === 'error' && x.frame.ref === id))?.frame,
      5000, `reply to ${op}`)
    if (f.t === 'error') throw Object.assign(new Error(`${op}: ${f.code}: ${f.message}`), { code: f.code })
    return (f as { data: unknown }).data
  }

  async close (): Promise<void> {
    await this.mqtt.endAsync(true)
  }
}
