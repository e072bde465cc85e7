/**
 * A connection that closes while its CONNECT is still being processed, after
 * authentication and before aedes registers the client (broker/connect-race.ts):
 * no ghost is left connected, counted, or announced as online.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Client } from 'aedes'
import type { MqttClient } from 'mqtt'
import { connectPacket, rawSocket } from '../helpers/raw.js'
import { connect, startNode } from '../helpers/test-node.js'

const PW = 'correct horse battery staple'

async function until (cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

test('a connection closed while its CONNECT is processed leaves no client counted, listed or online', { timeout: 30_000 }, async (t) => {
  const node = await startNode(['--sys-interval', '0'], { users: [{ name: 'alice', password: PW }, { name: 'carol', password: PW, admin: true }] })
  t.after(() => node.close())
  const broker = node.broker as unknown as { connectedClients: number, clients: Record<string, Client>, persistence: { putWill: (c: Client, p: unknown) => Promise<unknown> } }
  // The notices the message service's presence follows in a cluster (aedes'
  // own $SYS/{id}/... topics, which no MQTT client is shown), read inside the broker.
  const notices: string[] = []
  const onNotice = (packet: { topic: string, payload: Buffer | string }, cb: () => void): void => {
    if (packet.payload.toString() === 'alice-ghost') notices.push(packet.topic.split('/').slice(2).join('/'))
    cb()
  }
  for (const f of ['$SYS/+/new/clients', '$SYS/+/disconnect/clients']) await new Promise<void>((resolve) => { node.broker.subscribe(f, onNotice, resolve) })
  const carol: MqttClient = await connect(node.mqttUrl, { username: 'carol', password: PW, clientId: 'carol-ops' })
  t.after(() => carol.endAsync(true))
  await until(() => broker.connectedClients === 1, 'carol to be counted')

  // The real persistence, slow at the step where the race lies (as a busy
  // Redis is): the will is stored after authentication and before
  // registration. The keepalive timer already runs then, and with a
  // keepalive of 1 s aedes closes the client after 1.5 s, before the step
  // ends; the step goes on once it has.
  const persistence = broker.persistence
  const putWill = persistence.putWill.bind(persistence)
  const raw = await rawSocket(node.ports.mqtt as number)
  t.after(() => raw.destroy())
  persistence.putWill = async (client, packet) => {
    if (client.id === 'alice-ghost') await until(() => client.closed, 'aedes to close the client by its keepalive')
    return await putWill(client, packet)
  }
  raw.send({ ...connectPacket({ clientId: 'alice-ghost', username: 'alice', password: PW, keepalive: 1 }), will: { topic: 'wb/u/alice/out', payload: Buffer.from('{}'), qos: 0, retain: false } } as never)
  await raw.closed
  await until(() => notices.includes('new/clients'), 'the registration to be announced')
  // Then undone: not listed, not counted, and the announcement balanced.
  await until(() => notices.includes('disconnect/clients'), 'the ghost\'s disconnect notice')
  assert.deepEqual(notices, ['new/clients', 'disconnect/clients'])
  assert.equal(broker.clients['alice-ghost'], undefined, 'the closed client is not listed')
  assert.equal(broker.connectedClients, 1, 'only carol is counted')
  assert.equal((await node.sys())['clients/connected'], '1')
  // The client id is free: alice connects with it, and is counted once.
  const alice = await connect(node.mqttUrl, { username: 'alice', password: PW, clientId: 'alice-ghost' })
  t.after(() => alice.endAsync(true))
  assert.equal(broker.connectedClients, 2)
})
