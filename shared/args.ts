/**
 * Small argument parsing for the management commands: positional arguments
 * plus `--name value` / `--flag` options declared by each command.
 */
import path from 'node:path'

export class CliError extends Error {
  override name = 'CliError'
}

export interface Parsed {
  positional: string[]
  options: Map<string, string | true>
}

/**
 * `valued` lists options that take a value; the others are flags. `-h` means
 * `--help` where help is a flag; any other `-x` is an unknown option. After
 * `--` every argument is positional.
 */
export function parseArgs (argv: readonly string[], valued: readonly string[], flags: readonly string[]): Parsed {
  const positional: string[] = []
  const options = new Map<string, string | true>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (arg === '--') { positional.push(...argv.slice(i + 1)); break }
    if (arg === '-h' && flags.includes('help')) { options.set('help', true); continue }
    if (arg.startsWith('-') && !arg.startsWith('--') && arg.length > 1) throw new CliError(`unknown option ${arg}`)
    if (!arg.startsWith('--')) { positional.push(arg); continue }
    const eq = arg.indexOf('=')
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq)
    if (valued.includes(name)) {
      const v = eq === -1 ? argv[++i] : arg.slice(eq + 1)
      if (v === undefined) throw new CliError(`--${name} needs a value`)
      options.set(name, v)
    } else if (flags.includes(name) && eq === -1) {
      options.set(name, true)
    } else {
      throw new CliError(`unknown option --${name}`)
    }
  }
  return { positional, options }
}

/** Refuse options that the chosen subcommand does not take (they would be silently ignored). */
export function onlyOptions (p: Parsed, command: string, allowed: readonly string[]): void {
  for (const name of p.options.keys()) {
    if (name !== 'data-dir' && name !== 'help' && !allowed.includes(name)) {
      throw new CliError(`--${name} does not apply to ${command}`)
    }
  }
}

export function dataDirOf (p: Parsed): string {
  const v = p.options.get('data-dir')
  return path.resolve(typeof v === 'string' ? v : (process.env.WARBLER_DATA_DIR ?? 'data'))
}

/** Read a secret from standard input (the first line, up to its end or EOF), for --password-stdin. */
export async function readStdinLine (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) {
    chunks.push(c as Buffer)
    if ((c as Buffer).includes(10)) break // a terminal user pressed Enter: do not wait for EOF
  }
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? ''
}
