/**
 * The web app by keyboard and for screen readers: every control reached by
 * Tab in reading order with a visible focus ring, a conversation opened and
 * a message sent without the mouse, a name on every input and button, text
 * contrast at least WCAG AA (4.5:1) against what is behind it, and the new
 * controls in Chinese for a Chinese browser.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Page } from 'playwright-core'
import { Warbler } from '../../sdk/src/index.js'
import { DESKTOP, logIn, nodeAndBrowser, password, PHONE, shot, tab } from './web-session.js'

/** What has the focus: its id, else its accessible text; with whether a focus ring shows. */
async function focused (page: Page): Promise<{ name: string, ring: boolean }> {
  return await page.evaluate(() => {
    const e = document.activeElement as HTMLElement | null
    if (e === null || e === document.body) return { name: 'body', ring: false }
    const s = getComputedStyle(e)
    const text = e.classList.contains('conv-item') ? e.querySelector('.name')?.textContent : e.textContent
    const name = e.id !== '' ? `#${e.id}` : (e.getAttribute('aria-label') ?? text ?? '').trim().slice(0, 30)
    return { name, ring: s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2 }
  })
}

/** Inputs without a label and buttons without a name, and text below 4.5:1 contrast (with its colours). */
async function audit (page: Page): Promise<{ unnamed: string[], lowContrast: string[], pairs: string[] }> {
  return await page.evaluate(() => {
    const unnamed: string[] = []
    for (const i of Array.from(document.querySelectorAll<HTMLInputElement>('input'))) {
      if (i.type === 'hidden') continue
      const label = Array.from(i.labels ?? []).map((l) => l.textContent ?? '').join('').trim() || (i.getAttribute('aria-label') ?? '')
      if (label === '') unnamed.push(`input#${i.id}`)
    }
    for (const b of Array.from(document.querySelectorAll('button, summary'))) {
      if (((b.getAttribute('aria-label') ?? '') || (b.textContent ?? '')).trim() === '') unnamed.push(b.outerHTML.slice(0, 60))
    }
    const rgb = (c: string): number[] => (c.match(/[\d.]+/g) ?? []).map(Number)
    const lum = (c: number[]): number => {
      const [r, g, b] = c.slice(0, 3).map((v) => { const s = v / 255; return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4 }) as [number, number, number]
      return 0.2126 * r + 0.7152 * g + 0.0722 * b
    }
    const behind = (e: Element | null): number[] => {
      for (let x = e; x !== null; x = x.parentElement) {
        const c = rgb(getComputedStyle(x).backgroundColor)
        if (c.length === 3 || (c[3] ?? 0) > 0.5) return c
      }
      return [255, 255, 255]
    }
    const lowContrast: string[] = []
    const pairs = new Set<string>()
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT)
    for (let n = walker.nextNode(); n !== null; n = walker.nextNode()) {
      const e = n.parentElement
      if (e === null || (n.textContent ?? '').trim() === '' || e.closest('[hidden], .sr-only, button:disabled') !== null) continue
      const r = e.getBoundingClientRect()
      if (r.width === 0 || r.height === 0) continue
      const fg = rgb(getComputedStyle(e).color)
      const bg = behind(e)
      const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a) as [number, number]
      const ratio = (hi + 0.05) / (lo + 0.05)
      pairs.add(`${getComputedStyle(e).color} on ${`rgb(${bg.slice(0, 3).join(', ')})`}: ${ratio.toFixed(1)}`)
      if (ratio < 4.5) lowContrast.push(`${e.className || e.tagName} "${(n.textContent ?? '').trim().slice(0, 20)}" ${ratio.toFixed(2)}`)
    }
    return { unnamed, lowContrast, pairs: [...pairs].sort() }
  })
}

