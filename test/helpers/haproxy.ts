/**
 * Debian's HAProxy for tests: a config written to a temp dir, run in the
 * foreground (`-db`), its stderr kept for failure messages, stopped by its PID.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { tempDir } from './test-node.js'

export interface Haproxy {
  /** What HAProxy wrote to stderr so far. */
  log: () => string
  /** Kill it (SIGKILL) and remove its config. */
  stop: () => Promise<void>
}

export function startHaproxy (config: string): Haproxy {
  assert.ok(spawnSync('sh', ['-c', 'command -v haproxy']).status === 0, 'haproxy is needed (apt-get install haproxy)')
  const dir = tempDir('warbler-haproxy-')
  const file = path.join(dir, 'haproxy.cfg')
  writeFileSync(file, config)
  const child = spawn('haproxy', ['-db', '-f', file], { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  child.stderr?.on('data', (d: Buffer) => { log += d.toString() })
  return {
    log: () => log,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve))
        child.kill('SIGKILL')
        await exited
      }
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
