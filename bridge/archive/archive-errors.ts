/**
 * The archive's refusals: an error caused by the request (not a server
 * fault), with the code the client gets. Thrown by writer operations before
 * they change anything, so a refused item leaves its batch intact.
 */
import type { ErrorCode } from '@warbler/sdk/protocol'

/** A refusal caused by the request (not a server fault): no effect, a reason for the client. */
export class ServiceError extends Error {
  override name = 'ServiceError'
  constructor (readonly code: ErrorCode, message: string) { super(message) }
}

/**
 * A backup or restore that cannot go ahead (the file is not a sound Warbler
 * database, the target exists...): the message names the file and the fix.
 * Nothing was changed.
 */
export class BackupError extends Error {
  override name = 'BackupError'
}

/**
 * A numbered send that came before an earlier one of its epoch was stored
 * (`out_of_order`): not stored; the sender sends again from `next`.
 */
export class OutOfOrderError extends ServiceError {
  override name = 'OutOfOrderError'
  constructor (readonly next: number, message: string) { super('out_of_order', message) }
}
