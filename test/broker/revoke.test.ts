import assert from 'node:assert/strict'
import { test } from 'node:test'
import { connect, startNode, withStore } from '../helpers/test-node.js'

const PW = 'password-123'

function closedWithin (client: { once: (e: 'close', f: () => void) => unknown }, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    client.once('close', () => { clearTimeout(timer); resolve(true) })
  })
}

test('revoking a device token or removing a user cuts off their live connections, and only theirs', async (t) => {
  const node = await startNode([], { users: [{ name: 'alice', password: PW }, { name: 'bob', password: PW }] })
  t.after(() => node.close())
  // Made through the node's own store, the token is known at once (no polling,
  // and no failed logins that would trip the per-address login limit).
  // The cache reloads right after the write, asynchronously: allow a few tries
  // (well under --login-failures).
  const { id, token } = await node.identity.createDeviceToken('alice', 'esp32')
  let device: Awaited<ReturnType<typeof connect>> | undefined
  for (let i = 0; i < 3 && device === undefined; i++) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, 300))
    device = await connect(node.mqttUrl, { username: 'alice', password: token, clientId: 'alice-esp32' }).catch(() => undefined)
  }
  assert.ok(device !== undefined, 'the new device token logs in')
  const phone = await connect(node.mqttUrl, { username: 'alice', password: PW, clientId: 'alice-phone' })
  const bob = await connect(node.mqttUrl, { username: 'bob', password: PW, clientId: 'bob' })
  t.after(() => { device?.end(true); phone.end(true); bob.end(true) })

  // The CLI's way: another connection to the database.
  await withStore(node.dataDir, (s) => s.revokeDeviceToken(id))
  assert.equal(await closedWithin(device, 3000), true, 'the revoked token\'s connection is closed')
  assert.equal(phone.connected, true, 'the same user\'s password session stays')

  await withStore(node.dataDir, (s) => s.removeUser('alice'))
  assert.equal(await closedWithin(phone, 3000), true, 'a removed user\'s connections are closed')
  assert.equal(bob.connected, true, 'other users are untouched')
})
