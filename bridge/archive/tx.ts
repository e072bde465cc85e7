/**
 * What the archive writer's operations see and produce: the conversation
 * state it keeps in memory, the transaction handle an operation gets
 * (`Tx`), and what a committed batch hands to delivery.
 */
import type { AckFrame, GroupRole, MessageFrame, ReceiptFrame, UserProperties } from '@warbler/sdk/protocol'

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

/**
 * A committed move of a member's read or delivered watermark: the receipt,
 * and the members who get it (all of them, so the mover's other devices
 * learn it too). One per member and conversation per batch, with where the
 * watermarks ended up.
 */
export interface StoredReceipt {
  frame: ReceiptFrame
  recipients: string[]
}

/** What an operation may do inside the batch transaction. */
export interface Tx {
  /** The conversation, loaded into the cache if needed; null if it does not exist. */
  conv: (id: string) => Promise<ConvState | null>
  createConversation: (id: string, kind: 'direct' | 'group', name: string | null, members: ReadonlyArray<readonly [string, GroupRole]>) => Promise<ConvState>
  /** Append a message (with the sender's MQTT 5 user properties, if any): allocates the next seq, inserts it, queues its delivery after COMMIT. */
  append: (conv: ConvState, sender: string, cid: string | null, body: unknown, text: string, props?: UserProperties) => Promise<MessageFrame>
  /**
   * Set a member's read and delivered watermarks to `seq`, past both (written
   * with the batch, in order); the members get a receipt for the move.
   */
  markRead: (conv: ConvState, user: string, seq: number) => void
  /** A member's watermarks moved (to `read` and/or `delivered`): the members get a receipt after COMMIT. */
  moved: (conv: ConvState, user: string, marks: { read?: number, delivered?: number }) => void
  userExists: (name: string) => Promise<boolean>
  /** The last n the archive took of a sender's epoch (numbered sends), as of this point of the batch; 0 if none. */
  lastSent: (sender: string, epoch: string) => Promise<number>
  /** A numbered send was taken (stored, or refused for good): its number is written with the batch's messages. */
  sent: (sender: string, epoch: string, n: number) => void
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
  /** MQTT 5 user properties, checked (frames.ts: checkUserProperties). */
  props?: UserProperties | undefined
  /** A numbered send's epoch and number (docs/protocol.md, "Numbered sends"). */
  order?: { epoch: string, n: number } | undefined
}

export type SendResult = { ack: AckFrame, duplicate: boolean, delivered: Promise<unknown> }

export interface WriterStats {
  batches: number
  lastBatchSize: number
  maxBatchSize: number
  stored: number
  /** Batches committed in one step (the rest went statement by statement). */
  oneStep: number
  /** Recent commit latencies (ms), for percentiles; a ring. */
  latencies: number[]
  batchSizes: number[]
}
