/**
 * The client address of an HTTP request, as the web app's logins count and
 * log it (per-address limits and lockout, auth.ts). Without anything in
 * front, the socket's peer. Two things may stand in front and name the real
 * client instead:
 * - a reverse proxy listed in `httpTrustedProxies`: from that peer alone the
 *   last `X-Forwarded-For` entry (the one the proxy itself added; earlier ones
 *   come from the client and prove nothing) is taken. From any other peer the
 *   header is ignored, or anyone could pick a fresh address per guess.
 * - the primary of `warbler start --workers N`, which forwards the logins to
 *   worker 0 over loopback: it names the address it resolved in a header of
 *   its own, with a random key made at start and known only to the node's
 *   processes; without the right key the header is ignored.
 */
import { timingSafeEqual } from 'node:crypto'
import type http from 'node:http'
import { isIP } from 'node:net'

/** The header the primary names the client address in, and the one with its key. */
export const CLIENT_ADDRESS_HEADER = 'x-warbler-client-address'
export const FORWARD_KEY_HEADER = 'x-warbler-forward-key'

export interface AddressTrust {
  /** Peers whose X-Forwarded-For is believed (`httpTrustedProxies`). */
  proxies: readonly string[]
  /** The node's forwarding key (cluster workers only). */
  forwardKey?: string
}

/** An address as the limits key it: IPv4 in IPv6 (`::ffff:1.2.3.4`) as plain IPv4. */
function plain (a: string): string {
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a
}

function header (req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[v.length - 1] : v
}

function keyMatches (given: string | undefined, key: string): boolean {
  if (given === undefined) return false
  const a = Buffer.from(given)
  const b = Buffer.from(key)
  return a.length === b.length && timingSafeEqual(a, b)
}

/** Where a request came from, by the rules above. */
export function clientAddress (req: http.IncomingMessage, trust: AddressTrust): string {
  const peer = plain(req.socket.remoteAddress ?? 'unknown')
  if (trust.forwardKey !== undefined && keyMatches(header(req, FORWARD_KEY_HEADER), trust.forwardKey)) {
    const named = header(req, CLIENT_ADDRESS_HEADER)?.trim() ?? ''
    if (isIP(named) !== 0) return plain(named)
  }
  if (trust.proxies.includes(peer)) {
    const last = (header(req, 'x-forwarded-for') ?? '').split(',').pop()?.trim() ?? ''
    if (isIP(last) !== 0) return plain(last)
  }
  return peer
}
