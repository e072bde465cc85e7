/**
 * The admin console at /admin in a real browser (Debian's Chromium through
 * playwright-core) against a real `warbler start`: an admin logs in, watches
 * the live figures move, creates a user and a device token (its QR code
 * holds exactly the provisioning JSON), the new user logs in to the chat at
 * `/` and the token connects over MQTT, is refused while the user is disabled;
 * a backup downloads; a user who is not
 * an admin gets no console, no admin API and no $SYS. Screenshots at desktop
 * and phone sizes are left in test-output/web/admin-*.png.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { type Browser, chromium, type Page } from 'playwright-core'
import { encode } from 'uqr'
import { CLI, connackCode, connect, spawnNode, tempDir } from '../helpers/test-node.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')
const OUT = path.join(root, 'test-output', 'web')
const PASSWORDS = { root: 'root-secret-pw-1', bob: 'bob-secret-pw-22' }
const DESKTOP = { width: 1280, height: 800 }
const PHONE = { width: 390, height: 844 }

function addUser (dataDir: string, name: keyof typeof PASSWORDS, admin: boolean): void {
  const r = spawnSync(process.execPath, [CLI, 'user', 'add', name, '--password-stdin', '--data-dir', dataDir, ...(admin ? ['--admin'] : [])], { input: PASSWORDS[name], encoding: 'utf8', timeout: 30_000 })
  assert.equal(r.status, 0, r.stderr)
}

async function page (browser: Browser, viewport: { width: number, height: number }, locale = 'en-US'): Promise<{ page: Page, dialogs: string[] }> {
  const context = await browser.newContext({ viewport, locale, acceptDownloads: true })
  const p = await context.newPage()
  const dialogs: string[] = []
  p.on('dialog', (d) => { dialogs.push(d.message()); void d.dismiss() })
  p.setDefaultTimeout(15_000)
  return { page: p, dialogs }
}

async function shot (p: Page, name: string): Promise<void> {
  await p.screenshot({ path: path.join(OUT, `admin-${name}.png`), fullPage: false })
}

async function logIn (p: Page, url: string, user: string, password: string): Promise<void> {
  await p.goto(url)
  await p.getByLabel('User name').fill(user)
  await p.getByLabel('Password').fill(password)
  await p.getByRole('button', { name: 'Log in' }).click()
}

/** The dark modules a QR SVG of the console draws (its path is one `MX Yh1v1h-1z` per module). */
async function qrModules (p: Page): Promise<string[]> {
  const d = await p.locator('#new-token-qr path').getAttribute('d') ?? ''
  return [...d.matchAll(/M(\d+) (\d+)/g)].map((m) => `${m[1] as string},${m[2] as string}`).sort()
}

function expectedModules (text: string): string[] {
  const out: string[] = []
  encode(text, { ecc: 'M', border: 4 }).data.forEach((row, y) => { row.forEach((dark, x) => { if (dark) out.push(`${x},${y}`) }) })
  return out.sort()
}

/** The figures: the feed is live, and the connected clients and messages in follow what MQTT clients do. */
async function figuresMove (p: Page, mqttUrl: string): Promise<void> {
  await p.locator('#feed-state[data-state="live"]').waitFor()
  await p.waitForFunction(() => Number(document.querySelector('#fig-0-connected')?.getAttribute('data-samples') ?? 0) >= 2)
  const before = Number(await p.locator('#fig-0-connected-value').textContent())
  const c = await connect(mqttUrl, { username: 'bob', password: PASSWORDS.bob, clientId: 'bob-figures' })
  try {
    await p.waitForFunction((n) => Number(document.querySelector('#fig-0-connected-value')?.textContent) > n, before)
    for (let i = 0; i < 20; i++) await c.publishAsync('wb/u/bob/out/bob-figures', JSON.stringify({ t: 'msg', to: 'root', cid: `c${i}`, body: `n${i}` }))
    await p.waitForFunction(() => Number(document.querySelector('#fig-0-in-value')?.textContent) > 0)
    await p.locator('#fig-0-heap-value', { hasText: 'MB' }).waitFor()
  } finally {
    await c.endAsync()
  }
}

