/**
 * The message service: turns what clients publish on `wb/u/{user}/out/{clientId}`
 * (the broker appends the client id) into stored, sequenced, delivered chat.
 *
 * - A send is validated, stored by the writer (group commit), then delivered
 *   to the inbox of every member (QoS 1), then acknowledged to the sending
 *   connection with its seq. Nothing is delivered or acknowledged before it is
 *   committed; a retry with the same client message id gets the first ack.
 * - Requests are answered on the sender's device topic, or on the MQTT 5
 *   Response Topic the request names (one of the sender's device topics),
 *   with its Correlation Data.
 * - Typing notices and presence are ephemeral (QoS 0, never stored, with an
 *   MQTT 5 Message Expiry Interval so that no queue keeps them long).
 *
 * The service does not know how it is connected: a Transport publishes for
 * it (in the broker's process, or as an MQTT client of one or more brokers).
 */
import path from 'node:path'
import {
  type ErrorCode, type ErrorFrame, type PresenceFrame, PRESENCE_EXPIRY_S, type PublishProperties, type RequestFrame, type ResultFrame,
  TYPING_EXPIRY_S, type TypingEvent
} from '@warbler/sdk/protocol'
import { Database } from '../shared/sqlite.js'
import { DB_FILE } from '../shared/data-dir.js'
import type { Logger } from '../shared/log.js'
import { bodyText, checkBody, checkResponseTopic, checkUserProperties, decodePayload, frameRef, parseFrame, resolveSend } from './frames.js'
import { handleRequest, type RequestContext } from './request-handlers.js'
import type { RedisMirror } from './redis-mirror.js'
import { migrate } from './archive/schema.js'
import { Checkpointer } from './archive/checkpoint.js'
import { ArchiveReader } from './archive/reader.js'
import { ArchiveWriter } from './archive/writer.js'
import { OutOfOrderError, ServiceError } from './archive/archive-errors.js'
import { pruneSendOrder, SEND_ORDER_KEEP_MS } from './archive/send-order.js'
import { lastSeen } from './archive/write-ops.js'
import { type Audience, Fanout, type Publish } from './fanout.js'

export interface Transport {
  /** Resolves once the broker has routed the message (or queued it for offline sessions). */
  publish: Publish
  /** Who subscribes to what, where the broker can tell (fanout.ts); without it, frames go to both inbox and feed. */
  audience?: Audience
}

export interface ServiceCounters {
  sends: number
  duplicates: number
  requests: number
  syncRequests: number
  searchRequests: number
  typing: number
  deliveries: number
  /** Requests by operation. */
  byOp: Partial<Record<string, number>>
  refusals: Partial<Record<ErrorCode, number>>
  /** Server faults (code `internal`: a failed commit of the archive, a bug), by what they answered; each is logged with its cause. */
  internal: Partial<Record<InternalKind, number>>
}

/** What an `internal` error answered: a send, a request, a typing notice, or a publish not recognised yet. */
export const InternalKinds = ['send', 'request', 'typing', 'other'] as const
type InternalKind = typeof InternalKinds[number]

export interface ServiceOptions {
  dataDir: string
  transport: Transport
  log: Logger
  /** Largest decoded (inflated) payload accepted, bytes. */
  maxPayload: number
  /** The Redis mirror of hot data, when configured. */
  mirror?: RedisMirror
  /**
   * What an acknowledged message survives (the `durability` setting):
   * `process` (default) runs the archive writer's connection with
   * synchronous=NORMAL, `power` with synchronous=FULL (the WAL is synced at
   * every batch commit, before anything of the batch is acknowledged).
   */
  durability?: Durability
}

type Durability = 'process' | 'power'

/** Where the answers to one publish go: its device topic, or the MQTT 5 Response Topic of a request, with its Correlation Data. */
interface Reply { clientId: string, topic?: string, correlationData?: Uint8Array }

/** Where a publish failed, for the log line of an internal error: what is known by then. */
interface Failed { kind: InternalKind, user: string, reply: Reply, conv?: string, op?: string, ref?: string | undefined }

