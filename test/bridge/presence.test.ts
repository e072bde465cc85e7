/**
 * Presence from brokers' notices (bridge/presence.ts), on its inputs and
 * outputs: per broker, idempotent, the service account left out, and a
 * silent broker's clients taken offline. (The standalone and cluster tests
 * check it end to end.)
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { followNotice, PresenceTracker } from '../../bridge/presence.js'

function tracker (): { t: PresenceTracker, online: Map<string, number>, clock: { now: number } } {
  const online = new Map<string, number>()
  const clock = { now: 1000 }
  const sink = {
    presence: (user: string, on: boolean): void => {
      const n = (online.get(user) ?? 0) + (on ? 1 : -1)
      assert.ok(n >= 0, `${user} went below zero devices`)
      if (n === 0) online.delete(user); else online.set(user, n)
    }
  }
  return { t: new PresenceTracker(sink, (u) => u === 'svc', 30_000, () => clock.now), online, clock }
}

test('notices count each device once, per broker; the service account and foreign ids do not count', () => {
  const { t, online } = tracker()
  followNotice(t, '$SYS/b1/new/clients', 'alice-phone')
  followNotice(t, '$SYS/b1/new/clients', 'alice-phone') // repeated
  followNotice(t, '$SYS/b2/new/clients', 'alice-tab')
  followNotice(t, '$SYS/b1/new/clients', 'svc-bridge')
  followNotice(t, '$SYS/b1/new/clients', 'not a user')
  followNotice(t, '$SYS/b1/new/clients', 'bob-x'.toUpperCase())
  assert.deepEqual(Object.fromEntries(online), { alice: 2 })
  followNotice(t, '$SYS/b2/disconnect/clients', 'alice-phone') // not on b2: ignored
  assert.equal(online.get('alice'), 2)
  followNotice(t, '$SYS/b1/disconnect/clients', 'alice-phone')
  followNotice(t, '$SYS/b1/disconnect/clients', 'alice-phone')
  assert.equal(online.get('alice'), 1)
  assert.equal(followNotice(t, '$SYS/b1/other', 'x'), false)
})

test('a broker\'s client list adds what is not known yet; a broker not heard from for the expiry takes its clients offline', () => {
  const { t, online, clock } = tracker()
  followNotice(t, '$SYS/b1/warbler/clients', JSON.stringify(['alice-phone', 'bob-phone', 42]))
  followNotice(t, '$SYS/b1/warbler/clients', 'not json')
  followNotice(t, '$SYS/b2/new/clients', 'bob-tab')
  assert.deepEqual(Object.fromEntries(online), { alice: 1, bob: 2 })
  clock.now += 20_000
  followNotice(t, '$SYS/b2/heartbeat', 'b2')
  clock.now += 20_000
  t.sweep()
  // b1 silent for 40 s: its clients go; b2 beat 20 s ago: its stay.
  assert.deepEqual(Object.fromEntries(online), { bob: 1 })
  clock.now += 60_000
  t.sweep((id) => id === 'b2') // known alive by other means
  assert.deepEqual(Object.fromEntries(online), { bob: 1 })
  t.sweep()
  assert.deepEqual(Object.fromEntries(online), {})
})
