/**
 * The chat web app in a real browser: Debian's Chromium, headless, driven by
 * playwright-core (no browser download), against a real `warbler start` with
 * users made by the CLI. Alice (desktop size) and Bob (phone size) each in a
 * browser context of their own log in, chat both ways, page up through
 * history and survive a reload; a hostile body shows as text. The password
 * never goes over the WebSocket and is never stored by the browser.
 *
 * Screenshots of each page at both sizes are left in test-output/web/
 * (kept after the run; see the README).
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync, rmSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core'
import { Warbler } from '../../sdk/src/index.js'
import { CLI, spawnNode, tempDir } from '../helpers/test-node.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')
const OUT = path.join(root, 'test-output', 'web')
const PASSWORDS = { alice: 'alice-secret-pw-1', bob: 'bob-secret-pw-22', carol: 'carol-secret-pw-3' }
const DESKTOP = { width: 1280, height: 800 }
const PHONE = { width: 390, height: 844 }
const HOSTILE = '<img src=x onerror=alert(1)>'

function addUser (dataDir: string, name: keyof typeof PASSWORDS): void {
  const r = spawnSync(process.execPath, [CLI, 'user', 'add', name, '--password-stdin', '--data-dir', dataDir], { input: PASSWORDS[name], encoding: 'utf8', timeout: 30_000 })
  assert.equal(r.status, 0, r.stderr)
}

interface Tab { page: Page, context: BrowserContext, sent: string[], dialogs: string[] }

/** A browser context of its own (storage, IndexedDB) with one page, recording WebSocket frames sent and dialogs. */
async function tab (browser: Browser, viewport: { width: number, height: number }, locale = 'en-US'): Promise<Tab> {
  const context = await browser.newContext({ viewport, locale })
  const page = await context.newPage()
  const t: Tab = { page, context, sent: [], dialogs: [] }
  page.on('websocket', (ws) => { ws.on('framesent', (f) => { t.sent.push(typeof f.payload === 'string' ? f.payload : f.payload.toString('latin1')) }) })
  page.on('dialog', (d) => { t.dialogs.push(d.message()); void d.dismiss() })
  page.setDefaultTimeout(15_000)
  return t
}

async function shot (page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage: false })
}

async function logIn (t: Tab, base: string, user: keyof typeof PASSWORDS): Promise<void> {
  await t.page.goto(base)
  await t.page.getByLabel('User name').fill(user)
  await t.page.getByLabel('Password').fill(PASSWORDS[user])
  await t.page.getByRole('button', { name: 'Log in' }).click()
  await t.page.locator('#state[data-state="connected"]').waitFor()
}

/** What the open conversation shows, message by message. */
const bodies = async (page: Page): Promise<string[]> => await page.locator('#messages .msg:not(.pending) .body').allTextContents()

/** Alice logs out (the server forgets her login); the Chinese login page; then what each page sent and stored. */
async function logOutAndAudit (browser: Browser, base: string, alice: Tab, bob: Tab): Promise<void> {
  // Logging out ends the login on the server too.
  const kept = await alice.page.evaluate(() => localStorage.getItem('warbler.refresh'))
  await alice.page.getByRole('button', { name: 'Log out' }).click()
  await alice.page.getByLabel('User name').waitFor()
  assert.equal(await alice.page.evaluate(() => localStorage.getItem('warbler.refresh')), null)
  const again = await fetch(`${base}api/session/refresh`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refreshToken: kept }) })
  assert.equal(again.status, 401)

  // Same list at desktop size, and the login in Chinese.
  await bob.page.setViewportSize(DESKTOP)
  await shot(bob.page, 'list-desktop')
  const zh = await tab(browser, PHONE, 'zh-CN')
  await zh.page.goto(base)
  await zh.page.getByLabel('用户名').waitFor()
  assert.equal(await zh.page.getByRole('button', { name: '登录' }).count(), 1)
  await shot(zh.page, 'login-phone-zh')

  for (const [name, tb] of [['alice', alice], ['bob', bob]] as const) {
    assert.deepEqual(tb.dialogs, [], `${name}: no dialog opened`)
    assert.ok(tb.sent.length > 0, `${name}: the page spoke MQTT over WebSocket`)
    assert.ok(!tb.sent.some((f) => f.includes(PASSWORDS[name])), `${name}: the password never went over the WebSocket`)
    const stored = await tb.page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }))
    assert.ok(!stored.includes(PASSWORDS[name]), `${name}: the password is not stored`)
  }
  assert.match(await bob.page.evaluate(() => localStorage.getItem('warbler.refresh') ?? ''), /^wbr\./, 'bob keeps only the refresh token')
}

