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
 * It owns its own SQLite connection; readers use another (reader.ts).
 *
 * A batch costs a fixed handful of statements, whatever its size: the sends'
 * message rows and read watermarks are collected in memory while the batch
 * runs and written by one multi-row statement each (a JSON array through
 * `json_each`, prepared once), just before any other statement of the batch
 * and before COMMIT, so statements still apply in the order of the items.
 *
 * Under load the event loop is busy with MQTT work, and every statement's
 * completion waits for the loop's current turn; so a batch of sends goes to
 * SQLite as one INSERT committed on its own (one trip; the schema's trigger
 * moves conversations and watermarks), and batches are pipelined: the next
 * one is written while the previous one is delivered (see `apply` and `loop`).
 */
import type { AckFrame, GroupRole, MessageFrame, ReceiptFrame } from '@warbler/sdk/protocol'
import type { Database } from '../../shared/sqlite.js'
import { OutOfOrderError, ServiceError } from './archive-errors.js'
import { newMessageId } from './message-id.js'
import { jsonParam, SQL_CONV, SQL_CONV_MEMBERS, SQL_CONVS, SQL_EXISTING, SQL_INSERT, SQL_MARKS, SQL_NEW_CONV, SQL_NEW_MEMBER, SQL_USER_EXISTS, wellFormed } from './batch-sql.js'
import { orderKey, orderRow, SendOrder, SQL_INSERT_ORDERED } from './send-order.js'
import type { ConvState, SendInput, SendResult, StoredMessage, StoredReceipt, Tx, WriterStats } from './tx.js'

export type { ConvState, SendInput, SendResult, StoredMessage, StoredReceipt, Tx, WriterStats } from './tx.js'

interface Item {
  run: (tx: Tx, existing: Map<string, AckFrame>) => Promise<unknown>
  resolve: (v: unknown) => void
  reject: (e: unknown) => void
  /** For sends: the dedup key, looked up for the whole batch in one query. */
  key?: { user: string, cid: string }
}

const RING = 2048

/** Thrown inside a one-step batch by an item that needs a statement run in the transaction. */
class NeedsTransaction extends Error {}

/** A batch after its commit: what it produced, or null and why it failed. */
interface Committed { batch: Item[], applied: Applied | null, ms: number, error?: ServiceError }

/** What a committed batch produced. */
interface Applied {
  stored: StoredMessage[]
  receipts: StoredReceipt[]
  after: Array<() => void>
  outcomes: Array<{ ok: true, value: unknown } | { ok: false, error: unknown }>
}

export class ArchiveWriter {
  private queue: Item[] = []
  private flushing: Promise<void> | null = null
  private readonly cache = new Map<string, ConvState>()
  private readonly users = new Map<string, boolean>()
  /** The last n taken of each numbered sender's epoch (send-order.ts). */
  readonly order: SendOrder
  private closed = false
  /** Called after each committed batch with its latency (ms) and size. */
  onBatch: ((ms: number, size: number) => void) | null = null
  readonly stats: WriterStats = { batches: 0, lastBatchSize: 0, maxBatchSize: 0, stored: 0, oneStep: 0, latencies: [], batchSizes: [] }

  constructor (
    private readonly db: Database,
    /**
     * Publishes a batch's committed messages, then the receipts of the
     * watermarks it moved; returns a promise per message id, settled once routed.
     */
    private readonly onCommitted: (messages: StoredMessage[], receipts: StoredReceipt[]) => Map<string, Promise<unknown>> | undefined,
    private readonly maxBatch = 2048
  ) {
    this.order = new SendOrder(db)
  }

  /**
   * Store a chat message, once per (user, cid). A numbered one (`order`) only
   * as the next of its epoch: one that comes early is refused with the number
   * expected (`out_of_order`); one numbered at or below the last taken is a
   * repeat, answered as any send is (its first ack, or stored if it never was).
   */
  send (input: SendInput): Promise<SendResult> {
    return this.enqueue<SendResult>({ user: input.user, cid: input.cid }, async (tx, existing) => {
      const dup = existing.get(`${input.user}\u0000${input.cid}`)
      const order = input.order
      const last = order === undefined ? 0 : await tx.lastSent(input.user, order.epoch)
      if (dup !== undefined) {
        // Stored, so everything sent before it was taken too.
        if (order !== undefined && order.n > last) tx.sent(input.user, order.epoch, order.n)
        return { ack: dup, duplicate: true, delivered: Promise.resolve() }
      }
      if (order === undefined || order.n <= last) return await this.store(tx, input, existing)
      if (order.n > last + 1) throw new OutOfOrderError(last + 1, `send ${order.n} of epoch ${order.epoch} came before ${last + 1}, which is not stored: send again from ${last + 1}`)
      try {
        const stored = await this.store(tx, input, existing)
        tx.sent(input.user, order.epoch, order.n)
        return stored
      } catch (err) {
        // Refused for good (not a member...): the next one may come.
        if (err instanceof ServiceError) tx.sent(input.user, order.epoch, order.n)
        throw err
      }
    })
  }

