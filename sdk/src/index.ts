/**
 * @warbler/sdk: chat on Warbler without knowing MQTT.
 *
 *   import { Warbler } from '@warbler/sdk'
 *   const client = await Warbler.connect({ url, username, token, device: 'phone' })
 *   client.on('message', (m) => console.log(m.from, m.body))
 *   await client.send({ to: 'bob' }, 'hi')
 */
import { WarblerClient } from './client.js'
import type { ClientOptions } from './client-options.js'

export { WarblerClient, newId } from './client.js'
export type { ClientEvents, MessageStatus, State } from './client.js'
export type { ClientOptions } from './client-options.js'
export { MemoryOutbox } from './outbox.js'
export type { OutboxEntry, OutboxStore } from './outbox.js'
export { backoffDelay } from './backoff.js'
export type { BackoffOptions } from './backoff.js'
export {
  AuthError, ClientErrorCodes, ClosedError, ConnectionLostError, InvalidArgumentError, ListenerError, ServerError, TimeoutError, WarblerError
} from './errors.js'
export type { ClientErrorCode } from './errors.js'
export { directConversation, ErrorCodes } from './protocol.js'
export type {
  AckFrame, ConversationId, ErrorCode, GroupRole, MessageFrame, PresenceFrame, ReceiptFrame, TypingEvent
} from './protocol.js'
export type { ConversationSummary, GroupInfo, HistoryPage, Presence, Receipt, SyncResult, Unread } from './protocol.js'

/** The entry point: `await Warbler.connect(options)`. */
export const Warbler = {
  connect: (options: ClientOptions): Promise<WarblerClient> => WarblerClient.connect(options)
} as const
