/**
 * The web app's first load from a local `warbler start` in Chromium: five
 * fresh browser contexts (no cache, no service worker yet), each timed from
 * navigation until the login form is up; the median and the bytes that came
 * over the wire go to test-output/web/load-time.json (docs/benchmarks.md).
 */
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { test } from 'node:test'
import { DESKTOP, nodeAndBrowser, OUT, tab } from './web-session.js'

test('web app: first load time, median of 5', { timeout: 120_000 }, async (t) => {
  const env = await nodeAndBrowser([])
  t.after(env.stop)
  const runs: Array<{ ms: number, domContentLoaded: number, transferred: number }> = []
  for (let i = 0; i < 5; i++) {
    const fresh = await tab(env.browser, DESKTOP)
    const t0 = Date.now()
    await fresh.page.goto(env.base)
    await fresh.page.getByLabel('User name').waitFor()
    const ms = Date.now() - t0
    const timing = await fresh.page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming
      const resources = performance.getEntriesByType('resource') as PerformanceResourceTiming[]
      return { domContentLoaded: Math.round(nav.domContentLoadedEventEnd), transferred: nav.transferSize + resources.reduce((n, r) => n + r.transferSize, 0) }
    })
    runs.push({ ms, ...timing })
    await fresh.context.close()
  }
  const median = [...runs].sort((a, b) => a.ms - b.ms)[2] as { ms: number }
  const result = { runs, medianMs: median.ms }
  writeFileSync(path.join(OUT, 'load-time.json'), JSON.stringify(result, null, 2) + '\n')
  console.log(`web app first load: median ${median.ms} ms of ${runs.map((r) => r.ms).join(', ')}; ${runs[0]?.transferred ?? 0} bytes over the wire`)
  assert.ok(median.ms < 10_000, `median first load ${median.ms} ms`)
})
