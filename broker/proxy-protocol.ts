/**
 * The PROXY protocol (HAProxy's, versions 1 and 2), for nodes behind a TCP
 * proxy (`proxyProtocol`): every connection starts with a header naming the
 * client's address, which then stands for the socket's own peer address (the
 * proxy's) everywhere the broker uses it: per-address connection and login
 * limits, logs. A connection without a valid header within
 * PROXY_HEADER_TIMEOUT_MS is closed. A LOCAL header (v2, a proxy's own health
 * check) or an UNKNOWN one (v1) keeps the peer address.
 *
 * Only a proxy may reach a listener that expects the header: anyone else who
 * can connect to it can claim any address.
 */
import { isIP, type Socket } from 'node:net'

const PROXY_HEADER_TIMEOUT_MS = 3000

/** The v2 signature: the first 12 bytes of a v2 header. */
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
const V1_PREFIX = Buffer.from('PROXY ', 'latin1')
/** The longest v1 header, CRLF included (the spec's 107). */
const V1_MAX = 107
/** The longest v2 header accepted: 16 bytes and addresses with TLVs (HAProxy sends a few). */
const V2_MAX = 16 + 2048

export class ProxyHeaderError extends Error {
  override name = 'ProxyHeaderError'
}

/** The client address a header names, or null when it keeps the peer's (LOCAL, UNKNOWN, not TCP). */
export interface ProxyHeader { address: string | null, length: number }

/** Whether `buf` could still become the start of a header. */
function couldStart (buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length)
  return buf.subarray(0, n).equals(prefix.subarray(0, n))
}

/**
 * Parse a header at the start of `buf`: null while more bytes are needed;
 * throws ProxyHeaderError naming what is wrong.
 */
export function parseProxyHeader (buf: Buffer): ProxyHeader | null {
  if (couldStart(buf, V2_SIGNATURE)) return buf.length < 16 ? null : parseV2(buf)
  if (couldStart(buf, V1_PREFIX)) return buf.length < V1_PREFIX.length ? null : parseV1(buf)
  throw new ProxyHeaderError('the connection does not start with a PROXY protocol header')
}

function parseV1 (buf: Buffer): ProxyHeader | null {
  const end = buf.indexOf('\r\n', 0, 'latin1')
  if (end === -1) {
    if (buf.length >= V1_MAX) throw new ProxyHeaderError(`PROXY v1 header: no CRLF within ${V1_MAX} bytes`)
    return null
  }
  if (end + 2 > V1_MAX) throw new ProxyHeaderError(`PROXY v1 header longer than ${V1_MAX} bytes`)
  const parts = buf.toString('latin1', 0, end).split(' ')
  const length = end + 2
  if (parts[1] === 'UNKNOWN') return { address: null, length }
  if (parts.length !== 6) throw new ProxyHeaderError(`PROXY v1 header: expected "PROXY TCP4|TCP6 source destination sport dport", got ${JSON.stringify(parts.join(' ').slice(0, 60))}`)
  const [, family, source, destination, sport, dport] = parts as [string, string, string, string, string, string]
  const want = family === 'TCP4' ? 4 : family === 'TCP6' ? 6 : 0
  if (want === 0) throw new ProxyHeaderError(`PROXY v1 header: unknown protocol ${JSON.stringify(family.slice(0, 16))}`)
  if (isIP(source) !== want || isIP(destination) !== want) throw new ProxyHeaderError(`PROXY v1 header: addresses are not ${family} addresses`)
  for (const p of [sport, dport]) {
    if (!/^(0|[1-9][0-9]{0,4})$/.test(p) || Number(p) > 65535) throw new ProxyHeaderError(`PROXY v1 header: bad port ${JSON.stringify(p.slice(0, 8))}`)
  }
  return { address: source, length }
}

function parseV2 (buf: Buffer): ProxyHeader | null {
  if (!buf.subarray(0, 12).equals(V2_SIGNATURE)) throw new ProxyHeaderError('PROXY v2 header: bad signature')
  const verCmd = buf[12] as number
  if (verCmd >> 4 !== 2) throw new ProxyHeaderError(`PROXY v2 header: version ${verCmd >> 4}, expected 2`)
  const command = verCmd & 0x0f
  if (command > 1) throw new ProxyHeaderError(`PROXY v2 header: unknown command ${command}`)
  const famProto = buf[13] as number
  const length = 16 + buf.readUInt16BE(14)
  if (length > V2_MAX) throw new ProxyHeaderError(`PROXY v2 header of ${length} bytes, more than ${V2_MAX}`)
  if (buf.length < length) return null
  // LOCAL (the proxy's own connection, a health check), or a family other than TCP: the peer stands.
  if (command === 0) return { address: null, length }
  if (famProto === 0x11) {
    if (length < 16 + 12) throw new ProxyHeaderError('PROXY v2 header: too short for TCP over IPv4 addresses')
    return { address: Array.from(buf.subarray(16, 20)).join('.'), length }
  }
  if (famProto === 0x21) {
    if (length < 16 + 36) throw new ProxyHeaderError('PROXY v2 header: too short for TCP over IPv6 addresses')
    const groups: string[] = []
    for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(16 + 2 * i).toString(16))
    return { address: compressIPv6(groups), length }
  }
  return { address: null, length }
}

/** An IPv6 address in its usual short form (RFC 5952): the longest run of zero groups as `::`. */
function compressIPv6 (groups: string[]): string {
  let best = -1
  let bestLen = 1
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') { i++; continue }
    let j = i
    while (j < 8 && groups[j] === '0') j++
    if (j - i > bestLen) { best = i; bestLen = j - i }
    i = j
  }
  const text = best === -1 ? groups.join(':') : `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`
  // An IPv4-mapped address the way Node writes a dual-stack peer.
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(text)
  if (mapped !== null) {
    const hi = parseInt(mapped[1] as string, 16)
    const lo = parseInt(mapped[2] as string, 16)
    return `::ffff:${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
  }
  return text
}

/**
 * Read the header off a new socket, put back what follows it, and make the
 * socket's `remoteAddress` the client's. Rejects (the caller closes the
 * socket) on a bad header, on a socket that ends first, or after `timeoutMs`.
 */
export function readProxyHeader (socket: Socket, timeoutMs = PROXY_HEADER_TIMEOUT_MS): Promise<string | null> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0)
    const done = (err: Error | null, address?: string | null): void => {
      clearTimeout(timer)
      socket.off('readable', onReadable)
      socket.off('end', onEnd)
      socket.off('error', onError)
      if (err !== null) { reject(err); return }
      if (address != null) Object.defineProperty(socket, 'remoteAddress', { value: address, configurable: true })
      resolve(address ?? null)
    }
    const onReadable = (): void => {
      let chunk: Buffer | null
      while ((chunk = socket.read() as Buffer | null) !== null) {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
        let header: ProxyHeader | null
        try {
          header = parseProxyHeader(buf)
        } catch (err) {
          done(err as Error)
          return
        }
        if (header === null) continue
        const rest = buf.subarray(header.length)
        if (rest.length > 0) socket.unshift(rest)
        done(null, header.address)
        return
      }
    }
    const onEnd = (): void => { done(new ProxyHeaderError('the connection ended before its PROXY protocol header')) }
    const onError = (err: Error): void => { done(err) }
    const timer = setTimeout(() => { done(new ProxyHeaderError(`no PROXY protocol header within ${timeoutMs} ms`)) }, timeoutMs)
    socket.on('readable', onReadable)
    socket.on('end', onEnd)
    socket.on('error', onError)
  })
}
