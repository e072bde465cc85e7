/**
 * A real redis-server for one test: started on a free port in a temp dir,
 * stopped by its PID. `restart()` keeps the data (append-only file) so tests
 * can check what survives a Redis restart.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { freePort, waitForPort } from './ports.js'

export interface RedisServer {
  readonly port: number
  readonly url: string
  readonly dir: string
  readonly pid: number
  /** Stop (SIGTERM, or SIGKILL with kill=true) and start again on the same port and data; `whileDown` runs in between. */
  restart: (opts?: { kill?: boolean, whileDown?: () => Promise<void> }) => Promise<void>
  stop: () => Promise<void>
}

function exited (child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once('exit', () => resolve())
  })
}

export async function startRedis (): Promise<RedisServer> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'warbler-redis-'))
  const port = await freePort()
  let child: ChildProcess
  const launch = async (): Promise<void> => {
    child = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
      '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--daemonize', 'no', '--loglevel', 'warning'
    ], { stdio: ['ignore', 'ignore', 'pipe'] })
    child.stderr?.resume()
    await Promise.race([
      waitForPort(port),
      exited(child).then(() => { throw new Error(`redis-server exited at start (code ${String(child.exitCode)})`) })
    ])
  }
  await launch()
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<void> => {
    const c = child
    if (c.exitCode === null && c.signalCode === null) {
      c.kill(signal)
      await exited(c)
    }
  }
  let stopped = false
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    get pid () { return child.pid ?? -1 },
    restart: async (opts = {}) => {
      await stop(opts.kill === true ? 'SIGKILL' : 'SIGTERM')
      await opts.whileDown?.()
      await launch()
    },
    stop: async () => {
      if (stopped) return
      stopped = true
      await stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
