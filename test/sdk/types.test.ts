// The SDK's published types are a contract: a small strict TypeScript app in a
// temp dir imports '@warbler/sdk' as an installed package would be (a symlink
// to sdk/, whose dist has the .d.ts files) and must compile with the repo's
// TypeScript; lines that misuse the API must not.
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { tempDir } from '../helpers/test-node.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')
const tsc = path.join(root, 'node_modules/typescript/bin/tsc')
const sdk = path.join(root, 'sdk')

/** Build sdk/dist (with .d.ts) unless it is newer than every source file (npm test builds it first). */
function buildSdk (): void {
  const newest = Math.max(...readdirSync(path.join(sdk, 'src')).map((f) => statSync(path.join(sdk, 'src', f)).mtimeMs))
  let built = 0
  try { built = Math.min(...['index.d.ts', 'client.d.ts', 'client.js', 'file-outbox.d.ts'].map((f) => statSync(path.join(sdk, 'dist', f)).mtimeMs)) } catch { /* not built */ }
  if (built > newest) return
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(sdk, 'tsconfig.json')], { encoding: 'utf8', cwd: root })
  assert.equal(r.status, 0, `building the SDK failed:\n${r.stdout}${r.stderr}`)
}

const APP = `import { Warbler, WarblerClient, ServerError, WarblerError, AuthError, MemoryOutbox, directConversation } from '@warbler/sdk'
import type { AckFrame, ClientErrorCode, ClientOptions, ErrorCode, HistoryPage, MessageFrame, MessageStatus, OutboxStore, State } from '@warbler/sdk'
import { FileOutbox } from '@warbler/sdk/file-outbox'

export async function chat (url: string, token: string, since: Record<string, number>): Promise<Record<string, number>> {
  const outbox: OutboxStore = new FileOutbox('state/outbox.json')
  const client = await Warbler.connect({ url, username: 'alice', token, device: 'phone', outbox, since, refreshToken: async () => token })
  const texts: string[] = []
  const off = client.on('message', (m: MessageFrame) => {
    const seq: number = m.seq
    const from: string = m.from
    if (typeof m.body === 'string') texts.push(\`\${from}#\${seq}: \${m.body}\`)
  })
  client.on('status', (s: MessageStatus) => {
    if (s.status === 'sent') texts.push(String(s.ack.seq))
    else if (s.status === 'failed') texts.push(s.error.code)
  })
  client.on('state', ({ newState, oldState, error }) => {
    const states: State[] = [newState, oldState]
    if (error !== undefined) texts.push(error.code, ...states)
  })
  const ack: AckFrame = await client.send({ to: 'bob' }, 'hi bob')
  await client.send({ conv: ack.conv }, { text: 'and more' }, { cid: 'a-2' })
  const page: HistoryPage = await client.history(directConversation('alice', 'bob'), { before: ack.seq, limit: 20 })
  const more: boolean = page.more
  texts.push(...page.messages.map((m) => m.id), String(more))
  try {
    await client.send({ conv: 'g:nope' }, 'hello?')
  } catch (e) {
    if (e instanceof ServerError) {
      const code: ErrorCode = e.code
      if (code === 'not_member' || code === 'not_found') texts.push(code)
    } else if (e instanceof AuthError) {
      texts.push(String(e.returnCode))
    } else if (e instanceof WarblerError) {
      const code: ErrorCode | ClientErrorCode = e.code
      if (code === 'connection_lost' || code === 'timeout' || code === 'closed') texts.push(code)
    }
  }
  off()
  const state: Record<string, number> = client.syncState
  await client.close()

  // A client made first, to watch every state from the start.
  const options: ClientOptions = { url, username: 'alice', password: 'secret', outbox: new MemoryOutbox(), reconnect: { minDelay: 100 } }
  const c2 = new WarblerClient(options)
  c2.on('state', (e) => { if (e.newState === 'reconnecting') texts.push(e.oldState) })
  await c2.connect()
  await c2.close()
  return state
}
`

/** Each line must fail to compile on its own (checked by line number). */
const BAD = [
  "import { Warbler, WarblerError } from '@warbler/sdk'",
  "import { FileOutbox } from '@warbler/sdk/file-outbox'",
  "const client = await Warbler.connect({ url: 'mqtt://127.0.0.1', username: 'alice', token: 't' })",
  'client.on(\'mesage\', () => {}) // BAD: no such event',
  'client.on(\'message\', (m: string) => { void m }) // BAD: a message is a MessageFrame',
  'await client.send({ too: \'bob\' }, \'hi\') // BAD: target is {to} or {conv}',
  'const seq: string = (await client.send({ to: \'bob\' }, \'hi\')).seq // BAD: seq is a number',
  'await Warbler.connect({ url: \'mqtt://x\', username: \'alice\', token: \'t\', keepAlive: 5 }) // BAD: unknown option',
  'new FileOutbox() // BAD: needs a file',
  'export function f (e: WarblerError): boolean { return e.code === \'no_such_code\' } // BAD: not an error code',
  "client.on('status', (s) => { void s.ack }) // BAD: ack only on status 'sent'"
]

test('a strict TypeScript app compiles against @warbler/sdk and its file-outbox entry; misuses do not', (t) => {
  buildSdk()
  const dir = tempDir('warbler-sdk-types-')
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(path.join(dir, 'node_modules/@warbler'), { recursive: true })
  symlinkSync(sdk, path.join(dir, 'node_modules/@warbler/sdk'), 'dir')
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }))
  const compilerOptions = {
    strict: true,
    noEmit: true,
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    lib: ['ES2023'], // no DOM, no @types/node: the published types stand on their own
    types: [],
    skipLibCheck: false, // and the .d.ts files themselves must check
    noUncheckedIndexedAccess: true,
    exactOptionalPropertyTypes: true
  }
  writeFileSync(path.join(dir, 'app.ts'), APP)
  writeFileSync(path.join(dir, 'bad.ts'), BAD.join('\n') + '\n')
  writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: ['app.ts'] }))
  writeFileSync(path.join(dir, 'tsconfig.bad.json'), JSON.stringify({ compilerOptions, files: ['bad.ts'] }))

  const good = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: dir, encoding: 'utf8' })
  assert.equal(good.status, 0, `the app must compile:\n${good.stdout}${good.stderr}`)

  const bad = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.bad.json'], { cwd: dir, encoding: 'utf8' })
  assert.notEqual(bad.status, 0, 'the misuses must not compile')
  const lines = new Set([...bad.stdout.matchAll(/^bad\.ts\((\d+),\d+\): error/gm)].map((m) => Number(m[1])))
  BAD.forEach((line, i) => {
    if (line.includes('// BAD')) assert.ok(lines.has(i + 1), `line ${i + 1} should not compile: ${line}\n${bad.stdout}`)
    else assert.ok(!lines.has(i + 1), `line ${i + 1} should compile: ${line}\n${bad.stdout}`)
  })
})