/** How often the WAL is checkpointed (ms): see checkpoint.ts. */
const CHECKPOINT_INTERVAL_MS = 1000

/** How often epochs of numbered sends that moved no more for SEND_ORDER_KEEP_MS are deleted (ms). */
const SEND_ORDER_SWEEP_MS = 3600_000

/** Least time between two typing notices of one user in one conversation (ms). */
const TYPING_INTERVAL_MS = 1000

export class MessageService {
  readonly counters: ServiceCounters = { sends: 0, duplicates: 0, requests: 0, syncRequests: 0, searchRequests: 0, typing: 0, deliveries: 0, byOp: {}, refusals: {}, internal: {} }
  private readonly fanout: Fanout
  private readonly online = new Map<string, number>()
  private readonly lastSeen = new Map<string, number>()
  private readonly typingAt = new Map<string, number>()
  private typingSweep: NodeJS.Timeout
  private readonly orderSweep: NodeJS.Timeout
  private closed = false
  /**
   * Called for each stored send with where its time went (ms): from the
   * publish reaching the service to its commit (queue and COMMIT), and from
   * the commit to its routing to every recipient and the sender's ack.
   */
  onSendStages: ((storedMs: number, routedMs: number) => void) | null = null

  private constructor (
    private readonly opts: ServiceOptions,
    private readonly writeDb: Database,
    private readonly readDb: Database,
    private readonly checkpoints: Checkpointer,
    readonly writer: ArchiveWriter,
    readonly reader: ArchiveReader
  ) {
    this.typingSweep = setInterval(() => {
      const old = Date.now() - 10 * TYPING_INTERVAL_MS
      for (const [k, t] of this.typingAt) if (t < old) this.typingAt.delete(k)
    }, 10 * TYPING_INTERVAL_MS)
    this.typingSweep.unref()
    this.orderSweep = setInterval(() => { void this.pruneSendOrder(Date.now() - SEND_ORDER_KEEP_MS) }, SEND_ORDER_SWEEP_MS)
    this.orderSweep.unref()
    this.fanout = new Fanout(opts.transport.publish, opts.transport.audience, this.counters)
  }

  static async open (opts: ServiceOptions): Promise<MessageService> {
    const file = path.join(opts.dataDir, DB_FILE)
    const writeDb = await Database.open(file, { synchronous: opts.durability === 'power' ? 'FULL' : 'NORMAL' })
    try {
      await migrate(writeDb, { log: opts.log })
    } catch (err) {
      // A refused file (written by a newer Warbler) or a failed upgrade: nothing stays open.
      await writeDb.close().catch(() => {})
      throw err
    }
    const readDb = await Database.open(file)
    const checkpoints = await Checkpointer.start(writeDb, await Database.open(file), CHECKPOINT_INTERVAL_MS, (err) => {
      opts.log.warn('WAL checkpoint failed', { error: String(err) })
    })
    // Delivery needs the service, which needs the writer: the writer's callback reads it once it exists.
    // eslint-disable-next-line prefer-const -- assigned below, after the writer that refers to it
    let svc: MessageService | undefined
    const writer = new ArchiveWriter(writeDb, (stored, receipts) => {
      opts.mirror?.stored(stored)
      return svc?.fanout.deliver(stored, receipts)
    })
    svc = new MessageService(opts, writeDb, readDb, checkpoints, writer, new ArchiveReader(readDb))
    return svc
  }

  private refuse (reply: Reply, code: ErrorCode, message: string, ref?: string, next?: number): void {
    this.counters.refusals[code] = (this.counters.refusals[code] ?? 0) + 1
    const frame: ErrorFrame = { t: 'error', code, message }
    if (ref !== undefined) frame.ref = ref
    if (next !== undefined) frame.next = next
    void this.answer(reply, frame)
  }

  /** An answer or refusal to where `reply` says (QoS 1). */
  private answer (reply: Reply, frame: ErrorFrame | ResultFrame): Promise<unknown> {
    if (reply.topic === undefined) return this.fanout.toDevice(reply.clientId, frame, 1)
    return this.fanout.toTopic(reply.topic, frame, 1, reply.correlationData === undefined ? {} : { correlationData: reply.correlationData })
  }

