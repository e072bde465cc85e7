/**
 * `warbler start`: resolve the configuration, make sure an operator can log
 * in, start the node (one process, or a primary and `workers` broker
 * processes: broker/cluster.ts), print the ready line, and stop gracefully on
 * SIGTERM or SIGINT (exit code 0).
 */
import { rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { resolveConfig, startHelp } from '../broker/config.js'
import { randomPassword } from '../broker/identity/password.js'
import { IdentityStore } from '../broker/identity/store.js'
import { createLogger, type Level } from '../broker/log.js'
import { startCluster } from '../broker/cluster.js'
import { startWarbler } from '../broker/server.js'
import { PID_FILE } from './backup.js'

export const INITIAL_ADMIN_FILE = 'initial-admin-password'

/**
 * On the first start without --dev, with no user at all, create the user
 * `admin` with a random password written to a 0600 file in the data dir
 * (never to the log), so the operator is not locked out.
 */
async function ensureFirstAdmin (dataDir: string): Promise<string | null> {
  const store = await IdentityStore.open(dataDir)
  try {
    if (await store.countUsers() > 0) return null
    const password = randomPassword()
    await store.addUser('admin', password, true)
    const file = path.join(dataDir, INITIAL_ADMIN_FILE)
    writeFileSync(file, `user: admin\npassword: ${password}\n`, { mode: 0o600 })
    return file
  } finally {
    await store.close()
  }
}

export async function runStart (argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(startHelp() + '\n')
    return 0
  }
  const cfg = resolveConfig(argv)
  const log = createLogger(cfg.logLevel as Level)
  if (!cfg.dev) {
    const file = await ensureFirstAdmin(cfg.dataDir)
    if (file !== null) {
      log.warn('no users yet: created admin user "admin"; its password is in the file named here. Change it with `warbler user passwd admin` and delete the file.', { file })
    }
  } else {
    log.warn('development mode: anonymous clients are allowed and non-chat topics are open to all')
  }
  // More than one worker: a cluster (broker/cluster.ts); the primary runs no broker itself.
  const node = cfg.workers > 1 ? await startCluster(cfg, log) : await startWarbler(cfg, { log })
  // The signal handlers go in before the ready line: a supervisor may signal as soon as it reads it.
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info('stopping', { signal })
      process.off('SIGTERM', onTerm)
      process.off('SIGINT', onInt)
      node.close().then(resolve, (err: unknown) => {
        log.error('error while stopping', { error: String(err) })
        resolve()
      })
    }
    const onTerm = (): void => stop('SIGTERM')
    const onInt = (): void => stop('SIGINT')
    process.on('SIGTERM', onTerm)
    process.on('SIGINT', onInt)
  })
  // Tells `warbler restore` that the data dir is in use.
  const pidFile = path.join(cfg.dataDir, PID_FILE)
  writeFileSync(pidFile, `${process.pid}\n`)
  process.stdout.write(`warbler ready ${JSON.stringify(node.ports)}\n`)
  log.info('started', { ports: node.ports, dataDir: cfg.dataDir, dev: cfg.dev, redis: cfg.redis !== '', bridge: cfg.bridge, workers: cfg.workers })
  await stopped
  rmSync(pidFile, { force: true })
  log.info('stopped')
  return 0
}
