// The SDK in a real browser: Debian's headless Chromium loads the browser
// bundle (examples/web/build.mjs: sdk/dist + mqtt's browser build) from a
// local page; alice and bob, each in a tab with its own storage, connect over
// MQTT-over-WebSocket to a real Warbler with an IndexedDB outbox and chat.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { launchChromium, type Page } from '../helpers/browser.js'
import { startNode, tempDir } from '../helpers/test-node.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')
const PW = 'password-123'

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>warbler sdk test</title>
<script type="module">
  import * as W from '/warbler.js'
  window.W = W
  window.got = []
  window.statuses = []
  window.errors = []
  window.ready = true
</script>`

/** Serve the test page and the bundle on 127.0.0.1, port 0. */
async function serve (bundleDir: string): Promise<{ url: string, close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    const file = req.url === '/warbler.js' ? 'warbler.js' : req.url === '/warbler.js.map' ? 'warbler.js.map' : null
    if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(PAGE)
    } else if (file !== null) {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(readFileSync(path.join(bundleDir, file)))
    } else {
      res.writeHead(404).end()
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) })
  }
}

/** Connect the page's client as `user` (device `web`), with an IndexedDB outbox; records messages, statuses and errors. */
async function connect (page: Page, wsUrl: string, user: string): Promise<string> {
  return await page.eval<string>(`(async () => {
    window.outbox = new W.IndexedDbOutbox('warbler-outbox-${user}-web')
    window.client = await W.Warbler.connect({
      url: ${JSON.stringify(wsUrl)}, username: '${user}', password: '${PW}', device: 'web',
      outbox, connectTimeout: 5000, requestTimeout: 5000
    })
    client.on('message', (m) => got.push(m))
    client.on('status', (s) => statuses.push(s.status))
    client.on('error', (e) => errors.push(e.code + ': ' + e.message))
    return client.state
  })()`)
}

interface Seen { seq: number, from: string, conv: string, text: string }
const seen = async (page: Page): Promise<Seen[]> =>
  await page.eval<Seen[]>('got.map((m) => ({ seq: m.seq, from: m.from, conv: m.conv, text: typeof m.body === "string" ? m.body : "{" + (m.body.text ?? "").length + " chars}" }))')

/** A variable byte integer of MQTT at `at`: its value and where it ends. */
function varint (buf: Buffer, at: number): { value: number, end: number } {
  let value = 0
  let mul = 1
  let j = at
  for (;;) {
    const b = buf[j++] as number
    value += (b & 127) * mul
    mul *= 128
    if ((b & 128) === 0) return { value, end: j }
  }
}

/**
 * The payloads of the MQTT PUBLISH packets in a byte stream (what the page
 * sent over its WebSocket); `v5`: MQTT 5 packets, whose properties come
 * before the payload (the SDK's default protocol).
 */
function publishes (stream: Buffer, v5: boolean): Array<{ topic: string, payload: Buffer }> {
  const out: Array<{ topic: string, payload: Buffer }> = []
  let i = 0
  while (i < stream.length) {
    const type = (stream[i] as number) >> 4
    const qos = ((stream[i] as number) >> 1) & 3
    const { value: len, end: j } = varint(stream, i + 1)
    const body = stream.subarray(j, j + len)
    if (type === 3) {
      const tlen = body.readUInt16BE(0)
      const topic = body.subarray(2, 2 + tlen).toString()
      let at = 2 + tlen + (qos > 0 ? 2 : 0)
      if (v5) {
        const props = varint(body, at)
        at = props.end + props.value
      }
      out.push({ topic, payload: body.subarray(at) })
    }
    i = j + len
  }
  return out
}

test('alice and bob chat in Chromium through the browser bundle, with an IndexedDB outbox and compression', { timeout: 90_000 }, async (t) => {
  const dir = tempDir('warbler-browser-')
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const built = spawnSync(process.execPath, [path.join(root, 'examples/web/build.mjs'), path.join(dir, 'warbler.js')], { cwd: root, encoding: 'utf8', timeout: 60_000 })
  assert.equal(built.status, 0, `bundling failed:\n${built.stdout}${built.stderr}`)

  const node = await startNode([], { users: [{ name: 'alice', password: PW }, { name: 'bob', password: PW }] })
  t.after(() => node.close())
  const site = await serve(dir)
  t.after(() => site.close())
  const browser = await launchChromium({ timeoutMs: 15_000 })
  t.after(() => browser.close()) // by its PID

  const alice = await browser.newPage(site.url)
  const bob = await browser.newPage(site.url)
  await alice.recordWebSocketFrames()
  await alice.waitFor('window.ready', 10_000, 'the bundle to load in alice\'s tab')
  await bob.waitFor('window.ready', 10_000, 'the bundle to load in bob\'s tab')

  assert.equal(await connect(alice, node.wsUrl, 'alice'), 'connected')
  assert.equal(await connect(bob, node.wsUrl, 'bob'), 'connected')

  // alice writes, bob receives and answers; send() resolves with the server's ack.
  const ack1 = await alice.eval<{ conv: string, seq: number }>('client.send({ to: "bob" }, "hi bob")')
  assert.deepEqual([ack1.conv, ack1.seq], ['d:alice:bob', 1])
  await bob.waitFor('got.length >= 1', 10_000, 'bob to receive alice\'s message')
  const ack2 = await bob.eval<{ seq: number }>('client.send({ to: "alice" }, "hi alice")')
  assert.equal(ack2.seq, 2)
  await alice.waitFor('got.length >= 2', 10_000, 'alice to see both messages')
  await bob.waitFor('got.length >= 2', 10_000, 'bob to see both messages')
  const chat = [
    { seq: 1, from: 'alice', conv: 'd:alice:bob', text: 'hi bob' },
    { seq: 2, from: 'bob', conv: 'd:alice:bob', text: 'hi alice' }
  ]
  assert.deepEqual(await seen(alice), chat)
  assert.deepEqual(await seen(bob), chat)
  assert.deepEqual(await alice.eval('statuses'), ['pending', 'sent'])

  // A large message goes out deflate-compressed (first payload byte 0x01) and arrives whole.
  const big = 'warbler '.repeat(20_000) // 160 000 bytes of text
  const ack3 = await alice.eval<{ seq: number }>(`client.send({ conv: "d:alice:bob" }, { text: ${JSON.stringify('warbler ')}.repeat(20000), kind: "big" })`)
  assert.equal(ack3.seq, 3)
  await bob.waitFor('got.length >= 3', 10_000, 'bob to receive the large message')
  assert.equal(await bob.eval<boolean>(`got[2].body.text === ${JSON.stringify(big)} && got[2].body.kind === "big"`), true)
  const sent = publishes(Buffer.concat(alice.sentFrames.filter((f) => f.opcode === 2).map((f) => f.data)), true)
  const msgs = sent.filter((p) => p.topic === 'wb/u/alice/out' && p.payload.length > 0)
  const large = msgs.find((p) => p.payload[0] === 0x01)
  assert.ok(large !== undefined, `no compressed publish among ${msgs.length} (first bytes ${msgs.map((p) => p.payload[0]).join(',')})`)
  assert.ok(large.payload.length < 5_000, `compressed payload is ${large.payload.length} bytes for ${big.length} bytes of text`)
  assert.ok(msgs.some((p) => p.payload[0] === 0x7b && p.payload.toString().includes('"hi bob"')), 'small messages go out as plain JSON')

  // Acknowledged sends leave the IndexedDB outbox.
  assert.equal(await alice.eval<number>('outbox.load().then((l) => l.length)'), 0)

  // A send still in IndexedDB when the tab went away is sent by the next page load.
  await alice.eval(`(async () => {
    await client.close()
    await new W.IndexedDbOutbox('warbler-outbox-alice-web').put({ cid: 'left-in-idb-1', target: { to: 'bob' }, body: 'sent after a reload', createdAt: Date.now() })
  })()`)
  await alice.goto(site.url)
  await alice.waitFor('window.ready', 10_000, 'the bundle to load again')
  assert.equal(await alice.eval<number>('new W.IndexedDbOutbox("warbler-outbox-alice-web").load().then((l) => l.length)'), 1)
  assert.equal(await connect(alice, node.wsUrl, 'alice'), 'connected')
  await bob.waitFor('got.length >= 4', 10_000, 'bob to receive the message left in IndexedDB')
  assert.deepEqual((await seen(bob)).map((m) => [m.seq, m.from, m.text]), [
    [1, 'alice', 'hi bob'], [2, 'bob', 'hi alice'], [3, 'alice', '{160000 chars}'], [4, 'alice', 'sent after a reload']
  ])
  await alice.waitFor('outbox.load().then((l) => l.length === 0)', 10_000, 'the outbox to empty once acknowledged')

  // Typed requests work from the browser too.
  const history = await bob.eval<{ messages: Array<{ seq: number }>, more: boolean }>('client.history("d:alice:bob", { limit: 10 })')
  assert.deepEqual(history.messages.map((m) => m.seq), [1, 2, 3, 4])
  assert.deepEqual(await bob.eval('errors'), [])
  await alice.eval('client.close()')
  await bob.eval('client.close()')
})