  /**
   * Handle one publish from a client. Resolves once it is fully handled (a
   * send: stored and acknowledged), which is what paces the broker's routing.
   * A refusal names the send or request it answers (`ref`) whenever the
   * publish is an object with a well-formed `cid` or `id`, however bad the rest.
   * `props` are the publish's MQTT 5 properties, when it had any.
   */
  async handle (user: string, clientId: string, payload: Buffer, props?: PublishProperties): Promise<void> {
    const at: Failed = { kind: 'other', user, reply: { clientId } }
    try {
      const value = decodePayload(payload, this.opts.maxPayload)
      at.ref = frameRef(value)
      const frame = parseFrame(value)
      if (frame.t === 'msg') {
        at.kind = 'send'
        const send = resolveSend(user, frame)
        at.conv = send.conv
        if (typeof frame.body === 'object' && frame.body !== null && 'sys' in frame.body) {
          throw new ServiceError('bad_request', 'body.sys is reserved for system messages')
        }
        checkBody(frame.body)
        const userProps = checkUserProperties(props?.userProperties)
        const order = frame.epoch === undefined || frame.n === undefined ? undefined : { epoch: frame.epoch, n: frame.n }
        const t0 = performance.now()
        const { ack, duplicate, delivered } = await this.writer.send({ user, cid: frame.cid, conv: send.conv, peer: send.peer, body: frame.body, text: bodyText(frame.body), props: userProps, order })
        if (duplicate) this.counters.duplicates++
        else this.counters.sends++
        const t1 = performance.now()
        // Hold the sender until its message is routed to every recipient, so a
        // flood is paced by delivery, not only by storage.
        await Promise.all([delivered, this.fanout.ack(clientId, ack)])
        if (!duplicate) this.onSendStages?.(t1 - t0, performance.now() - t1)
      } else if (frame.t === 'req') {
        at.kind = 'request'
        at.op = frame.op
        if (typeof frame.conv === 'string') at.conv = frame.conv
        if (props?.responseTopic !== undefined) {
          // Refused (on the device topic) unless it is one of the user's own device topics.
          checkResponseTopic(user, props.responseTopic)
          at.reply = { clientId, topic: props.responseTopic }
          if (props.correlationData !== undefined) at.reply.correlationData = props.correlationData
        }
        await this.request(user, at.reply, frame)
      } else {
        at.kind = 'typing'
        at.conv = frame.conv
        await this.typing(user, frame.conv)
      }
    } catch (err) {
      if (err instanceof ServiceError && err.code !== 'internal') {
        this.refuse(at.reply, err.code, err.message, at.ref, err instanceof OutOfOrderError ? err.next : undefined)
        return
      }
      this.internal(at, err)
    }
  }

  /**
   * A server fault (the archive failed to commit, or a bug): logged at error
   * level with its cause and where it happened (never a body), counted, and
   * answered with `internal` and the ref. Never silent.
   */
  private internal (at: Failed, err: unknown): void {
    this.counters.internal[at.kind] = (this.counters.internal[at.kind] ?? 0) + 1
    const fields: Record<string, unknown> = { kind: at.kind, user: at.user, clientId: at.reply.clientId }
    if (at.conv !== undefined) fields.conv = at.conv
    if (at.op !== undefined) fields.op = at.op
    if (at.ref !== undefined) fields.ref = at.ref
    fields.error = err instanceof Error ? err.message : String(err)
    // A storage failure is explained by its message; anything else is a bug, whose stack says where.
    if (!(err instanceof ServiceError) && err instanceof Error && err.stack !== undefined) fields.stack = err.stack
    this.opts.log.error('internal error in the message service', fields)
    this.refuse(at.reply, 'internal', at.kind === 'send'
      ? 'the server failed to store the message; send it again with the same cid (it is never stored twice)'
      : 'the request failed on the server; it had no effect', at.ref)
  }