  private async store (tx: Tx, input: SendInput, existing: Map<string, AckFrame>): Promise<SendResult> {
    let conv = await tx.conv(input.conv)
    if (conv === null) {
      if (input.peer === null) throw new ServiceError('not_found', `no conversation ${input.conv}`)
      if (!(await tx.userExists(input.peer))) throw new ServiceError('not_found', `no user ${input.peer}`)
      conv = await tx.createConversation(input.conv, 'direct', null, [[input.user, 'member'], [input.peer, 'member']])
    }
    if (!conv.members.has(input.user)) throw new ServiceError('not_member', `${input.user} is not a member of ${input.conv}`)
    const frame = await tx.append(conv, input.user, input.cid, input.body, input.text, input.props)
    // What one sends, one has read (and so has had delivered).
    tx.markRead(conv, input.user, frame.seq)
    const ack: AckFrame = { t: 'ack', cid: input.cid, conv: frame.conv, seq: frame.seq, id: frame.id, ts: frame.ts }
    existing.set(`${input.user}\u0000${input.cid}`, ack) // a second copy in the same batch
    return { ack, duplicate: false, delivered: Promise.resolve() }
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
    // A pipeline of two: while SQLite writes a batch (on its thread), the
    // previous one is published (on the event loop). Deliveries keep the
    // order of the batches: a batch is published only after the one before it.
    let prev: Committed | null = null
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch)
      let submitted: () => void = () => {}
      const onItsWay = new Promise<void>((resolve) => { submitted = resolve })
      const running = this.commit(batch, submitted)
      if (prev !== null) {
        await Promise.race([onItsWay, running])
        this.publish(prev)
      }
      prev = await running
    }
    if (prev !== null) this.publish(prev)
    this.flushing = null
  }

  private async lookupExisting (batch: Item[]): Promise<Map<string, AckFrame>> {
    const keys: Array<[string, string]> = []
    for (const i of batch) if (i.key !== undefined) keys.push([i.key.user, i.key.cid])
    const found = new Map<string, AckFrame>()
    if (keys.length === 0) return found
    const rows = await (await this.db.prepare(SQL_EXISTING)).all<{ sender: string, cid: string, conv: string, seq: number, id: string, ts: number }>([jsonParam(keys)])
    for (const r of rows) found.set(`${r.sender}\u0000${r.cid}`, { t: 'ack', cid: r.cid, conv: r.conv, seq: r.seq, id: r.id, ts: r.ts })
    return found
  }

  /** Apply and commit a batch; `submitted` is called once its last statement is on its way to SQLite. Never rejects. */
  private async commit (batch: Item[], submitted: () => void): Promise<Committed> {
    const started = performance.now()
    try {
      // A batch of sends alone is tried in one step first; anything else, or
      // a batch that step declines, runs statement by statement. Small
      // batches too: at a moderate rate (5,000 msg/s in batches of tens) the
      // six trips through a busy event loop were most of a send's latency.
      const applied = (batch.every((i) => i.key !== undefined) ? await this.apply(batch, true, submitted) : null) ??
        await this.apply(batch, false, submitted)
      return { batch, applied, ms: performance.now() - started }
    } catch (err) {
      this.cache.clear() // in-memory seqs and members may be ahead of the database
      this.order.forget()
      return { batch, applied: null, ms: 0, error: new ServiceError('internal', `storage failed: ${(err as Error).message}`) }
    } finally {
      submitted()
    }
  }

  /** Deliver a committed batch and settle its items (synchronously, so batches never interleave). */
  private publish (c: Committed): void {
    const { batch, applied } = c
    if (applied === null) {
      for (const item of batch) item.reject(c.error)
      return
    }
    const { stored, receipts, after, outcomes } = applied
    const s = this.stats
    s.batches++
    s.lastBatchSize = batch.length
    s.maxBatchSize = Math.max(s.maxBatchSize, batch.length)
    s.stored += stored.length
    if (s.latencies.length >= RING) { s.latencies.shift(); s.batchSizes.shift() }
    s.latencies.push(c.ms)
    s.batchSizes.push(batch.length)
    this.onBatch?.(c.ms, batch.length)
    const routed = this.onCommitted(stored, receipts)
    for (const fn of after) fn()
    batch.forEach((item, i) => {
      const o = outcomes[i]
      if (o === undefined) return
      if (o.ok) {
        const v = o.value as Partial<SendResult> | undefined
        const d = v?.ack !== undefined && v.duplicate === false ? routed?.get(v.ack.id) : undefined
        if (d !== undefined) (v as SendResult).delivered = d
        item.resolve(o.value)
      } else item.reject(o.error)
    })
  }

  /**
   * Run a batch's items and commit what they wrote.
   *
   * - In one step (`oneStep`, a batch of sends): the items run against the
   *   in-memory state (reads go to the database, outside any transaction:
   *   this connection is the archive's only writer), then the whole
   *   transaction is one INSERT of the batch's rows, so it costs one trip
   *   through the event loop instead of one per statement (under load, each
   *   trip waits for the loop's current turn: measured, that waiting was most
   *   of a commit's latency). Duplicates from earlier batches are not looked
   *   up: the unique index on (sender, cid) fails the INSERT instead. Returns
   *   null, with nothing written and the in-memory state as before, when the
   *   INSERT fails or an item needs a statement run inside the transaction
   *   (a new conversation); the batch then runs statement by statement.
   * - Statement by statement: BEGIN, the duplicate lookup, each item, the
   *   held-back rows, COMMIT. Throws (after ROLLBACK) when storage fails.
   */
  // eslint-disable-next-line max-lines-per-function -- one transaction, read top to bottom: both ways share the batch's rows, receipts and rollback
  private async apply (batch: Item[], oneStep: boolean, submitted: () => void): Promise<Applied | null> {
    const stored: StoredMessage[] = []
    /** Watermark moves by (conv, user): one receipt each, with where they ended up. */
    const moves = new Map<string, { conv: ConvState, user: string, read?: number, delivered?: number }>()
    const after: Array<() => void> = []
    const touched = new Set<ConvState>()
    /** (lastSeq, lastTs) of each conversation before this batch, to undo a declined step. */
    const before = new Map<ConvState, [number, number]>()
    const outcomes: Applied['outcomes'] = []
    // Writes held back to go out as one statement each: message rows, and
    // read watermarks by (conv, user) (the last one wins, as it would in order).
    let rows: unknown[][] = []
    const marks = new Map<string, [string, string, number]>()
    // Numbered sends taken in this batch (last n by sender and epoch), and
    // the order rows not written yet, one per epoch (the last n wins): with
    // any, the rows go through send_batch.
    const taken = new Map<string, number>()
    const orders = new Map<string, unknown[]>()
    const insertSql = (): string => orders.size > 0 ? SQL_INSERT_ORDERED : SQL_INSERT
    const heldRows = (): unknown[][] => orders.size > 0 ? [...rows, ...orders.values()] : rows
    const db = this.db
    const needsTransaction = (): never => { throw new NeedsTransaction() }
    const moved: Tx['moved'] = (conv, user, to) => {
      const key = `${conv.id}\u0000${user}`
      const m = moves.get(key) ?? { conv, user }
      if (to.read !== undefined) m.read = Math.max(m.read ?? 0, to.read)
      if (to.delivered !== undefined) m.delivered = Math.max(m.delivered ?? 0, to.delivered)
      moves.set(key, m)
    }
    /** The batch's receipts, to the members as of its end (listed once per move, not once per send). */
    const receipts = (): StoredReceipt[] => [...moves.values()].map((m) => {
      const frame: ReceiptFrame = { t: 'receipt', conv: m.conv.id, user: m.user }
      if (m.read !== undefined) frame.read = m.read
      if (m.delivered !== undefined) frame.delivered = m.delivered
      return { frame, recipients: [...m.conv.members.keys()] }
    })
    /** Write what is held back; called before any other statement, so the order holds. */
    const writeHeld = async (): Promise<void> => {
      if (rows.length > 0 || orders.size > 0) {
        const json = jsonParam(heldRows())
        const sql = insertSql()
        rows = []
        orders.clear()
        await (await db.prepare(sql)).run([json])
      }
      if (marks.size > 0) {
        const json = jsonParam([...marks.values()])
        marks.clear()
        await (await db.prepare(SQL_MARKS)).run([json])
      }
    }
    const tx: Tx = {
      conv: async (id) => {
        if (!oneStep && !this.cache.has(id)) await writeHeld()
        return await this.loadConv(id)
      },
      createConversation: async (id, kind, name, members) => {
        if (oneStep) needsTransaction()
        await writeHeld()
        const now = Date.now()
        await db.run(SQL_NEW_CONV, [id, kind, name, now, now])
        for (const [user, role] of members) {
          await db.run(SQL_NEW_MEMBER, [id, user, role, now])
        }
        const c: ConvState = { id, kind, name, lastSeq: 0, lastTs: now, members: new Map(members) }
        this.cache.set(id, c)
        touched.add(c)
        return c
      },
      // eslint-disable-next-line @typescript-eslint/require-await -- async so that a throw reaches the caller as a rejection, as for every Tx method
      append: async (conv, sender, cid, body, text, props) => {
        const ts = Date.now()
        const seq = conv.lastSeq + 1
        const id = newMessageId(ts)
        rows.push([conv.id, seq, id, sender, cid, ts, JSON.stringify(body), wellFormed(text), props === undefined ? null : JSON.stringify(props)])
        if (!before.has(conv)) before.set(conv, [conv.lastSeq, conv.lastTs])
        conv.lastSeq = seq
        conv.lastTs = ts
        touched.add(conv)
        // The body is a JSON value already (parsed from a payload, or built by the service).
        const frame: MessageFrame = { t: 'msg', id, conv: conv.id, seq, from: sender, ts, body }
        if (cid !== null) frame.cid = cid
        if (props !== undefined) frame.props = props
        stored.push({ frame, recipients: [...conv.members.keys()] })
        return frame
      },
      markRead: (conv, user, seq) => {
        marks.set(`${conv.id}\u0000${user}`, [conv.id, user, seq])
        moved(conv, user, { read: seq, delivered: seq })
      },
      moved,
      userExists: async (name) => {
        if (!oneStep && this.users.get(name) !== true) await writeHeld()
        return await this.userExists(name)
      },
      lastSent: async (sender, epoch) => {
        const key = orderKey(sender, epoch)
        return taken.get(key) ?? await this.order.lastOf(key, sender, epoch)
      },
      sent: (sender, epoch, n) => {
        const key = orderKey(sender, epoch)
        const last = Math.max(n, taken.get(key) ?? 0)
        taken.set(key, last)
        orders.set(key, orderRow(sender, epoch, last, Date.now()))
      },
      run: async (sql, params = []) => {
        if (oneStep) needsTransaction()
        await writeHeld()
        return await db.run(sql, params)
      },
      afterCommit: (fn) => { after.push(fn) }
    }
    const runItems = async (existing: Map<string, AckFrame>): Promise<void> => {
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
    }
    const convRows = (): unknown[][] => [...touched].map((c) => [c.id, c.lastSeq, c.lastTs, wellFormed(c.name)])

    if (oneStep) {
      try {
        await runItems(new Map())
        // Sends only: their rows are the whole batch. The schema's trigger
        // moves each conversation and its sender's watermarks as the rows go
        // in (what `markRead` and the conversation rows held here say, the
        // same values), so one prepared INSERT, committed on its own, is the
        // transaction: no script to parse, no BEGIN/COMMIT, no statement
        // journal. It fails whole, as the script did.
        if (rows.length > 0 || orders.size > 0) {
          const insert = await db.prepare(insertSql())
          const done = insert.run([jsonParam(heldRows())])
          submitted()
          await done
        }
        this.stats.oneStep++
        for (const [key, n] of taken) this.order.remember(key, n)
        return { stored, receipts: receipts(), after, outcomes }
      } catch {
        // The statement committed nothing: it ran outside any transaction.
        for (const [c, [seq, ts]] of before) {
          c.lastSeq = seq
          c.lastTs = ts
        }
        return null
      }
    }

    try {
      await db.exec('BEGIN IMMEDIATE')
      await runItems(await this.lookupExisting(batch))
      await writeHeld()
      if (touched.size > 0) await (await db.prepare(SQL_CONVS)).run([jsonParam(convRows())])
      const done = db.exec('COMMIT')
      submitted()
      await done
    } catch (err) {
      await db.exec('ROLLBACK').catch(() => {})
      throw err
    }
    for (const [key, n] of taken) this.order.remember(key, n)
    return { stored, receipts: receipts(), after, outcomes }
  }

  private async loadConv (id: string): Promise<ConvState | null> {
    const cached = this.cache.get(id)
    if (cached !== undefined) return cached
    const row = await this.db.get<{ kind: 'direct' | 'group', name: string | null, last_seq: number, last_ts: number }>(
      SQL_CONV, [id])
    if (row === undefined) return null
    const members = await this.db.all<{ user: string, role: GroupRole }>(SQL_CONV_MEMBERS, [id])
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
    const row = await this.db.get(SQL_USER_EXISTS, [name])
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
