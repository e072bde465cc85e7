/**
 * `warbler start`: resolve the configuration, make the data dir ready and
 * lock it (one server per data dir: shared/data-dir.ts), make sure an
 * operator can log in, start the node (one process, or a primary and
 * `workers` broker processes: server/cluster.ts), print the ready line, and
 * stop gracefully on SIGTERM or SIGINT (exit code 0) — during start-up too.
 * Start-up has a bound: a step that does not finish in time (a Redis that
 * never answers) ends the start with a line naming the step.
 */
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { resolveConfig, startHelp } from '../shared/config.js'
import { randomPassword } from '../broker/identity/password.js'
import { IdentityStore } from '../broker/identity/identity-store.js'
import { startIdentityReplica } from '../broker/identity/identity-replica.js'
import { createLogger, type Level, type Logger } from '../shared/log.js'
import { startCluster } from '../server/cluster.js'
import { startWarbler } from '../server/node.js'
import { lockAll, prepareDataDir } from '../shared/data-dir.js'
import { EXIT, StartError } from '../shared/start-error.js'

export const INITIAL_ADMIN_FILE = 'initial-admin-password'

/**
 * On the first start without --dev, with no user at all, create the user
 * `admin` with a random password written to a 0600 file in the data dir
 * (never to the log), so the operator is not locked out. With Redis, the
 * users the other nodes share count: a node joining them takes theirs first
 * and creates no admin of its own.
 */
async function ensureFirstAdmin (dataDir: string, redis: string, log: Logger): Promise<string | null> {
  if (redis !== '') await (await startIdentityReplica(dataDir, redis, log, { watch: false })).close()
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

/** Longest wait, after a signal during start-up, for the start to finish so that it can close cleanly. */
const ABORT_GRACE_MS = 5_000
/** How often a start under npm checks that npm is still its parent. */
const PARENT_POLL_MS = 1_000

interface Node { readonly ports: Readonly<Record<string, number>>, close: () => Promise<void> }

/**
 * Run under `npm start`: npm is the parent. If npm goes away without passing
 * a signal on (SIGKILL, or a supervisor that signals only the pid it started),
 * this process would be left holding the ports: stop instead. Only under npm,
 * so a server started in the background by a script that then exits keeps
 * running.
 */
function watchNpmParent (stop: (why: string) => void): () => void {
  if (process.env.npm_lifecycle_event === undefined) return () => {}
  const parent = process.ppid
  const timer = setInterval(() => { if (process.ppid !== parent) stop('npm exited') }, PARENT_POLL_MS)
  timer.unref()
  return () => clearInterval(timer)
}

export async function runStart (argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(startHelp() + '\n')
    return 0
  }
  const cfg = resolveConfig(argv)
  const log = createLogger(cfg.logLevel as Level)

  // Signals are handled from here on, so that a stop during start-up works:
  // the start finishes (within a bound) and is closed, or is abandoned.
  let stopRequested: string | null = null
  let wake: () => void = () => {}
  const woken = new Promise<void>((resolve) => { wake = resolve })
  const request = (why: string): void => {
    if (stopRequested !== null) return
    stopRequested = why
    log.info('stopping', { signal: why })
    wake()
  }
  const onTerm = (): void => request('SIGTERM')
  const onInt = (): void => request('SIGINT')
  process.on('SIGTERM', onTerm)
  process.on('SIGINT', onInt)
  const unwatchParent = watchNpmParent(request)
  let unlock: () => Promise<void> = async () => {}
  let stage = 'preparing the data dir'
  const starting = (async (): Promise<Node> => {
    prepareDataDir(cfg.dataDir)
    stage = 'locking the data dir'
    // The embedded message service owns the archive too: a `warbler bridge` on this dir must not start beside it.
    unlock = await lockAll(cfg.dataDir, cfg.bridge === 'embedded' ? ['node', 'service'] : ['node'])
    stage = 'opening the identity store'
    if (!cfg.dev) {
      const file = await ensureFirstAdmin(cfg.dataDir, cfg.redis, log)
      if (file !== null) {
        log.warn('no users yet: created admin user "admin"; its password is in the file named here. Change it with `warbler user passwd admin` and delete the file.', { file })
      }
    } else {
      log.warn('development mode: anonymous clients are allowed and non-chat topics are open to all')
    }
    const cluster = cfg.workers > 1 || cfg.serviceProcess === 'on'
    stage = cluster ? `starting ${cfg.workers} workers${cfg.serviceProcess === 'on' ? ' and the message service\'s process' : ''}` : (cfg.redis !== '' ? 'starting the broker (connecting to Redis)' : 'starting the broker')
    // More than one worker: a cluster (server/cluster.ts); the primary runs no broker itself.
    return cluster ? await startCluster(cfg, log) : await startWarbler(cfg, { log })
  })()
  // A start abandoned (timeout, signal) may still fail later: that is no longer news.
  starting.catch(() => {})
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), cfg.startTimeout * 1000) })
  const outcome = await Promise.race([starting, timedOut, woken.then(() => 'signal' as const)])
    .catch(async (err: unknown) => { clearTimeout(timer); await unlock(); unwatchParent(); throw err })
  clearTimeout(timer)

  const leave = async (code: number): Promise<number> => {
    process.off('SIGTERM', onTerm)
    process.off('SIGINT', onInt)
    unwatchParent()
    await unlock()
    return code
  }
  if (outcome === 'timeout') {
    // What hangs may never give its resources back: the process exits (the CLI sets the code).
    throw new StartError(`start-up did not finish within ${cfg.startTimeout} s (--start-timeout): stuck ${stage}${cfg.redis !== '' ? '; is Redis reachable at the --redis URL?' : ''}`, EXIT.startTimeout)
  }
  if (outcome === 'signal') {
    // Let a start that is nearly done finish, so it is closed in order; one that hangs is abandoned.
    const late = await Promise.race([starting.catch(() => null), new Promise<null>((resolve) => setTimeout(() => resolve(null), ABORT_GRACE_MS))])
    if (late !== null) await late.close().catch((err: unknown) => { log.error('error while stopping', { error: String(err) }) })
    log.info('stopped during start-up', { stage })
    return await leave(EXIT.ok)
  }
  const node = outcome
  process.stdout.write(`warbler ready ${JSON.stringify(node.ports)}\n`)
  log.info('started', { ports: node.ports, dataDir: cfg.dataDir, dev: cfg.dev, redis: cfg.redis !== '', bridge: cfg.bridge, workers: cfg.workers, serviceProcess: cfg.serviceProcess })
  await woken
  await node.close().catch((err: unknown) => { log.error('error while stopping', { error: String(err) }) })
  log.info('stopped')
  return await leave(EXIT.ok)
}