/** The node section: health, retention, the refused logins (a wrong password just now), a backup download. */
async function nodeSection (p: Page, mqttUrl: string): Promise<void> {
  assert.equal(await connackCode(mqttUrl, { username: 'dana', password: 'not-the-password', clientId: 'dana' }), 4)
  await p.locator('#nav-node').click()
  await p.locator('#node-health', { hasText: 'answers · ready' }).waitFor()
  assert.match(await p.locator('#node-retention').textContent() ?? '', /messages kept forever/)
  // A reload stays logged in (the refresh token) and reads the node afresh.
  await p.reload()
  await p.locator('#nav-node').click()
  await p.locator('#refusals-table td', { hasText: 'bad password' }).first().waitFor()
  const download = p.waitForEvent('download')
  await p.locator('#backup').click()
  assert.match((await download).suggestedFilename(), /^warbler-backup-.*\.db$/)
  await p.locator('#node-status', { hasText: /Backup downloaded \(\d+ bytes\)/ }).waitFor()
  await shot(p, 'node-phone')
}

/** Bob, who is not an admin: no console, the admin API refuses him, $SYS is closed to him. */
async function notAdmin (browser: Browser, base: string, mqttUrl: string): Promise<void> {
  const bob = await page(browser, PHONE)
  await logIn(bob.page, `${base}admin`, 'bob', PASSWORDS.bob)
  await bob.page.locator('#not-admin').waitFor()
  assert.match(await bob.page.locator('#not-admin').textContent() ?? '', /bob, who is not an admin/)
  assert.equal(await bob.page.locator('#users, #tokens, #figures, nav').count(), 0, 'no console for bob')
  await shot(bob.page, 'not-admin-phone')
  const grant = await (await fetch(`${base}api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'bob', password: PASSWORDS.bob }) })).json() as { accessToken: string }
  for (const p of ['users', 'tokens', 'node', 'refusals', 'backup', 'groups']) {
    assert.equal((await fetch(`${base}api/v1/${p}`, { headers: { authorization: `Bearer ${grant.accessToken}` } })).status, 403, p)
  }
  const c = await connect(mqttUrl, { username: 'bob', password: PASSWORDS.bob, clientId: 'bob-sys' })
  try {
    // mqtt.js rejects a subscription the broker refused, with the SUBACK.
    const refusal = await c.subscribeAsync('$SYS/broker/#').then(() => null, (e: Error & { packet?: { granted?: number[] } }) => e)
    assert.deepEqual(refusal?.packet?.granted, [128], 'a non-admin may not subscribe to $SYS')
  } finally {
    await c.endAsync()
  }
  await bob.page.context().close()
}

test('admin console: an admin manages users and tokens and watches the figures; a non-admin gets no console', { timeout: 180_000 }, async (t) => {
  mkdirSync(OUT, { recursive: true })
  const dataDir = tempDir('warbler-web-admin-')
  addUser(dataDir, 'root', true)
  addUser(dataDir, 'bob', false)
  const node = await spawnNode(['--sys-interval', '1'], { dataDir })
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] })
  t.after(async () => {
    await browser.close()
    await node.stop()
  })
  const base = `http://127.0.0.1:${node.ports.http ?? 0}/`
  const mqttUrl = `mqtt://127.0.0.1:${node.ports.mqtt ?? 0}`

  // The page before login: a strict CSP, no inline script, and no admin data in it.
  const raw = await fetch(`${base}admin`)
  const csp = raw.headers.get('content-security-policy') ?? ''
  assert.match(csp, /script-src 'self';/)
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/)
  const html = await raw.text()
  assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)/, 'no inline script')
  assert.doesNotMatch(html, /\bbob\b|\broot\b|wbd\./, 'no admin data before login')

  const admin = await page(browser, DESKTOP)
  await admin.page.goto(`${base}admin`)
  await admin.page.getByRole('heading', { name: 'Admin console' }).waitFor()
  await shot(admin.page, 'login-desktop')
  await logIn(admin.page, `${base}admin`, 'root', PASSWORDS.root)
  await admin.page.locator('#nav-figures').waitFor()
  await figuresMove(admin.page, mqttUrl)
  await shot(admin.page, 'figures-desktop')

  // A new user, password generated and shown once; with the keyboard to the section.
  await admin.page.locator('#nav-users').focus()
  await admin.page.keyboard.press('Enter')
  assert.equal(await admin.page.locator('#users').isVisible(), true)
  await admin.page.getByLabel('Name', { exact: true }).fill('dana')
  await admin.page.getByRole('button', { name: 'Add user' }).click()
  const status = admin.page.locator('#users-status', { hasText: 'Password of dana' })
  await status.waitFor()
  const danaPassword = /\(shown once\): (\S+)$/.exec(await status.textContent() ?? '')?.[1] ?? ''
  assert.ok(danaPassword.length >= 8)
  await admin.page.locator('#users-table td', { hasText: /^dana$/ }).waitFor()
  await shot(admin.page, 'users-desktop')

  // A device token for dana: shown once with its QR code, which holds the provisioning JSON.
  await admin.page.locator('#nav-tokens').click()
  await admin.page.locator('#token-user').selectOption('dana')
  await admin.page.getByLabel('Device name').fill('kitchen esp32')
  await admin.page.getByRole('button', { name: 'Create token' }).click()
  await admin.page.locator('#new-token-qr').waitFor()
  const token = await admin.page.locator('#new-token-value').textContent() ?? ''
  const clientId = await admin.page.locator('#new-token-client').textContent() ?? ''
  assert.match(token, /^wbd\.[0-9a-f]{16}\./)
  assert.equal(clientId, 'dana-kitchen-esp32')
  const payload = JSON.stringify({ broker: `mqtt://127.0.0.1:${node.ports.mqtt ?? 0}`, username: 'dana', clientId, token })
  assert.deepEqual(await qrModules(admin.page), expectedModules(payload), 'the QR code encodes the broker URL, client id and token')
  await shot(admin.page, 'token-desktop')
  await admin.page.setViewportSize(PHONE)
  await shot(admin.page, 'token-phone')
  assert.equal(await connackCode(mqttUrl, { username: 'dana', password: token, clientId }), 0, 'the device connects with the token')

  // Dana logs in to the chat app with the generated password.
  const dana = await page(browser, PHONE)
  await logIn(dana.page, base, 'dana', danaPassword)
  await dana.page.locator('#state[data-state="connected"]').waitFor()
  await dana.page.context().close()

  // Disabled from the console, dana's device is refused; enabled, it connects again.
  await admin.page.locator('#nav-users').click()
  await admin.page.locator('button.toggle-disabled[data-user="dana"]').click()
  await admin.page.locator('#users-status', { hasText: 'dana is disabled' }).waitFor()
  await admin.page.locator('#users-table td', { hasText: 'user (disabled)' }).waitFor()
  assert.equal(await connackCode(mqttUrl, { username: 'dana', password: token, clientId }), 4)
  await admin.page.locator('button.toggle-disabled[data-user="dana"]', { hasText: 'Enable' }).click()
  await admin.page.locator('#users-status', { hasText: 'dana may log in again' }).waitFor()
  assert.equal(await connackCode(mqttUrl, { username: 'dana', password: token, clientId }), 0)
  await shot(admin.page, 'users-phone')

  await nodeSection(admin.page, mqttUrl)
  await admin.page.locator('#nav-figures').click()
  await shot(admin.page, 'figures-phone')
  assert.deepEqual(admin.dialogs, [])

  await notAdmin(browser, base, mqttUrl)

  // In Chinese.
  const zh = await page(browser, DESKTOP, 'zh-CN')
  await zh.page.goto(`${base}admin`)
  await zh.page.getByRole('heading', { name: '管理控制台' }).waitFor()
  await shot(zh.page, 'login-desktop-zh')
})
