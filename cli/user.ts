/**
 * `warbler user add|list|remove|passwd|admin`.
 */
import { randomPassword } from '../broker/identity/password.js'
import { RefreshTokens } from '../broker/identity/refresh-tokens.js'
import { IdentityStore } from '../broker/identity/identity-store.js'
import { CliError, dataDirOf, onlyOptions, parseArgs, readStdinLine } from '../shared/args.js'

const HELP = `Usage:
  warbler user add NAME [--admin|--service] [--password-stdin]
      Create a user. Without --password-stdin a random password is generated
      and printed once. --service makes the account of a separate message
      service process (warbler bridge).
  warbler user list
  warbler user remove NAME
  warbler user passwd NAME [--password-stdin]
      Set a new password (generated and printed when not read from stdin).
      Ends the user's web app logins (their refresh tokens are revoked).
  warbler user admin NAME --on|--off
      Grant or take away admin rights ($SYS access, admin API).

Options: --data-dir DIR (env WARBLER_DATA_DIR, default ./data)
User names: 1-32 of a-z, 0-9, _ and ., starting with a letter.
Passwords: 8-1024 characters. A change is in force for the next login to a
running service when the command returns; live connections of a removed user
are closed within a second. Nodes started with --redis on one Redis share
users: the node running on this data dir passes the change on to the others
within a second (when it next starts, if it is not running).
`

/** Per subcommand: the options it takes, and whether it needs NAME. */
const COMMANDS: Record<string, { options: readonly string[], name: boolean }> = {
  add: { options: ['admin', 'service', 'password-stdin'], name: true },
  list: { options: [], name: false },
  remove: { options: [], name: true },
  passwd: { options: ['password-stdin'], name: true },
  admin: { options: ['on', 'off'], name: true }
}

export async function runUser (argv: string[]): Promise<number> {
  const p = parseArgs(argv, ['data-dir'], ['admin', 'service', 'password-stdin', 'help', 'on', 'off'])
  const [sub, name, ...extra] = p.positional
  if (p.options.has('help') || sub === undefined) {
    process.stdout.write(HELP)
    return sub === undefined && !p.options.has('help') ? 2 : 0
  }
  // Everything about the command line is checked before the database is opened (or created).
  const spec = COMMANDS[sub]
  if (spec === undefined) throw new CliError(`unknown user command ${JSON.stringify(sub)}\n\n${HELP}`)
  onlyOptions(p, `user ${sub}`, spec.options)
  if (spec.name && name === undefined) throw new CliError(`user ${sub} needs a user name`)
  const unexpected = spec.name ? extra[0] : name
  if (unexpected !== undefined) throw new CliError(`unexpected argument ${JSON.stringify(unexpected)}`)
  if (sub === 'admin' && p.options.has('on') === p.options.has('off')) throw new CliError('user admin needs exactly one of --on and --off')
  if (p.options.has('admin') && p.options.has('service')) throw new CliError('a user is an admin or a service account, not both')
  const n = name as string

  const password = async (): Promise<{ value: string, generated: boolean }> => {
    if (p.options.has('password-stdin')) return { value: await readStdinLine(), generated: false }
    return { value: randomPassword(), generated: true }
  }
  // Only `add` may create the database: elsewhere a missing one means a wrong --data-dir.
  const store = await IdentityStore.open(dataDirOf(p), { create: sub === 'add' })
  try {
    switch (sub) {
      case 'add': {
        const pw = await password()
        await store.addUser(n, pw.value, p.options.has('admin'), p.options.has('service'))
        process.stdout.write(`created user ${n}${p.options.has('admin') ? ' (admin)' : p.options.has('service') ? ' (service)' : ''}\n`)
        if (pw.generated) process.stdout.write(`password: ${pw.value}\n`)
        return 0
      }
      case 'list': {
        for (const u of await store.listUsers()) {
          process.stdout.write(`${u.name}\t${u.admin ? 'admin' : u.service ? 'service' : 'user'}\t${new Date(u.createdAt).toISOString()}\n`)
        }
        return 0
      }
      case 'remove':
        await store.removeUser(n)
        process.stdout.write(`removed user ${n} and its device tokens\n`)
        return 0
      case 'passwd': {
        const pw = await password()
        await store.setPassword(n, pw.value)
        // Whoever logged in to the web app with the old password must not stay logged in.
        const ended = await (await RefreshTokens.open(store.db)).revokeUser(n)
        process.stdout.write(`password changed for ${n}\n`)
        if (ended > 0) process.stdout.write(`ended ${ended} web login${ended === 1 ? '' : 's'} of ${n}\n`)
        if (pw.generated) process.stdout.write(`password: ${pw.value}\n`)
        return 0
      }
      default: { // admin
        const on = p.options.has('on')
        await store.setAdmin(n, on)
        process.stdout.write(`${n} is ${on ? 'now' : 'no longer'} an admin\n`)
        return 0
      }
    }
  } finally {
    await store.close()
  }
}
