/**
 * Payload encoding (docs/protocol.md, "Payload envelope"): plain JSON, or
 * 0x01 + raw deflate of the JSON when it is larger than a threshold and the
 * compression saves something. Uses the platform's CompressionStream (Node
 * 20 and browsers), so the SDK needs no compression library.
 */
import { Encoding, payloadEncoding } from './protocol.js'

const encoder = new TextEncoder()
const decoder = new TextDecoder()

async function pipe (data: Uint8Array, stream: CompressionStream | DecompressionStream): Promise<Uint8Array> {
  const out = new Response(new Blob([data as BlobPart]).stream().pipeThrough(stream))
  return new Uint8Array(await out.arrayBuffer())
}

/** Encode a frame; compress when its JSON is at least `threshold` bytes (0 = never). */
export async function encodeFrame (frame: unknown, threshold: number): Promise<Uint8Array> {
  const json = encoder.encode(JSON.stringify(frame))
  if (threshold <= 0 || json.length < threshold) return json
  const packed = await pipe(json, new CompressionStream('deflate-raw'))
  if (packed.length + 1 >= json.length) return json
  const out = new Uint8Array(packed.length + 1)
  out[0] = Encoding.deflate
  out.set(packed, 1)
  return out
}

/** Decode a payload into a JSON value; throws on anything else. */
export async function decodeFrame (payload: Uint8Array): Promise<unknown> {
  const enc = payloadEncoding(payload)
  if (enc === 'json') return JSON.parse(decoder.decode(payload))
  if (enc === 'deflate') return JSON.parse(decoder.decode(await pipe(payload.subarray(1), new DecompressionStream('deflate-raw'))))
  throw new Error('not a Warbler payload')
}
