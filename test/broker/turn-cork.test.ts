/**
 * broker/turn-cork.ts on real sockets over loopback: the writes of one turn
 * (from different promise continuations) leave together once the turn ends,
 * and a connection destroyed right after a write still sends it.
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { test } from 'node:test'
import { corkPerTurn } from '../../broker/turn-cork.js'

/** A connected pair: the server's side (corked per turn) and the client's. */
async function pair (): Promise<{ server: net.Socket, client: net.Socket, close: () => Promise<void> }> {
  const srv = net.createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const accepted = new Promise<net.Socket>((resolve) => srv.once('connection', resolve))
  const client = net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1')
  const server = await accepted
  server.setNoDelay(true)
  corkPerTurn(server)
  return {
    server,
    client,
    close: async () => {
      client.destroy()
      server.destroy()
      await new Promise<void>((resolve) => srv.close(() => resolve()))
    }
  }
}

function received (s: net.Socket, bytes: number): Promise<Buffer[]> {
  const chunks: Buffer[] = []
  return new Promise((resolve) => {
    const on = (d: Buffer): void => {
      chunks.push(d)
      if (chunks.reduce((n, c) => n + c.length, 0) >= bytes) { s.off('data', on); resolve(chunks) }
    }
    s.on('data', on)
  })
}

test('the writes of one turn are held until the turn ends, then leave together', async () => {
  const p = await pair()
  try {
    const got = received(p.client, 3)
    p.server.write('a')
    await Promise.resolve()
    p.server.write('b')
    await Promise.resolve()
    p.server.write('c')
    // Still the same turn: nothing has left yet.
    assert.equal(p.server.writableCorked, 1)
    assert.equal(p.server.bytesWritten, 3)
    assert.equal(p.server.writableLength, 3, 'the three writes wait in the stream')
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(p.server.writableCorked, 0)
    assert.equal(Buffer.concat(await got).toString(), 'abc')
    // The next turn corks again.
    p.server.write('d')
    assert.equal(p.server.writableCorked, 1)
  } finally {
    await p.close()
  }
})

test('a connection destroyed right after a write still sends it', async () => {
  const p = await pair()
  try {
    const closed = new Promise<void>((resolve) => p.client.once('close', () => resolve()))
    const got = received(p.client, 4)
    p.server.write('last')
    p.server.destroy()
    assert.equal(Buffer.concat(await got).toString(), 'last')
    await closed
  } finally {
    await p.close()
  }
})

test('end() after a write sends it and closes', async () => {
  const p = await pair()
  try {
    const chunks: Buffer[] = []
    p.client.on('data', (d: Buffer) => chunks.push(d))
    const ended = new Promise<void>((resolve) => p.client.once('end', () => resolve()))
    p.server.write('bye')
    p.server.end()
    await ended
    assert.equal(Buffer.concat(chunks).toString(), 'bye')
  } finally {
    await p.close()
  }
})
