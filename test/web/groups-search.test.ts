/**
 * Groups and search in the web app, in real browsers: create a group with a
 * name and members, add, remove, rename, leave, each shown to the members as
 * a line of text, per-member read receipts; a bad member name is refused
 * with its name and changes nothing. Search lists conversation and text and
 * opens the conversation at the message found, loading older pages to reach
 * it. Hostile bodies (markup, javascript: links, 64 levels of nesting, 256 KB)
 * show as text without holding up the page.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Page } from 'playwright-core'
import { Warbler } from '../../sdk/src/index.js'
import { DESKTOP, logIn, nodeAndBrowser, password, PHONE, shot, tab } from './web-session.js'

const systemLines = async (page: Page): Promise<string[]> => await page.locator('#messages .system').allTextContents()

test('web app: groups (create, add, remove, rename, leave) with system lines and per-member receipts', { timeout: 150_000 }, async (t) => {
  const env = await nodeAndBrowser(['alice', 'bob', 'carol', 'dave'])
  t.after(env.stop)
  const { base, browser } = env
  const alice = await tab(browser, DESKTOP)
  const bob = await tab(browser, PHONE)
  await logIn(alice, base, 'alice')
  await logIn(bob, base, 'bob')

  // Create: a name and members.
  await alice.page.getByText('New group', { exact: true }).click()
  await alice.page.getByLabel('Group name', { exact: true }).fill('Climbers')
  await alice.page.getByLabel('Members (user names, comma-separated)').fill('bob, carol')
  await shot(alice.page, 'new-group-desktop')
  await alice.page.getByRole('button', { name: 'Create' }).click()
  await alice.page.locator('#title', { hasText: 'Climbers' }).waitFor()
  await alice.page.locator('#messages .system', { hasText: 'alice created the group “Climbers” with bob, carol' }).waitFor()
  await bob.page.locator('.conv-item', { hasText: 'Climbers' }).waitFor()

  // The members panel: a bad name is refused, naming it, and nothing changes.
  await alice.page.getByRole('button', { name: 'Members' }).click()
  await alice.page.locator('#group-panel .members li', { hasText: 'carol' }).waitFor()
  await alice.page.getByLabel('Add member').fill('Not A User!')
  await alice.page.getByRole('button', { name: 'Add', exact: true }).click()
  await alice.page.locator('#group-panel .error', { hasText: 'Could not do that: “Not”' }).waitFor()
  assert.equal((await systemLines(alice.page)).length, 1)
  assert.equal(await alice.page.locator('#group-panel .members li').count(), 3)

  // Add dave, remove carol, rename.
  await alice.page.getByLabel('Add member').fill('dave')
  await alice.page.getByRole('button', { name: 'Add', exact: true }).click()
  await alice.page.locator('#messages .system', { hasText: 'alice added dave' }).waitFor()
  await alice.page.getByRole('button', { name: 'Remove carol' }).click()
  await alice.page.locator('#messages .system', { hasText: 'alice removed carol' }).waitFor()
  await alice.page.locator('#group-panel .members li', { hasText: 'carol' }).waitFor({ state: 'detached' })
  await alice.page.getByLabel('New group name').fill('Crag')
  await alice.page.getByRole('button', { name: 'Rename' }).click()
  await alice.page.locator('#messages .system', { hasText: 'alice renamed the group to “Crag”' }).waitFor()
  await alice.page.locator('#title', { hasText: 'Crag' }).waitFor()
  await alice.page.locator('#group-panel .members li', { hasText: 'dave' }).waitFor()
  assert.deepEqual((await alice.page.locator('#group-panel .members .who').allTextContents()).sort(), ['alice', 'bob', 'dave'])
  await shot(alice.page, 'group-members-desktop')

  // Per-member receipts: who has read it.
  await alice.page.getByLabel('Message').fill('who is in for sunday?')
  await alice.page.getByRole('button', { name: 'Send' }).click()
  await bob.page.locator('.conv-item', { hasText: 'Crag' }).click()
  await bob.page.locator('#messages .body', { hasText: 'who is in for sunday?' }).waitFor()
  await alice.page.locator('#messages .msg.mine [data-receipt="readBy"]', { hasText: 'read by bob' }).waitFor()
  assert.deepEqual(await systemLines(bob.page), ['alice created the group “Climbers” with bob, carol', 'alice added dave', 'alice removed carol', 'alice renamed the group to “Crag”'])
  await shot(bob.page, 'group-phone')

  // Bob, a plain member, is offered no removing, adding or renaming, only leaving.
  await bob.page.getByRole('button', { name: 'Members' }).click()
  await bob.page.locator('#group-panel .members li', { hasText: 'alice' }).waitFor()
  assert.equal(await bob.page.locator('#group-panel .members button').count(), 0, 'Remove buttons for a plain member')
  assert.equal(await bob.page.locator('#group-panel form:visible').count(), 0, 'add and rename forms for a plain member')
  assert.equal(await alice.page.locator('#group-panel form:visible').count(), 2)

  // Bob leaves: the group goes from his list; alice sees the line.
  await bob.page.getByRole('button', { name: 'Leave group' }).click()
  await bob.page.locator('.conv-item', { hasText: 'Crag' }).waitFor({ state: 'detached' })
  await alice.page.locator('#messages .system', { hasText: 'bob left the group' }).waitFor()
  await alice.page.locator('#group-panel .members li', { hasText: 'bob' }).waitFor({ state: 'detached' })
  assert.deepEqual(alice.dialogs, [])
  assert.deepEqual(bob.dialogs, [])
})

test('web app: search opens the conversation at the message; hostile bodies render as text without freezing', { timeout: 150_000 }, async (t) => {
  const env = await nodeAndBrowser(['alice', 'bob', 'carol'])
  t.after(env.stop)
  const { base, browser, node } = env
  const carol = await Warbler.connect({ url: `ws://127.0.0.1:${node.ports.ws ?? 0}/mqtt`, username: 'carol', password: password('carol'), device: 'node' })
  t.after(async () => { await carol.close() })
  for (let i = 1; i <= 45; i++) await carol.send({ to: 'bob' }, i === 3 ? 'the needle is in carol 3' : `carol ${i}`)

  const bob = await tab(browser, DESKTOP)
  await logIn(bob, base, 'bob')
  await bob.page.getByLabel('Find in chats').fill('needle')
  await bob.page.getByRole('button', { name: 'Search', exact: true }).click()
  const result = bob.page.locator('#search-results .result', { hasText: 'the needle is in carol 3' })
  await result.waitFor()
  assert.equal(await result.locator('.name').textContent(), 'carol')
  await shot(bob.page, 'search-desktop')
  await result.click()
  // Message 3 is two pages back: it was loaded, marked, scrolled to and focused.
  const found = bob.page.locator('#messages li.found[data-seq="3"]')
  await found.waitFor()
  assert.equal(await found.locator('.body').textContent(), 'the needle is in carol 3')
  assert.equal(await bob.page.evaluate(() => document.activeElement?.getAttribute('data-seq')), '3')
  assert.ok(await found.isVisible())
  await bob.page.getByLabel('Find in chats').fill('nothing-like-this')
  await bob.page.getByRole('button', { name: 'Search', exact: true }).click()
  await bob.page.locator('#search-results', { hasText: 'Nothing found.' }).waitFor()

  // Hostile bodies from carol, while bob has the conversation open.
  let nested: unknown = 'deep'
  for (let i = 0; i < 63; i++) nested = [nested]
  const big = 'x'.repeat(250 * 1024) + ' end of the big one'
  const hostile: unknown[] = [
    '<img src=x onerror=alert(1)>',
    'javascript:alert(document.cookie)',
    '[click me](javascript:alert(2)) <a href="javascript:alert(3)">link</a>',
    '['.repeat(64) + '<b>'.repeat(64) + 'nested' + '</b>'.repeat(64) + ']'.repeat(64),
    nested,
    { text: '<script>alert(4)</script>' },
    big
  ]
  const before = await bob.page.evaluate(() => performance.now())
  for (const body of hostile) await carol.send({ to: 'bob' }, body)
  await bob.page.locator('#messages .body', { hasText: 'end of the big one' }).waitFor()
  const took = await bob.page.evaluate((t0) => performance.now() - t0, before)
  // The page still answers at once: nothing froze it.
  const t0 = Date.now()
  assert.equal(await bob.page.evaluate(() => 1 + 1), 2)
  assert.ok(Date.now() - t0 < 2000, `page answered in ${Date.now() - t0} ms`)
  assert.ok(took < 10_000, `hostile bodies shown in ${Math.round(took)} ms`)
  const shown = await bob.page.locator('#messages .body').allTextContents()
  assert.deepEqual(shown.slice(-7, -1), [
    '<img src=x onerror=alert(1)>', 'javascript:alert(document.cookie)',
    '[click me](javascript:alert(2)) <a href="javascript:alert(3)">link</a>',
    '['.repeat(64) + '<b>'.repeat(64) + 'nested' + '</b>'.repeat(64) + ']'.repeat(64),
    JSON.stringify(nested), '<script>alert(4)</script>'
  ])
  assert.equal(shown.at(-1)?.length, big.length)
  assert.equal(await bob.page.locator('#messages img, #messages a, #messages script, #messages b').count(), 0, 'no element made of a body')
  assert.equal(await bob.page.locator('a[href^="javascript:"]').count(), 0)
  assert.deepEqual(bob.dialogs, [], 'no script ran')
  await shot(bob.page, 'hostile-desktop')
})