  private async request (user: string, reply: Reply, r: RequestFrame): Promise<void> {
    this.counters.requests++
    this.counters.byOp[r.op] = (this.counters.byOp[r.op] ?? 0) + 1
    if (r.op === 'sync') this.counters.syncRequests++
    if (r.op === 'search') this.counters.searchRequests++
    const ctx: RequestContext = {
      user,
      reader: this.reader,
      writer: this.writer,
      mirror: this.opts.mirror ?? null,
      presence: async (users) => await this.presenceOf(users)
    }
    const data = await handleRequest(ctx, r)
    await this.answer(reply, { t: 'res', id: r.id, data })
  }

  private async typing (user: string, conv: string): Promise<void> {
    const key = `${user}\u0000${conv}`
    const now = Date.now()
    if (now - (this.typingAt.get(key) ?? 0) < TYPING_INTERVAL_MS) return // rate-limited: dropped quietly
    this.typingAt.set(key, now)
    const members = await this.writer.membersOf(conv)
    if (members === null || !members.has(user)) throw new ServiceError('not_member', `${user} is not a member of ${conv}`)
    this.counters.typing++
    const frame: TypingEvent = { t: 'typing', conv, user }
    void this.fanout.toUsers([...members.keys()].filter((m) => m !== user), frame, 0, { messageExpiryInterval: TYPING_EXPIRY_S })
  }

  /** A device of `user` connected (online) or disconnected. Presence changes on the first and last device. */
  presence (user: string, online: boolean): void {
    if (this.closed) return
    const before = this.online.get(user) ?? 0
    const n = Math.max(0, before + (online ? 1 : -1))
    if (n > 0) this.online.set(user, n)
    else this.online.delete(user)
    if ((before > 0) === (n > 0)) return // another device still holds the state
    const now = Date.now()
    this.lastSeen.set(user, now)
    this.opts.mirror?.presence(user, n > 0, now)
    if (!online) {
      this.writer.op((tx) => lastSeen.store(tx, user, now))
        .catch((err: unknown) => {
          // Nobody waits for this write; the memory copy still answers until a restart.
          if (!(err instanceof ServiceError && err.code === 'unavailable')) this.opts.log.error('storing when a user was last seen failed', { user, error: err instanceof Error ? err.message : String(err) })
        })
    }
    const frame: PresenceFrame = { t: 'presence', user, online: n > 0, lastSeen: now }
    this.reader.directPeers(user).then((peers) => {
      void this.fanout.toUsers(peers, frame, 0, { messageExpiryInterval: PRESENCE_EXPIRY_S })
    }, () => {})
  }

  async presenceOf (users: string[]): Promise<Array<{ user: string, online: boolean, lastSeen: number | null }>> {
    const out = []
    for (const u of users) {
      const seen = this.lastSeen.get(u) ?? await this.reader.lastSeen(u)
      out.push({ user: u, online: this.online.has(u), lastSeen: seen })
    }
    return out
  }

  /**
   * The archive writer connection's `PRAGMA synchronous`, as SQLite reports
   * it: 1 (NORMAL) or 2 (FULL). For checks and tests of the durability setting.
   */
  async writerSynchronous (): Promise<number> {
    const row = await this.writeDb.get<{ synchronous: number }>('PRAGMA synchronous')
    return Number(row?.synchronous)
  }

  /**
   * Forget the epochs of numbered sends that moved no more since `before`
   * (ms): the table stays bounded by the senders of the last days. The number
   * deleted; 0 when the service is stopping.
   */
  async pruneSendOrder (before: number): Promise<number> {
    try {
      return await this.writer.op(async (tx) => {
        const n = await pruneSendOrder(tx, before)
        this.writer.order.forget()
        return n
      })
    } catch (err) {
      if (!(err instanceof ServiceError && err.code === 'unavailable')) this.opts.log.error('deleting old epochs of numbered sends failed', { error: err instanceof Error ? err.message : String(err) })
      return 0
    }
  }

  /** Finish queued writes, then close the database connections. Idempotent. */
  async close (): Promise<void> {
    if (this.closed) return
    this.closed = true
    clearInterval(this.typingSweep)
    clearInterval(this.orderSweep)
    await this.writer.close()
    await this.checkpoints.close()
    await this.writeDb.close()
    await this.readDb.close()
  }
}
