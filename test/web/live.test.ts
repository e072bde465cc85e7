/**
 * The web app between two members in real browsers: receipts (sent,
 * delivered, read), typing notices that clear by themselves, presence
 * (online dot, last seen), the aria-live announcement and desktop
 * notifications of messages that arrive while the page is hidden, and a
 * message written with the network cut that waits as pending and is
 * delivered once when the network is back.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Page } from 'playwright-core'
import mqtt from 'mqtt'
import { Warbler } from '../../sdk/src/index.js'
import type { SpawnedNode } from '../helpers/test-node.js'
import { bodies, DESKTOP, logIn, nodeAndBrowser, password, PHONE, shot, tab } from './web-session.js'

/**
 * Runs in the page before the app: records every Notification made and lets
 * the test say whether the page is hidden (headless pages are never hidden).
 */
function watchNotifications (): void {
  const w = window as unknown as { notes: Array<{ title: string, body: string }>, setHidden: (v: boolean) => void }
  w.notes = []
  let hidden = false
  w.setHidden = (v) => { hidden = v }
  Object.defineProperty(Document.prototype, 'visibilityState', { configurable: true, get: () => hidden ? 'hidden' : 'visible' })
  const Real = window.Notification
  const Fake = function (title: string, opts?: NotificationOptions) {
    w.notes.push({ title, body: opts?.body ?? '' })
    return new Real(title, opts)
  } as unknown as typeof Notification
  Object.defineProperty(Fake, 'permission', { get: () => Real.permission })
  Object.defineProperty(Fake, 'requestPermission', { value: Real.requestPermission.bind(Real) })
  window.Notification = Fake
}

/** How many sends the page's IndexedDB outboxes still hold. */
async function outboxLeft (page: Page): Promise<number> {
  return await page.evaluate(async () => {
    const req = <T>(r: IDBRequest<T> | IDBOpenDBRequest): Promise<T> => new Promise((resolve, reject) => {
      r.onsuccess = () => { resolve(r.result as T) }
      r.onerror = () => { reject(new Error(String(r.error))) }
    })
    let left = 0
    for (const d of await indexedDB.databases()) {
      if (d.name?.startsWith('warbler-outbox-') !== true) continue
      const db = await req<IDBDatabase>(indexedDB.open(d.name))
      for (const store of Array.from(db.objectStoreNames)) left += await req<number>(db.transaction(store).objectStore(store).count())
      db.close()
    }
    return left
  })
}

/**
 * Chromium's offline mode holds an open WebSocket rather than closing it, so
 * the link is cut for real too: another connection takes the tab's client id
 * over and the broker closes the tab's connection, which cannot come back
 * while the browser is offline. What is typed then can only go from the
 * outbox, after a reconnect. Returns the tab's connections so far and a
 * counter of them, from the node's log.
 */
