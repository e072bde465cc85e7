/**
 * `warbler token create|list|revoke`.
 */
import { IdentityError, IdentityStore } from '../broker/identity/identity-store.js'
import { CliError, dataDirOf, onlyOptions, parseArgs } from '../shared/args.js'

const HELP = `Usage:
  warbler token create USER [--ttl SECONDS]
      Print a signed access token (JWT) for USER, valid for --ttl seconds
      (default 86400). Use it as the MQTT password with USER as user name.
  warbler token create USER --device NAME
      Print a long-lived device token for USER. It is shown once and stored
      only as a hash; revoke it with warbler token revoke ID.
  warbler token list [USER]
      List device tokens (id, user, name, created, revoked).
  warbler token revoke ID
      Revoke a device token; new connections with it are refused from then on.

Options: --data-dir DIR (env WARBLER_DATA_DIR, default ./data)
Nodes started with --redis on one Redis share device tokens, revocations and
the signing key: the node running on this data dir passes a change on to the
others within a second.
`

const COMMANDS: Record<string, { options: readonly string[], arg: 'required' | 'optional' }> = {
  create: { options: ['ttl', 'device'], arg: 'required' },
  list: { options: [], arg: 'optional' },
  revoke: { options: [], arg: 'required' }
}

export async function runToken (argv: string[]): Promise<number> {
  const p = parseArgs(argv, ['data-dir', 'ttl', 'device'], ['help'])
  const [sub, arg, ...extra] = p.positional
  if (p.options.has('help') || sub === undefined) {
    process.stdout.write(HELP)
    return sub === undefined && !p.options.has('help') ? 2 : 0
  }
  // Everything about the command line is checked before the database is opened.
  const spec = COMMANDS[sub]
  if (spec === undefined) throw new CliError(`unknown token command ${JSON.stringify(sub)}\n\n${HELP}`)
  onlyOptions(p, `token ${sub}`, spec.options)
  if (extra.length > 0) throw new CliError(`unexpected argument ${JSON.stringify(extra[0])}`)
  if (spec.arg === 'required' && arg === undefined) {
    throw new CliError(sub === 'create' ? 'token create needs a user name' : 'token revoke needs a token id (see warbler token list)')
  }
  const device = p.options.get('device')
  let ttl = 86400
  if (device !== undefined && p.options.has('ttl')) throw new CliError('--ttl does not apply to device tokens (they last until revoked)')
  const ttlRaw = p.options.get('ttl')
  if (typeof ttlRaw === 'string') {
    ttl = /^\d+$/.test(ttlRaw) ? Number(ttlRaw) : NaN
    if (!Number.isSafeInteger(ttl)) throw new CliError(`--ttl must be a whole number of seconds, got ${JSON.stringify(ttlRaw)}`)
  }

  const store = await IdentityStore.open(dataDirOf(p), { create: false })
  try {
    switch (sub) {
      case 'create': {
        if (typeof device === 'string') {
          const t = await store.createDeviceToken(arg as string, device)
          process.stdout.write(`id: ${t.id}\ntoken: ${t.token}\n`)
          return 0
        }
        process.stdout.write(`${await store.createJwt(arg as string, ttl)}\n`)
        return 0
      }
      case 'list': {
        if (arg !== undefined && !(await store.listUsers()).some((u) => u.name === arg)) {
          throw new IdentityError('not_found', `no user ${arg}`)
        }
        for (const t of await store.listDeviceTokens(arg)) {
          const revoked = t.revokedAt === null ? '-' : new Date(t.revokedAt).toISOString()
          process.stdout.write(`${t.id}\t${t.user}\t${t.name}\t${new Date(t.createdAt).toISOString()}\t${revoked}\n`)
        }
        return 0
      }
      default: // revoke
        await store.revokeDeviceToken(arg as string)
        process.stdout.write(`revoked ${arg as string}\n`)
        return 0
    }
  } finally {
    await store.close()
  }
}
