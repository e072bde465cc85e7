// The local bus' start (broker/local-bus.ts): a worker takes clients once its
// bus start returns, so by then every sibling it reached must have connected
// back, or that sibling's copies for its clients are dropped (a persistent
// session resuming there got those messages only at its next reconnect,
// after later ones). Two buses of one node over real Unix sockets, at first
// start and after one of them is gone and started again (a restarted worker).
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import type { BusPacket } from '../../broker/bus-frames.js'
import { LocalBus } from '../../broker/local-bus.js'
import { createLogger } from '../../shared/log.js'
import { until } from '../sdk/support.js'

test('a worker\'s bus start returns once each sibling it reached has connected back: the sibling\'s next copy reaches it, at first start and after a restart', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'warbler-bus-links-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const log = createLogger('error', () => {})
  const opts = { dir, count: 2, maxFrame: 1 << 20, log }
  const first = await LocalBus.start({ ...opts, index: 0 }, (_p, done) => { done() })
  t.after(() => first.close())

  for (const round of ['first start', 'restart']) {
    const got: string[] = []
    const second = await LocalBus.start({ ...opts, index: 1 }, (p, done) => { got.push(String(p.payload)); done() })
    t.after(() => second.close())
    // At once, as a client of the first worker would publish the moment the second takes clients.
    const packet: BusPacket = { cmd: 'publish', brokerId: 'b', brokerCounter: 1, topic: 't', payload: Buffer.from(round), qos: 1, retain: false, dup: false }
    await new Promise<void>((resolve) => { first.send(packet, resolve) })
    await until(() => got.length > 0, 5000, () => `${round}: the copy at the second worker (dropped: ${first.counts.dropped})`)
    assert.deepEqual(got, [round])
    second.close()
  }
})

test('a copy\'s sender is answered once the copy is in the kernel, not while it waits in this process: a sibling that reads nothing holds its senders until it is taken as hung', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'warbler-bus-written-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  // The sibling: takes the connection and never reads it, so the kernel's buffer fills.
  const held: net.Socket[] = []
  const sibling = net.createServer((socket) => { socket.pause(); held.push(socket) })
  await new Promise<void>((resolve) => sibling.listen(path.join(dir, '1.sock'), resolve))
  t.after(() => { for (const s of held) s.destroy(); sibling.close() })
  const bus = await LocalBus.start({ dir, count: 2, maxFrame: 1 << 20, log: createLogger('error', () => {}), index: 0 }, (_p, done) => { done() })
  t.after(() => bus.close())
  // 12 copies of 64 KiB: more than the kernel takes for a socket nobody reads, less than
  // the 1 MiB after which a sender waits anyway (back-pressure).
  const answered: number[] = []
  const sentAt = Date.now()
  for (let i = 0; i < 12; i++) {
    bus.send({ cmd: 'publish', brokerId: 'b', brokerCounter: i, topic: 't', payload: Buffer.alloc(64 * 1024, i), qos: 1, retain: false, dup: false }, () => { answered.push(Date.now() - sentAt) })
  }
  await new Promise((resolve) => setTimeout(resolve, 400))
  assert.ok(answered.length < 12, `all 12 senders were answered within 400 ms (${answered.length}), though the copies could not all be in the kernel`)
  // Taken as hung after about a second without a drain: its senders go on.
  await until(() => answered.length === 12, 5000, () => `every sender answered once the sibling was taken as hung (${answered.length})`)
  assert.ok((answered.at(-1) as number) >= 900, `the last sender waited for the stall (${String(answered.at(-1))} ms)`)
})
