/**
 * The archive writer: the single authority for sequence numbers, and the only
 * code that writes the archive. Everything that writes (sends, group changes,
 * watermarks) is queued here and applied in order, many items per
 * transaction (group commit): one BEGIN ... COMMIT for a whole batch, and
 * only after COMMIT are senders acknowledged and messages delivered. A
 * sequence number is allocated and its message inserted in the same
 * transaction, so numbers stay contiguous and are never reused, also across
 * a crash: an uncommitted batch was never acknowledged and its numbers were
 * never seen.
 *
 * It owns its own SQLite connection; readers use another (store.ts).
 */
import { randomBytes } from 'node:crypto'
import type { AckFrame, ErrorCode, GroupRole, MessageFrame } from '../sdk/src/protocol.js'
import type { Database } from '../broker/sqlite.js'
import { rowToFrame } from './store.js'

/** A conversation as the writer keeps it in memory. */
export interface ConvState {
  readonly id: string
  readonly kind: 'direct' | 'group'
  name: string | null
  lastSeq: number
  lastTs: number
  /** Members and their roles. */
  members: Map<string, GroupRole>
}

/** A message just committed, with who must receive it. */
export interface StoredMessage {
  frame: MessageFrame
  /** Members at the time it was stored. */
  recipients: string[]
}

/** A refusal caused by the request (not a server fault): no effect, a reason for the client. */
export class ServiceError extends Error {
  override name = 'ServiceError'
  constructor (readonly code: ErrorCode, message: string) { super(message) }
}

/** What an operation may do inside the batch transaction. */
export interface Tx {
  /** The conversation, loaded into the cache if needed; null if it does not exist. */
  conv: (id: string) => Promise<ConvState | null>
  createConversation: (id: string, kind: 'direct' | 'group', name: string | null, members: ReadonlyArray<readonly [string, GroupRole]>) => Promise<ConvState>
  /** Append a message: allocates the next seq, inserts it, queues its delivery after COMMIT. */
  append: (conv: ConvState, sender: string, cid: string | null, body: unknown, text: string) => Promise<MessageFrame>
  userExists: (name: string) => Promise<boolean>
  run: (sql: string, params?: unknown[]) => Promise<{ changes: number }>
  /** Work to do after COMMIT (deliveries of events, replies). */
  afterCommit: (fn: () => void) => void
}

export interface SendInput {
  user: string
  cid: string
  conv: string
  /** For a new direct conversation: the other user, who must exist. */
  peer: string | null
  body: unknown
  text: string
}

export type SendResult = { ack: AckFrame, duplicate: boolean, delivered: Promise<unknown> }

interface Item {
  run: (tx: Tx, existing: Map<string, AckFrame>) => Promise<unknown>
  resolve: (v: unknown) => void
  reject: (e: unknown) => void
  /** For sends: the dedup key, looked up for the whole batch in one query. */
  key?: { user: string, cid: string }
}

export interface WriterStats {
  batches: number
  lastBatchSize: number
  maxBatchSize: number
  stored: number
  /** Recent commit latencies (ms), for percentiles; a ring. */
  latencies: number[]
  batchSizes: number[]
}

const RING = 2048

