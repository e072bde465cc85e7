/**
 * bench/lean.ts, the load generator's hand-made client, in both protocols
 * against a real node: what the broker sees of it (its protocol level),
 * SUBSCRIBE and SUBACK, a QoS 1 PUBLISH to itself with its PUBACK and the
 * delivery acknowledged, and the refusals (CONNACK, SUBACK) read as errors.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { encodeString, LeanClient } from '../../bench/lean.js'
import { connectedClients, protocolLevel } from '../../broker/aedes-internals.js'
import { startNode } from '../helpers/test-node.js'

for (const protocol of [4, 5] as const) {
  test(`lean client, MQTT ${protocol === 5 ? '5' : '3.1.1'}: connect, subscribe, publish QoS 1 to itself, and refusals`, async (t) => {
    const node = await startNode(['--acl', 'readwrite lean/%u/#'], { users: [{ name: 'lena', password: 'lena-pw-12' }] })
    t.after(() => node.close())
    const port = node.ports.mqtt as number
    const c = await LeanClient.connect(port, `lena-${protocol}`, { username: 'lena', password: 'lena-pw-12' }, '127.0.0.1', { protocol, timeoutMs: 5000 })
    t.after(() => { c.destroy() })
    const seen = connectedClients(node.broker)[`lena-${protocol}`]
    assert.ok(seen !== undefined)
    assert.equal(protocolLevel(seen), protocol)

    const got: string[] = []
    const acks: Array<[number, number]> = []
    let delivered: () => void = () => {}
    const arrived = new Promise<void>((resolve) => { delivered = resolve })
    c.handlers.onPublish = (topic, payload) => { got.push(`${topic} ${payload.toString()}`); delivered() }
    c.handlers.onPuback = (id, reasonCode) => { acks.push([id, reasonCode]) }
    await c.subscribe(['lean/lena/#'])
    c.publish1(encodeString('lean/lena/x'), Buffer.from('hello'), 7)
    await arrived
    assert.deepEqual(got, ['lean/lena/x hello'])
    while (acks.length === 0) await new Promise((resolve) => setTimeout(resolve, 10))
    assert.deepEqual(acks, [[7, 0]])

    await assert.rejects(c.subscribe(['lean/other/#']), /SUBACK refused lean\/other\/#/)
    // Bad password: CONNACK 4 in MQTT 3.1.1, reason code 0x86 (134) in MQTT 5.
    await assert.rejects(LeanClient.connect(port, `lena-bad-${protocol}`, { username: 'lena', password: 'wrong-pw-123' }, '127.0.0.1', { protocol, timeoutMs: 5000 }),
      new RegExp(`CONNACK ${protocol === 5 ? 134 : 4} for lena-bad-${protocol}`))
  })
}
