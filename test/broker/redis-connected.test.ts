// warbler_redis_connected: 1 while every Redis connection of the node
// (session persistence, shared routing, the message service's mirror) is
// ready, 0 soon after Redis dies, 1 again once it is back on the same port.
// Registered only with --redis. Against a real redis-server, killed by PID.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { test } from 'node:test'
import { startRedis } from '../helpers/redis.js'
import { startNode } from '../helpers/test-node.js'

async function gauge (httpUrl: string): Promise<number | null> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text()
  const m = /^warbler_redis_connected (\S+)$/m.exec(text)
  return m === null ? null : Number(m[1])
}

/** Poll the gauge until it reads `want`, for at most `ms`; returns the last reading. */
async function waitForGauge (httpUrl: string, want: number, ms: number): Promise<number | null> {
  const until = Date.now() + ms
  let last = await gauge(httpUrl)
  while (last !== want && Date.now() < until) {
    await sleep(100)
    last = await gauge(httpUrl)
  }
  return last
}

test('without --redis there is no warbler_redis_connected', async (t) => {
  const node = await startNode(['--dev'])
  t.after(() => node.close())
  assert.equal(await gauge(node.httpUrl), null)
})

test('warbler_redis_connected follows Redis: 1, 0 after it is killed, 1 after it is back', { timeout: 30_000 }, async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  const node = await startNode(['--dev', '--redis', redis.url])
  t.after(() => node.close())
  assert.ok(node.service !== null, 'the embedded message service (and its Redis mirror) runs')

  assert.equal(await gauge(node.httpUrl), 1)
  const text = await (await fetch(`${node.httpUrl}/metrics`)).text()
  assert.match(text, /^# TYPE warbler_redis_connected gauge$/m)

  process.kill(redis.pid, 'SIGKILL')
  assert.equal(await waitForGauge(node.httpUrl, 0, 5000), 0, '0 within 5 s of Redis being killed')

  await redis.restart()
  assert.equal(await waitForGauge(node.httpUrl, 1, 10_000), 1, '1 again within 10 s of Redis being back')
})

test('docs/operations.md lists warbler_redis_connected', () => {
  const text = readFileSync(new URL('../../../docs/operations.md', import.meta.url), 'utf8')
  assert.match(text, /`warbler_redis_connected`/)
})
