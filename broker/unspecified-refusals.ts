/**
 * `refusalDetail: unspecified` for SUBACK: an MQTT 5 client's refused filter
 * is answered 0x80 (Unspecified error) instead of 0x87 (Not authorized).
 * The publish hook does the same for PUBACK/PUBREC (hooks/publish.ts), but
 * the SUBACK is aedes' own (lib/handlers/subscribe.js, `storeSubscriptions`,
 * sets 0x87 for an MQTT 5 client when authorizeSubscribe refuses), so it is
 * changed on its way out: every packet aedes sends goes through mqtt-packet's
 * `writeToStream` (as packet-size.ts uses), wrapped once per process, and only
 * the connections given here are looked at. The packet aedes made is not
 * changed: a copy is written. 0x9E (a `$share/` filter) and the other codes
 * are kept.
 */
import { createRequire } from 'node:module'
import type { Writable } from 'node:stream'
import { Reason } from './reason-codes.js'

interface Packet { cmd: string, granted?: number[] }
type WriteToStream = (packet: Packet, stream: Writable, opts?: { protocolVersion?: number }) => boolean

const mqttPacket = createRequire(import.meta.url)('mqtt-packet') as { writeToStream: WriteToStream }
/** The connections whose SUBACKs say 0x80 for a refusal. */
const unspecified = new WeakSet<object>()
let wrapped = false

/** Returns the function that puts one connection's SUBACKs under `refusalDetail: unspecified`. */
export function createUnspecifiedSubacks (): (conn: object) => void {
  if (!wrapped) {
    wrapped = true
    const write = mqttPacket.writeToStream
    mqttPacket.writeToStream = (packet, stream, opts) => {
      if (packet.cmd === 'suback' && opts?.protocolVersion === 5 && packet.granted?.includes(Reason.notAuthorized) === true && unspecified.has(stream)) {
        return write({ ...packet, granted: packet.granted.map((c) => c === Reason.notAuthorized ? Reason.unspecifiedError : c) }, stream, opts)
      }
      return write(packet, stream, opts)
    }
  }
  return (conn) => { unspecified.add(conn) }
}
