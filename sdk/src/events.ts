/** What the client tells the app: its states and events. */
import type { ServerError, WarblerError } from './errors.js'
import type { AckFrame, MessageFrame, PresenceFrame, ReceiptFrame, TypingEvent } from './protocol.js'

/**
 * `idle` until connect() is called; `connecting` during the first attempt;
 * `connected` once logged in and subscribed; `reconnecting` after a lost link
 * or a failed attempt, until the next `connected`; `closed` for good.
 */
export type State = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed'

export type MessageStatus =
  | { cid: string, status: 'pending' }
  | { cid: string, status: 'sent', ack: AckFrame }
  | { cid: string, status: 'failed', error: ServerError }

export interface ClientEvents {
  /** The connection state changed (changed in one place only). */
  state: (e: { newState: State, oldState: State, error?: WarblerError }) => void
  /**
   * A chat message, in seq order per conversation, each once. Messages that
   * arrive before the first listener is added (during the first sync of
   * `Warbler.connect`) are kept and handed to it.
   */
  message: (m: MessageFrame) => void
  /** A send changed status: pending, sent (with the server's ack), or failed. */
  status: (s: MessageStatus) => void
  receipt: (r: ReceiptFrame) => void
  typing: (t: TypingEvent) => void
  presence: (p: PresenceFrame) => void
  /** Something went wrong that no call is waiting for (a refused login while reconnecting, a listener that threw, ...). */
  error: (e: WarblerError) => void
}
