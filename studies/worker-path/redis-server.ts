/** A throwaway redis-server for the study: a free loopback port, no persistence, ended by its PID. */
import { type ChildProcess, spawn } from 'node:child_process'
import { Redis } from 'ioredis'
import { freePort, waitForPort } from '../../bench/targets.js'

export interface StudyRedis { port: number, pid: number, client: Redis, stop: () => Promise<void> }

export async function startRedis (): Promise<StudyRedis> {
  const port = await freePort()
  // No output buffer limit for subscribers: a saturated trial may leave a
  // receiver megabytes behind, and Redis would otherwise disconnect it.
  const child: ChildProcess = spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--client-output-buffer-limit', 'pubsub 0 0 0', '--daemonize', 'no', '--loglevel', 'warning'
  ], { stdio: ['ignore', 'ignore', 'inherit'] })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      process.kill(child.pid, 'SIGTERM')
      await exited
    }
  }
  try {
    await waitForPort(port, child)
    const client = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 })
    return { port, pid: child.pid as number, client, stop: async () => { client.disconnect(); await stop() } }
  } catch (err) {
    await stop()
    throw new Error(`redis-server did not start (apt-get install redis-server): ${(err as Error).message}`)
  }
}