async function cutTheLink (node: SpawnedNode, page: Page): Promise<{ before: number, connects: () => number }> {
  const device = await page.evaluate(() => sessionStorage.getItem('warbler.device'))
  assert.ok(device !== null, 'the tab has a device name')
  const tabId = `"clientId":"alice-${device}"`
  const lines = (what: string): string[] => (node.stdout() + node.stderr()).split('\n').filter((l) => l.includes(what) && l.includes(tabId))
  const connects = (): number => lines('client connected').length
  const before = connects()
  const kick = await mqtt.connectAsync(`mqtt://127.0.0.1:${node.ports.mqtt ?? 0}`, { clientId: `alice-${device}`, username: 'alice', password: password('alice'), protocolVersion: 4, reconnectPeriod: 0 })
  await kick.endAsync()
  for (const deadline = Date.now() + 10_000; !lines('client disconnected').some((l) => l.includes('takeover'));) {
    assert.ok(Date.now() < deadline, 'the tab\'s connection was taken over')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return { before, connects }
}

test('web app: receipts, typing, presence, notifications while hidden, and a send while offline delivered once', { timeout: 150_000 }, async (t) => {
  const env = await nodeAndBrowser(['alice', 'bob', 'carol'])
  t.after(env.stop)
  const { base, browser, node } = env
  const ws = `ws://127.0.0.1:${node.ports.ws ?? 0}/mqtt`

  // Carol wrote to alice earlier and is gone: alice sees when she was last seen.
  const carol = await Warbler.connect({ url: ws, username: 'carol', password: password('carol'), device: 'node' })
  await carol.send({ to: 'alice' }, 'carol was here')
  await carol.close()

  const alice = await tab(browser, DESKTOP, { permissions: ['notifications'], init: watchNotifications })
  const bob = await tab(browser, PHONE)
  await logIn(alice, base, 'alice')
  await logIn(bob, base, 'bob')
  // Notifications were granted to alice's browser: nothing to ask; bob's may still be asked, on a click.
  assert.equal(await alice.page.locator('#notify').isVisible(), false)
  assert.equal(await bob.page.getByRole('button', { name: 'Turn on notifications' }).isVisible(), await bob.page.evaluate(() => Notification.permission) === 'default', await bob.page.evaluate(() => Notification.permission))

  // Presence: carol offline with a last-seen time, bob online with the dot.
  await alice.page.locator('.conv-item', { hasText: 'carol' }).click()
  await alice.page.locator('#presence', { hasText: /last seen/ }).waitFor()
  assert.equal(await alice.page.locator('#presence').getAttribute('data-online'), 'false')
  // A message to someone offline is sent, not delivered.
  await alice.page.getByLabel('Message').fill('are you there carol?')
  await alice.page.getByRole('button', { name: 'Send' }).click()
  await alice.page.locator('#messages .msg.mine', { hasText: 'are you there carol?' }).locator('[data-receipt="sent"]').waitFor()
  assert.equal(await alice.page.locator('#messages .msg.mine [data-receipt]').last().textContent(), 'sent')

  await alice.page.getByLabel('Chat with user').fill('bob')
  await alice.page.getByRole('button', { name: 'Open' }).click()
  await alice.page.locator('#presence[data-online="true"]', { hasText: 'online' }).waitFor()

  // Receipts: delivered to bob's open app (his list), read once he opens the chat.
  await alice.page.getByLabel('Message').fill('hello bob')
  await alice.page.getByRole('button', { name: 'Send' }).click()
  const mine = alice.page.locator('#messages .msg.mine', { hasText: 'hello bob' })
  await mine.locator('[data-receipt="delivered"]').waitFor()
  await shot(alice.page, 'receipts-desktop')
  await bob.page.locator('.conv-item', { hasText: 'alice' }).click()
  await mine.locator('[data-receipt="read"]', { hasText: 'read' }).waitFor()

  // Typing: bob types, alice sees it, and it clears by itself a few seconds later.
  await bob.page.getByLabel('Message').pressSequentially('hi al')
  await alice.page.locator('#typing', { hasText: 'bob is typing…' }).waitFor()
  await shot(alice.page, 'typing-desktop')
  await alice.page.locator('#typing:empty').waitFor({ timeout: 10_000 })

  // A new message is read out (aria-live) and, while the page is hidden, notified.
  await alice.page.evaluate(() => { (window as unknown as { setHidden: (v: boolean) => void }).setHidden(true) })
  await bob.page.getByLabel('Message').fill('ping while hidden')
  await bob.page.getByRole('button', { name: 'Send' }).click()
  await alice.page.locator('#announce', { hasText: 'bob: ping while hidden' }).waitFor()
  assert.equal(await alice.page.locator('#announce').getAttribute('aria-live'), 'polite')
  await alice.page.waitForFunction(() => (window as unknown as { notes: unknown[] }).notes.length > 0)
  const notes = await alice.page.evaluate(() => (window as unknown as { notes: Array<{ title: string, body: string }> }).notes)
  assert.deepEqual(notes, [{ title: 'New message: bob', body: 'bob: ping while hidden' }])
  await alice.page.evaluate(() => { (window as unknown as { setHidden: (v: boolean) => void }).setHidden(false) })
  await bob.page.getByLabel('Message').fill('ping while shown')
  await bob.page.getByRole('button', { name: 'Send' }).click()
  await alice.page.locator('#announce', { hasText: 'bob: ping while shown' }).waitFor()
  assert.equal(await alice.page.evaluate(() => (window as unknown as { notes: unknown[] }).notes.length), 1, 'no notification while the page is shown')

  // Offline: the network goes, the bar says so, a message waits as pending...
  await alice.context.setOffline(true)
  await alice.page.locator('#state[data-state="offline"]').waitFor()
  const cut = await cutTheLink(node, alice.page)
  await alice.page.getByLabel('Message').fill('written offline')
  await alice.page.getByRole('button', { name: 'Send' }).click()
  const pending = alice.page.locator('#messages .msg.pending', { hasText: 'written offline' })
  await pending.locator('.note', { hasText: 'sending…' }).waitFor()
  await shot(alice.page, 'offline-pending-desktop')
  assert.ok(!(await bodies(bob.page)).includes('written offline'))
  // ...and goes once the network is back, once.
  await alice.context.setOffline(false)
  await alice.page.locator('#messages .msg:not(.pending)', { hasText: 'written offline' }).waitFor()
  await pending.waitFor({ state: 'detached' })
  await bob.page.locator('#messages .body', { hasText: 'written offline' }).waitFor()
  await alice.page.locator('#state[data-state="connected"]').waitFor()
  // The tab connected again (the takeover's connection and the tab's own new one): the send went from the outbox.
  assert.ok(cut.connects() >= cut.before + 2, 'the tab reconnected after the cut')
  assert.equal((await bodies(bob.page)).filter((b) => b === 'written offline').length, 1, 'bob shows it once')
  const reader = await Warbler.connect({ url: ws, username: 'bob', password: password('bob'), device: 'check' })
  t.after(async () => { await reader.close() })
  const history = await reader.history('d:alice:bob', { limit: 100 })
  assert.equal(history.messages.filter((m) => m.body === 'written offline').length, 1, 'stored once')
  assert.equal(await outboxLeft(alice.page), 0, 'the outbox is empty again: nothing left to send twice')
  assert.deepEqual(alice.dialogs, [])
})
