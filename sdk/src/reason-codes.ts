/**
 * MQTT 5 reason codes as the SDK's errors. With MQTT 5 a server may refuse a
 * publish in its PUBACK (reason code 0x80 or more) instead of, or as well
 * as, the error notice on the device topic: the send or request fails at
 * once with the code the notice would have carried. A refused MQTT 5
 * CONNACK is told as the MQTT 3.1.1 return code of the same meaning, so
 * that AuthError.returnCode means one thing whatever the protocol.
 */
import type { ErrorCode } from './protocol.js'

/** PUBACK reason codes Warbler's broker uses (docs/protocol.md), as error codes. */
const PUBACK_CODES: Readonly<Record<number, ErrorCode>> = {
  0x87: 'not_authorized', // Not authorized: the ACL
  0x90: 'not_authorized', // Topic Name invalid
  0x97: 'rate_limited', // Quota exceeded: the publish rate
  0x99: 'bad_request' // Payload format invalid
}

/**
 * The error code of a refusing PUBACK reason code (0x80 or more); an
 * unexpected one (0x80 unspecified, 0x83 implementation specific...) is
 * `internal`: the publish had no effect and may be sent again.
 */
export function pubackErrorCode (reasonCode: number): ErrorCode {
  return PUBACK_CODES[reasonCode] ?? 'internal'
}

/** MQTT 5 CONNACK reason codes as MQTT 3.1.1 return codes (1-5). */
const CONNACK_CODES: Readonly<Record<number, number>> = {
  0x84: 1, // Unsupported protocol version
  0x85: 2, // Client identifier not valid
  0x86: 4, // Bad user name or password
  0x87: 5, // Not authorized
  0x88: 3, // Server unavailable
  0x89: 3, // Server busy
  0x8a: 5, // Banned
  0x8c: 4, // Bad authentication method
  0x97: 3, // Quota exceeded
  0x9f: 3 // Connection rate exceeded
}

/**
 * The MQTT 3.1.1 return code (1-5) of a refused CONNACK, from either
 * protocol's code; null for a code that is not a refusal of the login.
 */
export function connackReturnCode (code: number): number | null {
  if (code >= 1 && code <= 5) return code
  return CONNACK_CODES[code] ?? (code >= 0x80 ? 3 : null)
}
