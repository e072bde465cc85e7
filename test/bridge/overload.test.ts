// The embedded message service under more sends in flight than the broker
// routes at once: every send is stored and acknowledged, nothing stalls.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import mqtt from 'mqtt'
import { startNode } from '../helpers/test-node.js'

const PW = 'password-123'

test('2,000 chat sends in flight at once all get stored and acknowledged', async (t) => {
  const users = Array.from({ length: 40 }, (_, i) => ({ name: `u${i}`, password: PW }))
  const node = await startNode(['--publish-rate', '0', '--max-inflight', '4000'], { users })
  t.after(() => node.close())
  const clients = await Promise.all(users.map(async (u) => {
    const c = await mqtt.connectAsync(node.mqttUrl, { username: u.name, password: PW, clientId: `${u.name}-x`, protocolVersion: 4, reconnectPeriod: 0 })
    await c.subscribeAsync(`wb/d/${u.name}-x`, { qos: 1 })
    return c
  }))
  t.after(() => { for (const c of clients) c.end(true) })
  const PER = 50
  let acked = 0
  const done = new Promise<void>((resolve) => {
    for (const c of clients) {
      c.on('message', (_topic, payload) => {
        if ((JSON.parse(payload.toString()) as { t: string }).t === 'ack' && ++acked === users.length * PER) resolve()
      })
    }
  })
  // Every client writes all its sends at once: 2,000 in flight.
  clients.forEach((c, i) => {
    for (let k = 0; k < PER; k++) {
      c.publish(`wb/u/u${i}/out`, JSON.stringify({ t: 'msg', cid: `c${k}`, to: `u${(i + 1) % users.length}`, body: `m${k}` }), { qos: 1 })
    }
  })
  const timer = new Promise<void>((resolve) => setTimeout(resolve, 30_000))
  await Promise.race([done, timer])
  assert.equal(acked, users.length * PER, `acks received: ${acked} of ${users.length * PER}`)
  assert.equal(node.service?.writer.stats.stored, users.length * PER)
})
