/**
 * Settings of `warbler start` that another command takes as flags of its own
 * (`warbler bridge --durability`): the same table (config.ts), so the same
 * defaults, checks and help, without the config file; a bad value is named
 * by its flag, as the command's other options are.
 */
import { checkRedisUrl, coerce, type Config, ConfigError, flagName, fromEnv, settingHelp, type SettingName, settings, type SettingSpec } from './config.js'

/** The `--help` lines of some settings, for a command that takes them as its own flags (no config file). */
export function settingsHelp (keys: readonly SettingName[]): string {
  return keys.flatMap((key) => settingHelp(key, false)).join('\n')
}

/** What a setting accepts, in words: `process or power`, `a whole number from 0 to 36500`. */
function accepted (key: SettingName): string {
  const spec: SettingSpec = settings[key]
  switch (spec.kind) {
    case 'int': return `a whole number from ${spec.min ?? 0} to ${spec.max ?? Number.MAX_SAFE_INTEGER}`
    case 'port': return 'a port number from -1 to 65535'
    case 'bool': return 'true or false'
    case 'enum': {
      const values = spec.values ?? []
      return values.length < 2 ? values.join('') : `${values.slice(0, -1).join(', ')} or ${values[values.length - 1] as string}`
    }
    case 'list': return 'a list of strings'
    case 'string': return key === 'redis' ? 'a redis:// or rediss:// URL' : 'a string'
  }
}

/**
 * A bad value of a setting that a command takes as its own flag (`warbler
 * bridge --durability`): `field` names the setting, the message its flag, as
 * the command's other options are named.
 */
class FlagError extends ConfigError {
  constructor (field: SettingName, raw: unknown) {
    super(field, '')
    this.message = `${flagName(field)} must be ${accepted(field)}, got ${JSON.stringify(raw)}`
  }
}

/**
 * Some settings for a command other than `warbler start` that takes them as
 * flags of its own (`warbler bridge`): flag (`given`, by setting name) >
 * environment > the table's default, each checked as `warbler start` checks
 * it. There is no config file. Throws a {@link FlagError} for the first bad value.
 */
export function resolveSettings<K extends SettingName> (keys: readonly K[], given: Partial<Record<K, string>>, env: NodeJS.ProcessEnv = process.env): Pick<Config, K> {
  const envValues = fromEnv(env)
  const out: Partial<Record<SettingName, unknown>> = {}
  for (const key of keys) {
    const flag = given[key]
    const raw = flag !== undefined && settings[key].kind === 'list' ? [flag] : (flag ?? envValues[key])
    if (raw === undefined) { out[key] = settings[key].default; continue }
    try {
      out[key] = coerce(key, raw)
      if (key === 'redis') checkRedisUrl(out[key] as string)
    } catch (err) {
      if (err instanceof ConfigError) throw new FlagError(key, raw)
      throw err
    }
  }
  return Object.freeze(out) as Pick<Config, K>
}
