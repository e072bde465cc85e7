// The local bus' frames (broker/bus-frames.ts): every field a routed publish
// carries comes back as it went, whatever the chunking of the stream; frames
// over the bound or that do not parse are refused before they are buffered.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { BadFrameError, type BusPacket, encodeControl, encodeFrame, FrameReader } from '../../broker/bus-frames.js'

function readAll (bytes: Buffer, chunk: number, maxFrame = 1 << 20): BusPacket[] {
  const reader = new FrameReader(maxFrame)
  const out: BusPacket[] = []
  for (let at = 0; at < bytes.length; at += chunk) reader.push(bytes.subarray(at, at + chunk), (p) => out.push(p))
  return out
}

test('a publish, its aedes fields and the rare extras come back as they went, in order, from any chunking', () => {
  const packets: BusPacket[] = [
    { cmd: 'publish', brokerId: 'b-1', brokerCounter: 42, topic: 'room/ä/x', payload: Buffer.from([0, 1, 2, 255]), qos: 1, retain: false, dup: false },
    { cmd: 'publish', brokerId: null, brokerCounter: 0, topic: '$SYS/broker/x', payload: 'text', qos: 0, retain: true, dup: true },
    { cmd: 'publish', brokerId: 'b-2', brokerCounter: 2 ** 40, topic: 't', payload: Buffer.alloc(0), qos: 2, retain: false, dup: false, clientId: 'c1', messageExpiry: 123, properties: { userProperties: { a: 'b' }, correlationData: Buffer.from('xyz') } }
  ]
  const bytes = Buffer.concat(packets.map(encodeFrame))
  for (const chunk of [1, 3, 7, bytes.length]) {
    assert.deepEqual(readAll(bytes, chunk), packets, `chunks of ${chunk} bytes`)
  }
})

test('a frame over the bound is refused from its length alone, and a frame whose header lies does not parse', () => {
  const big = encodeFrame({ cmd: 'publish', brokerId: 'b', brokerCounter: 1, topic: 't', payload: Buffer.alloc(2000), qos: 0, retain: false, dup: false })
  const reader = new FrameReader(1000)
  assert.throws(() => reader.push(big.subarray(0, 4), () => {}), (err: Error) => err instanceof BadFrameError && /2\d{3} bytes \(at most 1000\)/.test(err.message))

  const lying = encodeFrame({ cmd: 'publish', brokerId: 'b', brokerCounter: 1, topic: 'topic', payload: Buffer.alloc(0), qos: 0, retain: false, dup: false })
  lying.writeUInt16BE(60_000, 5) // a topic longer than the frame
  assert.throws(() => new FrameReader(1 << 20).push(lying, () => {}), (err: Error) => err instanceof BadFrameError && /does not parse/.test(err.message))
})

test('control frames keep their place among the publishes, from any chunking; one that is not a JSON object is refused', () => {
  const publish: BusPacket = { cmd: 'publish', brokerId: 'b', brokerCounter: 1, topic: 'wb/u/bob/feed', payload: Buffer.from('x'), qos: 1, retain: false, dup: false }
  const bytes = Buffer.concat([encodeControl({ t: 'add', seq: 1, f: 'wb/u/bob/feed' }), encodeFrame(publish), encodeControl({ t: 'del', f: 'wb/u/bob/feed' })])
  for (const chunk of [1, 5, bytes.length]) {
    const reader = new FrameReader(1 << 20)
    const seen: unknown[] = []
    for (let at = 0; at < bytes.length; at += chunk) reader.push(bytes.subarray(at, at + chunk), (p) => seen.push(p), (m) => seen.push(m))
    assert.deepEqual(seen, [{ t: 'add', seq: 1, f: 'wb/u/bob/feed' }, publish, { t: 'del', f: 'wb/u/bob/feed' }], `chunks of ${chunk} bytes`)
  }
  const bad = Buffer.concat([Buffer.from([0, 0, 0, 4, 0x80]), Buffer.from('[1]')])
  assert.throws(() => new FrameReader(1 << 20).push(bad, () => {}, () => {}), (err: Error) => err instanceof BadFrameError && /not a JSON object/.test(err.message))
})
