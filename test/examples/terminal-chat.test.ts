// examples/terminal-chat: two real chat processes against a real Warbler,
// typed into through their stdin (piped, as the README's walkthrough is typed).
import assert from 'node:assert/strict'
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { startNode, tempDir } from '../helpers/test-node.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')
const CHAT = path.join(root, 'examples/terminal-chat/chat.mjs')

interface Chat { child: ChildProcessWithoutNullStreams, out: () => string, type: (line: string) => void, waitFor: (re: RegExp, what: string) => Promise<RegExpExecArray>, exited: Promise<number | null> }

function chat (url: string, user: string, dir: string, env: NodeJS.ProcessEnv = {}): Chat {
  const args = [CHAT, '--url', url, '--user', user, '--state', dir]
  const child = spawn(process.execPath, args, { env: { ...process.env, HOME: dir, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return {
    child,
    exited,
    out: () => out,
    type: (line) => { child.stdin.write(line + '\n') },
    waitFor: async (re, what) => {
      const deadline = Date.now() + 10_000
      for (;;) {
        const m = re.exec(out)
        if (m !== null) return m
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`${user}: no ${what} within 10 s; output:\n${out}`)
        await new Promise((resolve) => setTimeout(resolve, 25))
      }
    }
  }
}

test('the terminal chat example: a direct chat, a group and history, typed through stdin', { timeout: 60_000 }, async (t) => {
  const dir = tempDir('warbler-term-')
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const node = await startNode([], { users: [{ name: 'alice', password: 'alice-password' }, { name: 'bob', password: 'bob-password' }] })
  t.after(() => node.close())

  const bob = chat(node.mqttUrl, 'bob', dir, { WARBLER_PASSWORD: 'bob-password' })
  const alice = chat(node.mqttUrl, 'alice', dir, { WARBLER_PASSWORD: 'alice-password' })
  for (const c of [alice, bob]) t.after(() => { if (c.child.exitCode === null) c.child.kill('SIGKILL') })
  await bob.waitFor(/^connected to .* as bob \(bob-term\)/m, 'connected line')
  await alice.waitFor(/^connected to .* as alice \(alice-term\)/m, 'connected line')

  alice.type('/to bob hello from alice')
  await bob.waitFor(/^\d\d:\d\d:\d\d \[d:alice:bob\] alice: hello from alice$/m, 'alice\'s message')
  bob.type('/to alice hi back')
  bob.type('and a plain line goes to the same chat')
  await alice.waitFor(/bob: and a plain line goes to the same chat$/m, 'bob\'s second line')
  // Bob sees his own lines from his inbox, which may come a moment after alice's copy.
  await bob.waitFor(/bob: and a plain line goes to the same chat$/m, 'his own second line')
  const lines = (s: string): string[] => s.split('\n').filter((l) => l.includes('[d:alice:bob]')).map((l) => l.slice(9))
  const direct = ['[d:alice:bob] alice: hello from alice', '[d:alice:bob] bob: hi back', '[d:alice:bob] bob: and a plain line goes to the same chat']
  assert.deepEqual(lines(alice.out()), direct)
  assert.deepEqual(lines(bob.out()), direct)

  alice.type('/group club bob')
  const g = (await alice.waitFor(/group "club" is (g:[a-z0-9]+)/, 'the new group'))[1] as string
  await bob.waitFor(new RegExp(`\\[${g}\\] \\* alice created "club": alice, bob$`, 'm'), 'the group\'s creation')
  alice.type('welcome to the club')
  await bob.waitFor(new RegExp(`\\[${g}\\] alice: welcome to the club$`, 'm'), 'the group message')

  bob.type('/history alice')
  await bob.waitFor(/^-- 3 message\(s\)$/m, 'the history of the direct chat')
  bob.type('/nonsense')
  await bob.waitFor(/^unknown command \/nonsense; \/help$/m, 'an unknown command notice')

  // End of input: each waits for its sends to be acknowledged and exits 0.
  alice.child.stdin.end()
  bob.child.stdin.end()
  assert.equal(await alice.exited, 0, alice.out())
  assert.equal(await bob.exited, 0, bob.out())

  // alice writes while bob's program is not running; bob's next start shows just that
  // (what it had seen is kept in its --state dir and given back to the SDK as `since`).
  const alice2 = chat(node.mqttUrl, 'alice', dir, { WARBLER_PASSWORD: 'alice-password' })
  alice2.type('/to bob while you were away')
  alice2.child.stdin.end()
  assert.equal(await alice2.exited, 0, alice2.out())
  const bob2 = chat(node.mqttUrl, 'bob', dir, { WARBLER_PASSWORD: 'bob-password' })
  t.after(() => { if (bob2.child.exitCode === null) bob2.child.kill('SIGKILL') })
  await bob2.waitFor(/\[d:alice:bob\] alice: while you were away$/m, 'the message sent while it was away')
  bob2.child.stdin.end()
  assert.equal(await bob2.exited, 0, bob2.out())
  assert.doesNotMatch(bob2.out(), /hello from alice|welcome to the club/, 'messages seen in the first run are not shown again')
})
