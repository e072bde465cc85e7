/**
 * `warbler token create|list|revoke`.
 */
import { IdentityStore } from '../broker/identity/store.js'
import { CliError, dataDirOf, parseArgs } from './args.js'

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
      Revoke a device token; connections using it are refused from then on.

Options: --data-dir DIR (env WARBLER_DATA_DIR, default ./data)
`

export async function runToken (argv: string[]): Promise<number> {
  const p = parseArgs(argv, ['data-dir', 'ttl', 'device'], ['help'])
  const [sub, arg, ...extra] = p.positional
  if (p.options.has('help') || sub === undefined) {
    process.stdout.write(HELP)
    return sub === undefined && !p.options.has('help') ? 2 : 0
  }
  if (extra.length > 0) throw new CliError(`unexpected argument ${JSON.stringify(extra[0])}`)
  const store = await IdentityStore.open(dataDirOf(p))
  try {
    switch (sub) {
      case 'create': {
        if (arg === undefined) throw new CliError('token create needs a user name')
        const device = p.options.get('device')
        if (typeof device === 'string') {
          if (p.options.has('ttl')) throw new CliError('--ttl does not apply to device tokens (they last until revoked)')
          const t = await store.createDeviceToken(arg, device)
          process.stdout.write(`id: ${t.id}\ntoken: ${t.token}\n`)
          return 0
        }
        const ttlRaw = p.options.get('ttl') ?? '86400'
        const ttl = typeof ttlRaw === 'string' && /^\d+$/.test(ttlRaw) ? Number(ttlRaw) : NaN
        if (!Number.isSafeInteger(ttl)) throw new CliError(`--ttl must be a whole number of seconds, got ${JSON.stringify(ttlRaw)}`)
        process.stdout.write(`${await store.createJwt(arg, ttl)}\n`)
        return 0
      }
      case 'list':
        for (const t of await store.listDeviceTokens(arg)) {
          const revoked = t.revokedAt === null ? '-' : new Date(t.revokedAt).toISOString()
          process.stdout.write(`${t.id}\t${t.user}\t${t.name}\t${new Date(t.createdAt).toISOString()}\t${revoked}\n`)
        }
        return 0
      case 'revoke':
        if (arg === undefined) throw new CliError('token revoke needs a token id (see warbler token list)')
        await store.revokeDeviceToken(arg)
        process.stdout.write(`revoked ${arg}\n`)
        return 0
      default:
        throw new CliError(`unknown token command ${JSON.stringify(sub)}\n\n${HELP}`)
    }
  } finally {
    await store.close()
  }
}
