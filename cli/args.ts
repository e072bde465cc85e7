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

/** `valued` lists options that take a value; the others are flags. */
export function parseArgs (argv: readonly string[], valued: readonly string[], flags: readonly string[]): Parsed {
  const positional: string[] = []
  const options = new Map<string, string | true>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
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

export function dataDirOf (p: Parsed): string {
  const v = p.options.get('data-dir')
  return path.resolve(typeof v === 'string' ? v : (process.env.WARBLER_DATA_DIR ?? 'data'))
}

/** Read a secret from standard input (the first line), for --password-stdin. */
export async function readStdinLine (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? ''
}
