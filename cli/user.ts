/**
 * `warbler user add|list|remove|passwd|admin`.
 */
import { randomPassword } from '../broker/identity/password.js'
import { IdentityStore } from '../broker/identity/store.js'
import { CliError, dataDirOf, parseArgs, readStdinLine } from './args.js'

const HELP = `Usage:
  warbler user add NAME [--admin] [--password-stdin]
      Create a user. Without --password-stdin a random password is generated
      and printed once.
  warbler user list
  warbler user remove NAME
  warbler user passwd NAME [--password-stdin]
      Set a new password (generated and printed when not read from stdin).
  warbler user admin NAME --on|--off
      Grant or take away admin rights ($SYS access, admin API).

Options: --data-dir DIR (env WARBLER_DATA_DIR, default ./data)
User names: 1-32 of a-z, 0-9, _ and ., starting with a letter.
`

export async function runUser (argv: string[]): Promise<number> {
  const p = parseArgs(argv, ['data-dir'], ['admin', 'password-stdin', 'help', 'on', 'off'])
  const [sub, name, ...extra] = p.positional
  if (p.options.has('help') || sub === undefined) {
    process.stdout.write(HELP)
    return sub === undefined && !p.options.has('help') ? 2 : 0
  }
  if (extra.length > 0) throw new CliError(`unexpected argument ${JSON.stringify(extra[0])}`)
  const needName = (): string => {
    if (name === undefined) throw new CliError(`user ${sub} needs a user name`)
    return name
  }
  const password = async (): Promise<{ value: string, generated: boolean }> => {
    if (p.options.has('password-stdin')) return { value: await readStdinLine(), generated: false }
    return { value: randomPassword(), generated: true }
  }
  const store = await IdentityStore.open(dataDirOf(p))
  try {
    switch (sub) {
      case 'add': {
        const n = needName()
        const pw = await password()
        await store.addUser(n, pw.value, p.options.has('admin'))
        process.stdout.write(`created user ${n}${p.options.has('admin') ? ' (admin)' : ''}\n`)
        if (pw.generated) process.stdout.write(`password: ${pw.value}\n`)
        return 0
      }
      case 'list': {
        for (const u of await store.listUsers()) {
          process.stdout.write(`${u.name}\t${u.admin ? 'admin' : 'user'}\t${new Date(u.createdAt).toISOString()}\n`)
        }
        return 0
      }
      case 'remove':
        await store.removeUser(needName())
        process.stdout.write(`removed user ${name as string}\n`)
        return 0
      case 'passwd': {
        const n = needName()
        const pw = await password()
        await store.setPassword(n, pw.value)
        process.stdout.write(`password changed for ${n}\n`)
        if (pw.generated) process.stdout.write(`password: ${pw.value}\n`)
        return 0
      }
      case 'admin': {
        const n = needName()
        const on = p.options.has('on')
        if (on === p.options.has('off')) throw new CliError('user admin needs exactly one of --on and --off')
        await store.setAdmin(n, on)
        process.stdout.write(`${n} is ${on ? 'now' : 'no longer'} an admin\n`)
        return 0
      }
      default:
        throw new CliError(`unknown user command ${JSON.stringify(sub)}\n\n${HELP}`)
    }
  } finally {
    await store.close()
  }
}
