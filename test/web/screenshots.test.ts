/**
 * Every page of the web app and of the admin console, at desktop and phone
 * sizes, in a real browser against a `warbler start --workers 2` node on
 * Redis: the app's login, conversation list, a conversation, a group with
 * its members panel and search results; the console's login and each of its
 * sections. The console charts each worker apart (two sets of charts, one
 * per `$SYS/broker/node/NODE/WORKER`) and lists the refused logins of both
 * workers, each naming its worker. Screenshots are left in
 * test-output/web/page-*.png (README.md shows copies of them).
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync, rmSync } from 'node:fs'
import { test } from 'node:test'
import { chromium, type Page } from 'playwright-core'
import { Warbler } from '../../sdk/src/index.js'
import { startRedis } from '../helpers/redis.js'
import { CLI, connackCode, spawnNode, tempDir } from '../helpers/test-node.js'
import { DESKTOP, logIn, OUT, password, PHONE, shot, tab } from './web-session.js'

/** Back to the conversation list on a phone, where a conversation covers it. */
async function toList (p: Page): Promise<void> {
  const back = p.locator('.conv-head .back')
  if (await back.isVisible()) await back.click()
}

test('screenshots of every page at desktop and phone sizes; the console shows each of 2 workers', { timeout: 240_000 }, async (t) => {
  mkdirSync(OUT, { recursive: true })
  const redis = await startRedis()
  t.after(() => redis.stop())
  const dataDir = tempDir('warbler-web-pages-')
  t.after(() => rmSync(dataDir, { recursive: true, force: true }))
  for (const [u, admin] of [['alice', false], ['bob', false], ['carol', false], ['root', true]] as const) {
    const r = spawnSync(process.execPath, [CLI, 'user', 'add', u, '--password-stdin', '--data-dir', dataDir, ...(admin ? ['--admin'] : [])], { input: password(u), encoding: 'utf8', timeout: 30_000 })
    assert.equal(r.status, 0, r.stderr)
  }
  const node = await spawnNode(['--workers', '2', '--redis', redis.url, '--sys-interval', '1'], { dataDir, timeoutMs: 60_000 })
  t.after(async () => { await node.stop() })
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] })
  t.after(async () => { await browser.close() })
  const base = `http://127.0.0.1:${node.ports.http ?? 0}/`
  const mqttUrl = `mqtt://127.0.0.1:${node.ports.mqtt ?? 0}`

  // Something to show: a direct chat, a group, a message to find; refused logins on both workers (connections go round-robin).
  const carol = await Warbler.connect({ url: `ws://127.0.0.1:${node.ports.ws ?? 0}/mqtt`, username: 'carol', password: password('carol'), device: 'pages' })
  t.after(async () => { await carol.close() })
  await carol.send({ to: 'alice' }, 'are we climbing on sunday?')
  await carol.send({ to: 'alice' }, 'the needle: bring the long rope')
  const group = await carol.createGroup('Crag', ['alice', 'bob'])
  await carol.send({ conv: group.conv }, 'meet at 9 at the car park')
  for (let i = 0; i < 4; i++) assert.equal(await connackCode(mqttUrl, { username: 'dana', password: 'no-such-user-pw', clientId: `dana-${i}` }), 4)

  for (const [size, viewport] of [['desktop', DESKTOP], ['phone', PHONE]] as const) {
    const alice = await tab(browser, viewport)
    await alice.page.goto(base)
    await alice.page.getByLabel('User name').waitFor()
    await shot(alice.page, `page-app-login-${size}`)
    await logIn(alice, base, 'alice')
    await alice.page.locator('.conv-item', { hasText: 'Crag' }).waitFor()
    await alice.page.locator('.conv-item[data-conv="d:alice:carol"]').waitFor()
    await shot(alice.page, `page-app-list-${size}`)
    await alice.page.locator('.conv-item[data-conv="d:alice:carol"]').click()
    await alice.page.locator('#messages .body', { hasText: 'bring the long rope' }).waitFor()
    await shot(alice.page, `page-app-conversation-${size}`)
    await toList(alice.page)
    await alice.page.locator('.conv-item', { hasText: 'Crag' }).click()
    await alice.page.locator('#messages .body', { hasText: 'meet at 9' }).waitFor()
    await alice.page.getByRole('button', { name: 'Members' }).click()
    await alice.page.locator('#group-panel .members li', { hasText: 'bob' }).waitFor()
    await shot(alice.page, `page-app-group-${size}`)
    await toList(alice.page)
    await alice.page.getByLabel('Find in chats').fill('needle')
    await alice.page.getByRole('button', { name: 'Search', exact: true }).click()
    await alice.page.locator('#search-results .result', { hasText: 'bring the long rope' }).waitFor()
    await shot(alice.page, `page-app-search-${size}`)
    await alice.context.close()

    const root = await tab(browser, viewport)
    await root.page.goto(`${base}admin`)
    await root.page.getByRole('heading', { name: 'Admin console' }).waitFor()
    await shot(root.page, `page-console-login-${size}`)
    await root.page.getByLabel('User name').fill('root')
    await root.page.getByLabel('Password').fill(password('root'))
    await root.page.getByRole('button', { name: 'Log in' }).click()
    await root.page.locator('#feed-state[data-state="live"]').waitFor()
    // One set of charts per worker, each filled with samples.
    await root.page.waitForFunction(() => document.querySelectorAll('#figures .broker').length === 2 &&
      Number(document.querySelector('#fig-1-connected')?.getAttribute('data-samples') ?? 0) >= 5)
    const roots = await root.page.locator('#figures .broker').evaluateAll((els) => els.map((e) => e.getAttribute('data-root') ?? '').sort())
    assert.deepEqual(roots.map((r) => r.replace(/^\$SYS\/broker\/node\/[^/]+\//, '')), ['0', '1'], roots.join(', '))
    await shot(root.page, `page-console-figures-${size}`)
    for (const [section, ready] of [['users', '#users td'], ['tokens', '#tokens h2'], ['groups', '#groups td']] as const) {
      await root.page.locator(`#nav-${section}`).click()
      await root.page.locator(ready).first().waitFor()
      await shot(root.page, `page-console-${section}-${size}`)
    }
    await root.page.locator('#nav-node').click()
    // Attached, not visible: a phone shows table rows without their heads.
    await root.page.locator('#refusals-table th', { hasText: 'Worker' }).waitFor({ state: 'attached' })
    const workers = await root.page.locator('#refusals-table tbody tr').evaluateAll((rows) => rows.map((r) => r.lastElementChild?.textContent ?? ''))
    assert.deepEqual(new Set(workers), new Set(['0', '1']), 'refusals of both workers, each naming its worker')
    await shot(root.page, `page-console-node-${size}`)
    assert.deepEqual([...alice.dialogs, ...root.dialogs], [])
    await root.context.close()
  }
})
