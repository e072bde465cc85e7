/**
 * The web app is installable: a manifest with icons (SVG and PNGs drawn at
 * build time) and a service worker that caches the shell, so that after a
 * first visit the app loads with the node down. The CSP stays strict: the
 * worker and the manifest come from this origin, nothing inline.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { nodeAndBrowser, PHONE, shot, tab } from './web-session.js'

test('web app: manifest, icons and a service worker that serve the shell with the node down', { timeout: 120_000 }, async (t) => {
  const env = await nodeAndBrowser(['alice'])
  t.after(env.stop)
  const { base, browser, node } = env

  const manifest = await fetch(`${base}manifest.webmanifest`)
  assert.equal(manifest.headers.get('content-type'), 'application/manifest+json')
  const m = await manifest.json() as { name: string, start_url: string, display: string, icons: Array<{ src: string, sizes: string, type: string }> }
  assert.equal(m.name, 'Warbler')
  assert.equal(m.start_url, '/')
  assert.equal(m.display, 'standalone')
  for (const icon of m.icons) {
    const res = await fetch(new URL(icon.src, base))
    assert.equal(res.status, 200, icon.src)
    assert.equal(res.headers.get('content-type'), icon.type)
    const bytes = Buffer.from(await res.arrayBuffer())
    if (icon.type === 'image/png') {
      assert.deepEqual([...bytes.subarray(1, 4)], [0x50, 0x4e, 0x47], 'a PNG')
      assert.equal(`${bytes.readUInt32BE(16)}x${bytes.readUInt32BE(20)}`, icon.sizes)
    } else {
      assert.match(bytes.toString('utf8'), /^<svg /)
    }
  }
  const sw = await fetch(`${base}sw.js`)
  assert.equal(sw.headers.get('content-type'), 'text/javascript; charset=utf-8')
  assert.equal(sw.headers.get('cache-control'), 'no-cache', 'a new build reaches the browser at once')
  const csp = sw.headers.get('content-security-policy') ?? ''
  assert.match(csp, /script-src 'self';/)
  assert.match(csp, /manifest-src 'self'/)
  assert.match(csp, /worker-src 'self'/)
  assert.doesNotMatch(csp, /unsafe|\*/)

  const alice = await tab(browser, PHONE)
  const violations: string[] = []
  alice.page.on('console', (msg) => { if (/Content.Security.Policy/i.test(msg.text())) violations.push(msg.text()) })
  await alice.page.goto(base)
  await alice.page.getByLabel('User name').waitFor()
  // Installed: the worker controls the page once it has cached the shell.
  await alice.page.waitForFunction(async () => { await navigator.serviceWorker.ready; return navigator.serviceWorker.controller !== null })
  assert.equal(await alice.page.locator('link[rel="manifest"]').getAttribute('href'), '/manifest.webmanifest')
  const cached = await alice.page.evaluate(async () => {
    const keys = await caches.keys()
    const c = await caches.open(keys.find((k) => k.startsWith('warbler-shell-')) ?? '')
    return (await c.keys()).map((r) => new URL(r.url).pathname).sort()
  })
  assert.ok(cached.includes('/') && cached.some((p) => /^\/app-.*\.js$/.test(p)) && cached.some((p) => /^\/style-.*\.css$/.test(p)), cached.join(' '))

  // The node stops: nothing answers on its HTTP port...
  assert.equal(await node.stop(), 0)
  assert.equal(await alice.page.evaluate(async () => await fetch('/healthz').then(() => 'answered', () => 'down')), 'down')
  // ...and a reload still renders the app, from the worker's cache (its script built the login form).
  await alice.page.reload()
  await alice.page.getByLabel('User name').waitFor()
  assert.equal(await alice.page.getByRole('button', { name: 'Log in' }).count(), 1)
  assert.equal(await alice.page.evaluate(() => getComputedStyle(document.body).fontFamily.includes('system-ui')), true, 'the style sheet came too')
  await shot(alice.page, 'offline-shell-phone')
  assert.deepEqual(violations, [])
  assert.deepEqual(alice.dialogs, [])
})
