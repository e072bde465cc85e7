// The wills of a broker that died are swept by every live broker on the same
// Redis (aedes' `_clearWills`); two sweeping at once send each will once.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { willPaths } from '../../broker/aedes-internals.js'
import { startRedis } from '../helpers/redis.js'
import { connect, spawnNode, startNode } from '../helpers/test-node.js'

test('a dead broker\'s will, swept by two live brokers at once, is handed to one of them', async (t) => {
  const undo: Array<() => unknown> = []
  t.after(async () => { for (const fn of undo.reverse()) await fn() })
  const redis = await startRedis()
  undo.push(() => redis.stop())
  const args = ['--dev', '--redis', redis.url, '--bridge', 'off']
  // The broker that dies: a process of its own, killed with SIGKILL while its client holds a will.
  const dead = await spawnNode(args)
  undo.push(() => dead.stop('SIGKILL'))
  const c = await connect(`mqtt://127.0.0.1:${dead.ports.mqtt}`, { clientId: 'holder', will: { topic: 'room/will', payload: Buffer.from('gone'), qos: 1, retain: false } })
  undo.push(() => c.end(true))
  await dead.stop('SIGKILL')
  const a = await startNode(args)
  undo.push(() => a.close())
  const b = await startNode(args)
  undo.push(() => b.close())
  // What each sweep would publish, both at once; `{}`: no broker is alive as far as this sweep knows.
  const sweep = async (node: typeof a): Promise<string[]> => {
    const out: string[] = []
    for await (const will of willPaths(node.broker).store.streamWill({})) out.push(will.topic)
    return out
  }
  const [fromA, fromB] = await Promise.all([sweep(a), sweep(b)])
  assert.deepEqual([...fromA, ...fromB], ['room/will'], `swept by A: ${JSON.stringify(fromA)}, by B: ${JSON.stringify(fromB)}`)
  // And it is gone from Redis: a later sweep finds nothing.
  assert.deepEqual(await sweep(a), [])
})
