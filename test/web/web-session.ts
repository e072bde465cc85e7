/**
 * What the browser tests of the web app share: a `warbler start` with users
 * made by the CLI, Debian's Chromium driven by playwright-core, a browser
 * context per user (own storage and IndexedDB) that records dialogs, and
 * screenshots kept in test-output/web/.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core'
import { CLI, spawnNode, type SpawnedNode, tempDir } from '../helpers/test-node.js'

export const OUT = path.join(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..'), 'test-output', 'web')
export const DESKTOP = { width: 1280, height: 800 }
export const PHONE = { width: 390, height: 844 }

export const password = (user: string): string => `${user}-secret-pw-42`

export interface Tab { page: Page, context: BrowserContext, dialogs: string[] }

/** A node with these users, and a headless Chromium; `stop` ends both by their PIDs. */
export async function nodeAndBrowser (users: string[]): Promise<{ node: SpawnedNode, browser: Browser, base: string, stop: () => Promise<void> }> {
  mkdirSync(OUT, { recursive: true })
  const dataDir = tempDir('warbler-web-')
  for (const u of users) {
    const r = spawnSync(process.execPath, [CLI, 'user', 'add', u, '--password-stdin', '--data-dir', dataDir], { input: password(u), encoding: 'utf8', timeout: 30_000 })
    assert.equal(r.status, 0, r.stderr)
  }
  const node = await spawnNode([], { dataDir })
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] })
  return {
    node,
    browser,
    base: `http://127.0.0.1:${node.ports.http ?? 0}/`,
    stop: async () => { await browser.close(); await node.stop() }
  }
}

export async function tab (browser: Browser, viewport: { width: number, height: number }, opts: { locale?: string, permissions?: string[], init?: () => void } = {}): Promise<Tab> {
  const context = await browser.newContext({ viewport, locale: opts.locale ?? 'en-US', permissions: opts.permissions ?? [] })
  if (opts.init !== undefined) await context.addInitScript(opts.init)
  const page = await context.newPage()
  const t: Tab = { page, context, dialogs: [] }
  page.on('dialog', (d) => { t.dialogs.push(d.message()); void d.dismiss() })
  page.setDefaultTimeout(15_000)
  return t
}

export async function logIn (t: Tab, base: string, user: string, labels = { user: 'User name', password: 'Password', logIn: 'Log in' }): Promise<void> {
  await t.page.goto(base)
  await t.page.getByLabel(labels.user).fill(user)
  await t.page.getByLabel(labels.password).fill(password(user))
  await t.page.getByRole('button', { name: labels.logIn }).click()
  await t.page.locator('#state[data-state="connected"]').waitFor()
}

export async function shot (page: Page, name: string): Promise<void> {
  await page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage: false })
}

/** The bodies the open conversation shows, sent and received (not pending). */
export const bodies = async (page: Page): Promise<string[]> => await page.locator('#messages .msg:not(.pending) .body').allTextContents()
