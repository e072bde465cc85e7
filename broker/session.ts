/**
 * What the broker knows about one connected client, attached when it
 * authenticates and read by every authorization hook.
 */
import type { Client } from 'aedes'
import type { TokenBucket } from './limits.js'

export type AuthMethod = 'password' | 'jwt' | 'device_token' | 'anonymous'

export interface Session {
  /** Authenticated user name; null for an anonymous (development mode) client. */
  readonly user: string | null
  readonly admin: boolean
  /** The message service's account: reads `wb/u/+/out/+` and `$SYS` client events, writes inboxes and device topics. */
  readonly service: boolean
  readonly method: AuthMethod
  /** The device token's id when it logged in with one (to cut it off when revoked). */
  readonly tokenId?: string
  /** The access token's password fingerprint and web login when it logged in with one (to cut it off at a new password or logout). */
  readonly jwt?: { pwv?: string, sid?: string }
  readonly clientId: string
  readonly address: string
  /** `wb/u/{user}/`, precomputed for the ACL. */
  readonly userPrefix: string | null
  /** Per-client publish rate; null when unlimited. */
  readonly publishBucket: TokenBucket | null
  /** Last time (ms) an error notice went to this client, to rate-limit notices. */
  lastNotice: number
  /** Notices suppressed since lastNotice. */
  suppressedNotices: number
}

const sessions = new WeakMap<Client, Session>()

export function getSession (client: Client | null | undefined): Session | undefined {
  return client == null ? undefined : sessions.get(client)
}

export function setSession (client: Client, session: Session): void {
  sessions.set(client, session)
}

/** The remote address of a client's connection (TCP, TLS or WebSocket). */
export function remoteAddress (client: Client): string {
  const conn = client.conn as { remoteAddress?: string }
  return client.req?.socket?.remoteAddress ?? conn.remoteAddress ?? 'unknown'
}