test('web app: by keyboard alone, labelled, with AA contrast; the new controls in Chinese', { timeout: 120_000 }, async (t) => {
  const env = await nodeAndBrowser(['alice', 'bob', 'carol'])
  t.after(env.stop)
  const { base, browser, node } = env
  const bob = await Warbler.connect({ url: `ws://127.0.0.1:${node.ports.ws ?? 0}/mqtt`, username: 'bob', password: password('bob'), device: 'node' })
  t.after(async () => { await bob.close() })
  await bob.send({ to: 'alice' }, 'hi alice')
  // Alice is an admin of bob's group: she may add, rename and remove carol,
  // but not remove bob, the owner (the panel offers only what she may do).
  const readers = await bob.createGroup('Readers', ['alice', 'carol'])
  await bob.setRole(readers.conv, 'alice', 'admin')

  const alice = await tab(browser, DESKTOP)
  await logIn(alice, base, 'alice')
  await alice.page.locator('.conv-item', { hasText: 'Readers' }).waitFor()
  await alice.page.evaluate(() => { (document.activeElement as HTMLElement | null)?.blur() })

  // Tab from the top: the order on the screen, each with its focus ring; Enter opens the chat.
  const order: string[] = []
  for (let i = 0; i < 15 && !order.includes('bob'); i++) {
    await alice.page.keyboard.press('Tab')
    const f = await focused(alice.page)
    assert.ok(f.ring, `a visible focus ring on ${f.name}`)
    order.push(f.name)
  }
  assert.deepEqual(order.filter((n) => n !== '#notify'), ['#logout', '#search', 'Search', '#new-chat', 'Open', 'New group', 'Readers', 'bob'])
  await alice.page.keyboard.press('Enter')
  assert.equal((await focused(alice.page)).name, '#message', 'opening a chat puts the focus in the message box')
  await alice.page.keyboard.type('sent by keyboard')
  await alice.page.keyboard.press('Enter')
  await alice.page.locator('#messages .msg.mine:not(.pending)', { hasText: 'sent by keyboard' }).waitFor()
  const direct = await audit(alice.page)
  assert.deepEqual(direct.lowContrast, [], `text contrast at least 4.5:1; pairs seen:\n${direct.pairs.join('\n')}`)
  await alice.page.keyboard.press('Tab')
  assert.equal((await focused(alice.page)).name, 'Send')
  await alice.page.keyboard.press('Shift+Tab')
  await alice.page.keyboard.press('Shift+Tab')
  assert.equal((await focused(alice.page)).name, '#messages', 'the message list scrolls by keyboard')

  // The group's panel, opened by keyboard: Members, then its controls in order.
  await alice.page.locator('.conv-item', { hasText: 'Readers' }).focus()
  await alice.page.keyboard.press('Enter')
  await alice.page.locator('#members-toggle').focus()
  await alice.page.keyboard.press('Enter')
  await alice.page.locator('#group-panel .members li', { hasText: 'bob' }).waitFor()
  assert.equal(await alice.page.locator('#members-toggle').getAttribute('aria-expanded'), 'true')
  const panel: string[] = []
  for (let i = 0; i < 6; i++) { await alice.page.keyboard.press('Tab'); panel.push((await focused(alice.page)).name) }
  assert.deepEqual(panel, ['Remove carol', '#add-member', 'Add', '#rename-group', 'Rename', '#leave-group'])
  await alice.page.getByText('New group', { exact: true }).click()
  const a = await audit(alice.page)
  assert.deepEqual(a.unnamed, [], 'every input labelled, every button named')
  assert.deepEqual(a.lowContrast, [], `text contrast at least 4.5:1; pairs seen:\n${a.pairs.join('\n')}`)
  console.log(`colours checked:\n${[...new Set([...direct.pairs, ...a.pairs])].join('\n')}`)
  await shot(alice.page, 'keyboard-desktop')

  // Chinese: the new controls and lines are in Chinese too.
  const zh = await tab(browser, PHONE, { locale: 'zh-CN' })
  await logIn(zh, base, 'alice', { user: '用户名', password: '密码', logIn: '登录' })
  await zh.page.getByLabel('在聊天中查找').waitFor()
  assert.equal(await zh.page.getByRole('button', { name: '搜索' }).count(), 1)
  await zh.page.getByText('新建群组', { exact: true }).click()
  await zh.page.getByLabel('群组名称', { exact: true }).waitFor()
  await zh.page.getByLabel('成员（用户名，以逗号分隔）').waitFor()
  await zh.page.locator('.conv-item', { hasText: 'Readers' }).click()
  await zh.page.locator('#messages .system', { hasText: 'bob 创建了群组“Readers”，成员：alice' }).waitFor()
  await zh.page.getByRole('button', { name: '成员' }).click()
  await zh.page.getByRole('button', { name: '退出群组' }).waitFor()
  await shot(zh.page, 'group-phone-zh')
  const text = await zh.page.evaluate(() => document.body.innerText)
  for (const en of ['Find in chats', 'New group', 'Members', 'Leave group', 'created the group']) assert.ok(!text.includes(en), `no English "${en}"`)
  const za = await audit(zh.page)
  assert.deepEqual(za.unnamed, [])
  assert.deepEqual(za.lowContrast, [])
})