test('web app: alice and bob log in, chat both ways, page through history; hostile text stays text', { timeout: 120_000 }, async (t) => {
  rmSync(OUT, { recursive: true, force: true })
  mkdirSync(OUT, { recursive: true })
  const dataDir = tempDir('warbler-web-chat-')
  for (const u of ['alice', 'bob', 'carol'] as const) addUser(dataDir, u)
  const node = await spawnNode([], { dataDir })
  // warbler.test is this machine too, but not a secure context for the browser (unlike
  // 127.0.0.1): Bob uses it, as someone opening a Pi's address over plain http would.
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--host-resolver-rules=MAP warbler.test 127.0.0.1']
  })
  t.after(async () => {
    await browser.close()
    await node.stop()
    rmSync(dataDir, { recursive: true, force: true })
  })
  const base = `http://127.0.0.1:${node.ports.http ?? 0}/`
  const lan = `http://warbler.test:${node.ports.http ?? 0}/`

  // Carol wrote to bob before: 45 messages, more than one page of history.
  const carol = await Warbler.connect({ url: `ws://127.0.0.1:${node.ports.ws ?? 0}/mqtt`, username: 'carol', password: PASSWORDS.carol, device: 'node' })
  for (let i = 1; i <= 45; i++) await carol.send({ to: 'bob' }, `carol ${i}`)
  await carol.close()

  const alice = await tab(browser, DESKTOP)
  const bob = await tab(browser, PHONE)
  await alice.page.goto(base)
  await shot(alice.page, 'login-desktop')
  await bob.page.goto(lan)
  await shot(bob.page, 'login-phone')
  await logIn(alice, base, 'alice')
  await logIn(bob, lan, 'bob')
  assert.equal(await bob.page.evaluate(() => window.isSecureContext), false)

  // Bob's list: carol's conversation with 45 unread and her last message.
  const carolItem = bob.page.locator('.conv-item', { hasText: 'carol' })
  await carolItem.locator('.unread', { hasText: '45' }).waitFor()
  assert.match(await carolItem.locator('.last').textContent() ?? '', /carol: carol 45/)
  await shot(bob.page, 'list-phone')

  // Alice opens a chat with bob and sends.
  await alice.page.getByLabel('Chat with user').fill('bob')
  await alice.page.getByRole('button', { name: 'Open' }).click()
  await alice.page.getByLabel('Message').fill('hello bob')
  await alice.page.getByRole('button', { name: 'Send' }).click()
  await alice.page.locator('#messages .msg:not(.pending) .body', { hasText: 'hello bob' }).waitFor()

  // Bob sees it live, at the top of his list (latest activity first), unread.
  const aliceItem = bob.page.locator('.conv-item', { hasText: 'alice' })
  await aliceItem.locator('.unread', { hasText: '1' }).waitFor()
  assert.match(await bob.page.locator('.conv-item .name').first().textContent() ?? '', /alice/)
  await aliceItem.click()
  await bob.page.locator('#messages .body', { hasText: 'hello bob' }).waitFor()

  // A hostile body is text: no element made of it, no script run.
  await alice.page.getByLabel('Message').fill(HOSTILE)
  await alice.page.getByRole('button', { name: 'Send' }).click()
  await bob.page.locator('#messages .body', { hasText: HOSTILE }).waitFor()
  assert.equal(await bob.page.locator('#messages .body').last().textContent(), HOSTILE)
  for (const p of [alice.page, bob.page]) assert.equal(await p.locator('img').count(), 0, 'no img element')
  await shot(bob.page, 'conversation-phone')

  // Bob answers; alice sees it live.
  await bob.page.getByLabel('Message').fill('hi alice 你好')
  await bob.page.getByRole('button', { name: 'Send' }).click()
  await alice.page.locator('#messages .body', { hasText: 'hi alice 你好' }).waitFor()
  assert.deepEqual(await bodies(alice.page), ['hello bob', HOSTILE, 'hi alice 你好'])
  await shot(alice.page, 'conversation-desktop')

  // History: the first page is the last 30 of carol's; scrolling up brings the rest.
  await bob.page.getByRole('button', { name: 'Back' }).click()
  await carolItem.click()
  await bob.page.locator('#messages .body', { hasText: 'carol 45' }).waitFor()
  assert.equal((await bodies(bob.page)).length, 30)
  await bob.page.locator('#messages').evaluate((e) => { e.scrollTop = 0 })
  await bob.page.locator('#messages .body', { hasText: /^carol 1$/ }).waitFor()
  assert.deepEqual(await bodies(bob.page), Array.from({ length: 45 }, (_, i) => `carol ${i + 1}`))
  assert.equal(await bob.page.locator('#messages .edge').count(), 1, 'the start of the conversation is marked')

  // A reload stays logged in (the refresh token), without the password.
  await bob.page.reload()
  await bob.page.locator('#state[data-state="connected"]').waitFor()
  await bob.page.locator('.conv-item', { hasText: 'alice' }).waitFor()

  await logOutAndAudit(browser, base, alice, bob)
})