/** A time-sortable server message id: 48-bit ms time + 64 random bits, base32hex. */
export function newMessageId (now = Date.now()): string {
  const b = Buffer.alloc(14)
  b.writeUIntBE(now, 0, 6)
  randomBytes(8).copy(b, 6)
  let out = ''
  let bits = 0
  let value = 0
  for (const byte of b) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += '0123456789abcdefghijklmnopqrstuv'[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += '0123456789abcdefghijklmnopqrstuv'[(value << (5 - bits)) & 31]
  return out
}

export class ArchiveWriter {
  private queue: Item[] = []
  private flushing: Promise<void> | null = null
  private readonly cache = new Map<string, ConvState>()
  private readonly users = new Map<string, boolean>()
  private closed = false
  /** Called after each committed batch with its latency (ms) and size. */
  onBatch: ((ms: number, size: number) => void) | null = null
  readonly stats: WriterStats = { batches: 0, lastBatchSize: 0, maxBatchSize: 0, stored: 0, latencies: [], batchSizes: [] }

  constructor (
    private readonly db: Database,
    /** Publishes committed messages; returns a promise per message id, settled once routed. */
    private readonly onCommitted: (messages: StoredMessage[]) => Map<string, Promise<unknown>> | undefined,
    private readonly maxBatch = 512
  ) {}

  /** Store a chat message, once per (user, cid). */
  send (input: SendInput): Promise<SendResult> {
    return this.enqueue<SendResult>({ user: input.user, cid: input.cid }, async (tx, existing) => {
      const dup = existing.get(`${input.user}\u0000${input.cid}`)
      if (dup !== undefined) return { ack: dup, duplicate: true, delivered: Promise.resolve() }
      let conv = await tx.conv(input.conv)
      if (conv === null) {
        if (input.peer === null) throw new ServiceError('not_found', `no conversation ${input.conv}`)
        if (!(await tx.userExists(input.peer))) throw new ServiceError('not_found', `no user ${input.peer}`)
        conv = await tx.createConversation(input.conv, 'direct', null, [[input.user, 'member'], [input.peer, 'member']])
      }
      if (!conv.members.has(input.user)) throw new ServiceError('not_member', `${input.user} is not a member of ${input.conv}`)
      const frame = await tx.append(conv, input.user, input.cid, input.body, input.text)
      // What one sends, one has read.
      await tx.run('UPDATE members SET read_seq = ?1, delivered_seq = ?1 WHERE conv = ?2 AND user = ?3', [frame.seq, frame.conv, input.user])
      const ack: AckFrame = { t: 'ack', cid: input.cid, conv: frame.conv, seq: frame.seq, id: frame.id, ts: frame.ts }
      existing.set(`${input.user}\u0000${input.cid}`, ack) // a second copy in the same batch
      return { ack, duplicate: false, delivered: Promise.resolve() }
    })
  }

  /** Run a write operation in order with everything else. */
  op<T> (fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.enqueue<T>(undefined, async (tx) => await fn(tx))
  }

  private enqueue<T> (key: Item['key'], run: Item['run']): Promise<T> {
    if (this.closed) return Promise.reject(new ServiceError('unavailable', 'the message service is stopping'))
    return new Promise<T>((resolve, reject) => {
      const item: Item = { run, resolve: resolve as (v: unknown) => void, reject }
      if (key !== undefined) item.key = key
      this.queue.push(item)
      this.flushing ??= this.loop()
    })
  }

  private async loop (): Promise<void> {
    // Let the current tick's sends join the batch.
    await new Promise((resolve) => setImmediate(resolve))
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch)
      await this.flush(batch)
    }
    this.flushing = null
  }

  private async lookupExisting (batch: Item[]): Promise<Map<string, AckFrame>> {
    const keys = batch.flatMap((i) => i.key === undefined ? [] : [i.key])
    const found = new Map<string, AckFrame>()
    for (let i = 0; i < keys.length; i += 400) {
      const chunk = keys.slice(i, i + 400)
      const rows = await this.db.all<{ sender: string, cid: string, conv: string, seq: number, id: string, ts: number }>(
        `SELECT sender, cid, conv, seq, id, ts FROM messages WHERE (sender, cid) IN (VALUES ${chunk.map(() => '(?, ?)').join(', ')})`,
        chunk.flatMap((k) => [k.user, k.cid]))
      for (const r of rows) found.set(`${r.sender}\u0000${r.cid}`, { t: 'ack', cid: r.cid, conv: r.conv, seq: r.seq, id: r.id, ts: r.ts })
    }
    return found
  }

  private async flush (batch: Item[]): Promise<void> {
    const started = performance.now()
    const stored: StoredMessage[] = []
    const after: Array<() => void> = []
    const touched = new Set<ConvState>()
    const outcomes: Array<{ ok: true, value: unknown } | { ok: false, error: unknown }> = []
    const tx: Tx = {
      conv: (id) => this.loadConv(id),
      createConversation: async (id, kind, name, members) => {
        const now = Date.now()
        await this.db.run('INSERT INTO conversations(id, kind, name, created_at, last_seq, last_ts) VALUES (?, ?, ?, ?, 0, ?)', [id, kind, name, now, now])
        for (const [user, role] of members) {
          await this.db.run('INSERT INTO members(conv, user, role, joined_at) VALUES (?, ?, ?, ?)', [id, user, role, now])
        }
        const c: ConvState = { id, kind, name, lastSeq: 0, lastTs: now, members: new Map(members) }
        this.cache.set(id, c)
        touched.add(c)
        return c
      },
      append: async (conv, sender, cid, body, text) => {
        const ts = Date.now()
        const seq = conv.lastSeq + 1
        const id = newMessageId(ts)
        await this.db.run('INSERT INTO messages(conv, seq, id, sender, cid, ts, body, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
          [conv.id, seq, id, sender, cid, ts, JSON.stringify(body), text])
        conv.lastSeq = seq
        conv.lastTs = ts
        touched.add(conv)
        const frame = rowToFrame({ id, conv: conv.id, seq, sender, cid, ts, body: JSON.stringify(body) })
        stored.push({ frame, recipients: [...conv.members.keys()] })
        return frame
      },
      userExists: (name) => this.userExists(name),
      run: (sql, params = []) => this.db.run(sql, params),
      afterCommit: (fn) => { after.push(fn) }
    }
    try {
      await this.db.exec('BEGIN IMMEDIATE')
      const existing = await this.lookupExisting(batch)
      for (const item of batch) {
        try {
          outcomes.push({ ok: true, value: await item.run(tx, existing) })
        } catch (err) {
          // Operations check before they change anything, so a refusal
          // leaves the batch intact; anything else fails the whole batch.
          if (!(err instanceof ServiceError)) throw err
          outcomes.push({ ok: false, error: err })
        }
      }
      for (const c of touched) {
        await this.db.run('UPDATE conversations SET last_seq = ?, last_ts = ?, name = ? WHERE id = ?', [c.lastSeq, c.lastTs, c.name, c.id])
      }
      await this.db.exec('COMMIT')
    } catch (err) {
      await this.db.exec('ROLLBACK').catch(() => {})
      this.cache.clear() // in-memory seqs and members may be ahead of the database
      const e = new ServiceError('internal', `storage failed: ${(err as Error).message}`)
      for (const item of batch) item.reject(e)
      return
    }
    const ms = performance.now() - started
    const s = this.stats
    s.batches++
    s.lastBatchSize = batch.length
    s.maxBatchSize = Math.max(s.maxBatchSize, batch.length)
    s.stored += stored.length
    if (s.latencies.length >= RING) { s.latencies.shift(); s.batchSizes.shift() }
    s.latencies.push(ms)
    s.batchSizes.push(batch.length)
    this.onBatch?.(ms, batch.length)
    const routed = this.onCommitted(stored)
    for (const fn of after) fn()
    batch.forEach((item, i) => {
      const o = outcomes[i]
      if (o === undefined) return
      if (o.ok) {
        const v = o.value as Partial<SendResult> | undefined
        const d = v?.ack !== undefined && v.duplicate === false ? routed?.get(v.ack.id) : undefined
        if (d !== undefined) (v as SendResult).delivered = d
        item.resolve(o.value)
      }
      else item.reject(o.error)
    })
  }

  private async loadConv (id: string): Promise<ConvState | null> {
    const cached = this.cache.get(id)
    if (cached !== undefined) return cached
    const row = await this.db.get<{ kind: 'direct' | 'group', name: string | null, last_seq: number, last_ts: number }>(
      'SELECT kind, name, last_seq, last_ts FROM conversations WHERE id = ?', [id])
    if (row === undefined) return null
    const members = await this.db.all<{ user: string, role: GroupRole }>('SELECT user, role FROM members WHERE conv = ?', [id])
    const c: ConvState = { id, kind: row.kind, name: row.name, lastSeq: row.last_seq, lastTs: row.last_ts, members: new Map(members.map((m) => [m.user, m.role])) }
    this.cache.set(id, c)
    return c
  }

  /** Members of a conversation as the writer knows them (for typing and receipts). */
  async membersOf (id: string): Promise<Map<string, GroupRole> | null> {
    // Reads through the cache only; a miss loads on the writer's queue so it never
    // interleaves with an open batch transaction.
    const cached = this.cache.get(id)
    if (cached !== undefined) return cached.members
    return await this.op(async (tx) => (await tx.conv(id))?.members ?? null)
  }

  private async userExists (name: string): Promise<boolean> {
    const known = this.users.get(name)
    if (known === true) return true
    const row = await this.db.get('SELECT 1 AS x FROM users WHERE name = ?', [name])
    if (row !== undefined) this.users.set(name, true)
    return row !== undefined
  }

  /** Forget what the writer caches about a removed user. */
  forgetUser (name: string): void { this.users.delete(name) }

  /** Wait for queued work, then refuse more. Idempotent. */
  async close (): Promise<void> {
    this.closed = true
    while (this.flushing !== null) await this.flushing
  }
}
