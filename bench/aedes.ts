/**
 * A bare aedes for `warbler bench --against aedes`: `Aedes.createBroker()`
 * with its defaults (in-memory persistence and emitter, anonymous, no hooks)
 * on a net server, so that Warbler can be compared with the library it is
 * built on. Run by the bench as its own process:
 *
 *   node [--expose-gc --import gc-ipc.js] dist/bench/aedes.js PORT
 *
 * It listens on 127.0.0.1:PORT (0: any free port) and prints
 * `aedes ready {"mqtt":PORT}` on stdout; SIGTERM stops it.
 */
import net from 'node:net'
import { Aedes } from 'aedes'

async function main (): Promise<void> {
  const port = Number(process.argv[2] ?? '0')
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad port ${String(process.argv[2])}`)
  const broker = await Aedes.createBroker()
  const server = net.createServer((socket) => { broker.handle(socket) })
  server.once('error', (err) => { process.stderr.write(`aedes: ${err.message}\n`); process.exit(1) })
  server.listen(port, '127.0.0.1', () => {
    process.stdout.write(`aedes ready ${JSON.stringify({ mqtt: (server.address() as net.AddressInfo).port })}\n`)
  })
  const stop = (): void => {
    // Bounded: the bench waits for the exit, and the sockets may still be open.
    setTimeout(() => process.exit(0), 2000).unref()
    server.close()
    broker.close(() => process.exit(0))
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
}

main().catch((err: unknown) => {
  process.stderr.write(`aedes: ${String((err as Error).stack ?? err)}\n`)
  process.exit(1)
})
