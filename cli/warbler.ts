#!/usr/bin/env node
/**
 * The `warbler` command: `start` runs the service; `user` and `token` manage
 * identities in the data dir (also while the service runs).
 */
import { CliError } from './args.js'

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
  switch (command) {
    // Loaded on demand: `user` and `token` need only SQLite, not the broker's modules.
    case 'start': return await (await import('./start.js')).runStart(rest)
    case 'user': return await (await import('./user.js')).runUser(rest)
    case 'token': return await (await import('./token.js')).runToken(rest)
    case 'bridge': return await (await import('./bridge.js')).runBridge(rest)
    case 'backup': return await (await import('./backup.js')).runBackup(rest)
    case 'restore': return await (await import('./backup.js')).runRestore(rest)
    case 'bench': return await (await import('../bench/cli.js')).runBench(rest)
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

main(process.argv.slice(2)).then((code) => { process.exitCode = code }, (err: unknown) => {
  if (err instanceof CliError) {
    process.stderr.write(`warbler: ${err.message}\n`)
    process.exitCode = 2
    return
  }
  if (err instanceof Error && err.name === 'ConfigError') {
    process.stderr.write(`warbler: ${err.message}\n`)
    process.exitCode = 2
    return
  }
  if (err instanceof Error && (err.name === 'IdentityError' || err.name === 'StartError')) {
    process.stderr.write(`warbler: ${err.message}\n`)
    process.exitCode = 1
    return
  }
  process.stderr.write(`warbler: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exitCode = 1
})
