// What the workers of one node tell the message service's worker about their
// clients' subscriptions (broker/sibling-readers.ts), on two real local buses
// in a temp dir: the callback that releases a SUBACK runs only once the
// service's worker knows of the subscription; wildcards count; the last
// unsubscribe is heard; a service worker that goes away releases SUBACKs at
// once, and a new one trusts nothing until the sibling sent its whole set.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { LocalBus } from '../../broker/local-bus.js'
import { SiblingReaders } from '../../broker/sibling-readers.js'
import type { Logger } from '../../shared/log.js'

const quiet: Logger = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} }

async function until (what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

async function worker (dir: string, index: number, serve: boolean): Promise<{ readers: SiblingReaders, bus: LocalBus }> {
  const readers = new SiblingReaders({ index, count: 2, serve, log: quiet })
  const bus = await LocalBus.start({ dir, index, count: 2, maxFrame: 1 << 20, log: quiet, events: readers.events }, (_p, done) => { done() })
  readers.attach((to, m) => bus.sendControl(to, m))
  return { readers, bus }
}

/** Subscribe on a reporting worker; resolves once the SUBACK could go out. */
async function subscribe (r: SiblingReaders, filter: string): Promise<void> {
  await new Promise<void>((resolve) => { (r.subscribed(filter, resolve) as () => void)() })
}

test('a SUBACK waits until the service worker knows; wildcards, unsubscribes and a restarted service worker', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'wb-readers-'))
  const open: LocalBus[] = []
  t.after(() => { for (const b of open) b.close(); rmSync(dir, { recursive: true, force: true }) })
  let service = await worker(dir, 0, true)
  const sibling = await worker(dir, 1, false)
  open.push(service.bus, sibling.bus)
  await until('the sibling sent its set', () => service.readers.complete())
  assert.equal(service.readers.reads('wb/u/bob/feed'), false)
  assert.equal(service.readers.wants(1, 'wb/u/bob/feed'), false, 'a synced sibling with no reader gets no copy')

  // Each time the SUBACK may go out, the service worker already knows.
  for (const f of ['wb/u/bob/feed', 'wb/d/bob-p1/feed', 'wb/u/carol/#']) {
    await subscribe(sibling.readers, f)
    assert.equal(service.readers.reads(f.replace('#', 'inbox')), true, `${f} known when its SUBACK goes out`)
  }
  assert.equal(service.readers.reads('wb/u/carol/feed'), true, 'a wildcard filter matches')
  assert.equal(service.readers.reads('wb/u/dave/feed'), false)
  assert.equal(service.readers.wants(1, 'wb/u/dave/inbox'), false)
  // Filters that match no delivery topic are not reported, and release at once.
  assert.equal(sibling.readers.subscribed('$SYS/#', undefined), undefined)

  // A second subscriber of a filter, then both gone: the last one is heard.
  await subscribe(sibling.readers, 'wb/u/bob/feed')
  sibling.readers.unsubscribed('wb/u/bob/feed')
  await new Promise((resolve) => setTimeout(resolve, 50))
  assert.equal(service.readers.reads('wb/u/bob/feed'), true, 'one subscriber is left')
  sibling.readers.unsubscribed('wb/u/bob/feed')
  await until('the last unsubscribe heard', () => !service.readers.reads('wb/u/bob/feed'))

  // The service worker goes away: a subscription is released at once; a new one trusts the sibling only after its sync.
  service.bus.close()
  const t0 = Date.now()
  await subscribe(sibling.readers, 'wb/u/erin/feed')
  assert.ok(Date.now() - t0 < 1500, `released in ${Date.now() - t0} ms, not after the 2 s bound`)
  service = await worker(dir, 0, true)
  open.push(service.bus)
  await until('the new service worker has the whole set', () => service.readers.complete())
  for (const topic of ['wb/d/bob-p1/feed', 'wb/u/carol/inbox', 'wb/u/erin/feed']) assert.equal(service.readers.reads(topic), true, topic)
})
