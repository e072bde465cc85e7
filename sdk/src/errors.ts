/**
 * Errors are classes with stable codes; an app never parses a message.
 * Server-side codes are those of `ErrorCodes` (docs/errors.md); the SDK adds
 * its own for what happens on the client side.
 */
import type { ErrorCode } from './protocol.js'

/** Codes the SDK itself raises. */
export const ClientErrorCodes = {
  auth_failed: 'The server refused the login (bad user name, password or token).',
  connection_lost: 'The connection dropped before the server answered.',
  timeout: 'The server did not answer in time.',
  closed: 'The client was closed.',
  invalid_argument: 'An argument passed to the SDK is invalid.',
  listener_failed: 'A listener added with on() threw; the SDK went on (the exception is the cause).'
} as const
export type ClientErrorCode = keyof typeof ClientErrorCodes

export class WarblerError extends Error {
  override name = 'WarblerError'
  constructor (readonly code: ErrorCode | ClientErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}

/** The server refused a send or request; `code` is from docs/errors.md. */
export class ServerError extends WarblerError {
  override name = 'ServerError'
  constructor (override readonly code: ErrorCode, message: string, readonly ref?: string) { super(code, message) }
}

/** Login refused; `returnCode` is the MQTT CONNACK return code (see docs/protocol.md). */
export class AuthError extends WarblerError {
  override name = 'AuthError'
  constructor (readonly returnCode: number, message: string) { super('auth_failed', message) }
}

export class ConnectionLostError extends WarblerError {
  override name = 'ConnectionLostError'
  constructor (message = 'the connection dropped before the server answered') { super('connection_lost', message) }
}

export class TimeoutError extends WarblerError {
  override name = 'TimeoutError'
  constructor (what: string, ms: number) { super('timeout', `${what}: no answer within ${ms} ms`) }
}

export class ClosedError extends WarblerError {
  override name = 'ClosedError'
  constructor () { super('closed', 'the client is closed') }
}

export class InvalidArgumentError extends WarblerError {
  override name = 'InvalidArgumentError'
  constructor (message: string) { super('invalid_argument', message) }
}

/** An app's listener threw: reported as an `error` event; `cause` is what it threw, `event` the event it was handling. */
export class ListenerError extends WarblerError {
  override name = 'ListenerError'
  constructor (readonly event: string, cause: unknown) {
    super('listener_failed', `a '${event}' listener threw: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
  }
}

/** Server codes after which a send is worth retrying (the request had no effect). */
export function isRetryable (code: string): boolean {
  return code === 'internal' || code === 'unavailable' || code === 'rate_limited'
}

/** Any failure as a WarblerError (what is not one already is a lost connection). */
export function asWarblerError (err: unknown): WarblerError {
  return err instanceof WarblerError ? err : new WarblerError('connection_lost', String(err), { cause: err })
}
