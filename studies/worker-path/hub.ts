/**
 * The node:cluster primary of the ipc paths: forks the sender and the
 * receivers as cluster workers (peer.js) and relays every packet a worker
 * sends to the receivers, as a primary must: workers of node:cluster have no
 * channel to each other. Control requests from worker-path.ts come in with
 * `to` (a worker's index) and go back with `from`.
 *
 * Started by worker-path.ts with WP_HUB = {path, receivers, size}.
 */
import cluster, { type Worker } from 'node:cluster'
import { fileURLToPath } from 'node:url'
import type { PathName, PeerConfig } from './paths.js'

const hub = JSON.parse(process.env.WP_HUB ?? 'null') as { path: PathName, receivers: number, size: number } | null
if (hub === null || process.send === undefined) throw new Error('hub.js runs as a child with WP_HUB set and an IPC channel')
process.on('disconnect', () => process.exit(0))

cluster.setupPrimary({
  exec: fileURLToPath(new URL('./peer.js', import.meta.url)),
  serialization: hub.path === 'ipc-json' ? 'json' : 'advanced'
})

const workers: Worker[] = []
const receivers: Worker[] = []
for (let index = 0; index <= hub.receivers; index++) {
  const peer: PeerConfig = { role: index === 0 ? 'send' : 'recv', path: hub.path, size: hub.size, redisPort: 0, sockets: [], index }
  const w = cluster.fork({ WP_PEER: JSON.stringify(peer) })
  workers.push(w)
  if (index > 0) receivers.push(w)
  w.on('message', (m: { ctl?: string }) => {
    if (m.ctl !== undefined) process.send?.({ ...m, from: index })
    else for (const r of receivers) r.send(m)
  })
}

process.on('message', (m: { ctl: string, to: number }) => {
  if (m.ctl === 'exit') {
    let left = workers.length
    for (const w of workers) {
      w.once('exit', () => { if (--left === 0) process.exit(0) })
      w.send({ ctl: 'exit', id: 0 })
    }
    return
  }
  workers[m.to]?.send(m)
})
