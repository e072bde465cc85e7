#!/usr/bin/env node
/**
 * The `warbler` command: `start` runs the service; `user` and `token` manage
 * identities in the data dir (also while the service runs).
 */
import { CliError } from '../shared/args.js'
import { EXIT, StartError } from '../shared/start-error.js'
import { checkBuild } from './build-info.js'

const HELP = `Usage: warbler <command> [options]

Commands:
  start                 Run the broker (see warbler start --help)
  user add|list|remove|passwd|admin
                        Manage users (see warbler user --help)
  token create|list|revoke
                        Manage access and device tokens (see warbler token --help)
  bridge                Run the message service as its own process (see warbler bridge --help)
  backup FILE           Write a consistent copy of the database, also while running
  restore FILE          Put a backup in place (with the service stopped)
  bench SCENARIO        Benchmark a fresh node, optionally against Mosquitto and bare aedes (see warbler bench --help)

Every command but bench takes --data-dir DIR (env WARBLER_DATA_DIR, default ./data).
`

async function main (argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  // Old code must never run silently (cli/build-info.ts).
  if (command !== undefined && !['help', '--help', '-h'].includes(command)) checkBuild()
  switch (command) {
    // Loaded on demand: `user` and `token` need only SQLite, not the broker's modules.
    case 'start': return await (await import('./start.js')).runStart(rest)
    case 'user': return await (await import('./user.js')).runUser(rest)
    case 'token': return await (await import('./token.js')).runToken(rest)
    case 'bridge': return await (await import('./bridge.js')).runBridge(rest)
    case 'backup': return await (await import('./backup.js')).runBackup(rest)
    case 'restore': return await (await import('./backup.js')).runRestore(rest)
    case 'bench': return await (await import('../bench/command.js')).runBench(rest)
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(HELP)
      return command === undefined ? 2 : 0
    default:
      throw new CliError(`unknown command ${JSON.stringify(command)}\n\n${HELP}`)
  }
}

/**
 * The exit code and one-line message for a failure an operator can act on,
 * or null for anything else (a bug: its stack trace is printed).
 */
function known (err: unknown): { code: number, message: string } | null {
  if (!(err instanceof Error)) return null
  if (err instanceof CliError || err.name === 'ConfigError') return { code: EXIT.usage, message: err.message }
  if (err instanceof StartError) return { code: err.exitCode, message: err.message }
  // A cluster worker's StartError reaches the primary by name (server/cluster.ts).
  if (err.name === 'StartError' || err.name === 'IdentityError') return { code: (err as { exitCode?: number }).exitCode ?? EXIT.failed, message: err.message }
  return null
}

/**
 * Server commands exit as soon as they are done: whatever a failed or
 * abandoned start left open (a Redis client retrying, say) must not keep
 * the process alive without a bound.
 */
const SERVERS = new Set(['start', 'bridge'])

function finish (code: number, command: string | undefined): void {
  process.exitCode = code
  if (command !== undefined && SERVERS.has(command)) process.stderr.write('', () => process.exit(code))
}

const argv = process.argv.slice(2)
main(argv).then((code) => { finish(code, argv[0]) }, (err: unknown) => {
  const k = known(err)
  if (k !== null) process.stderr.write(`warbler: ${k.message}\n`)
  else process.stderr.write(`warbler: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  finish(k?.code ?? EXIT.failed, argv[0])
})
