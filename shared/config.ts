/**
 * Settings of `warbler start`: one table, resolved once.
 *
 * Every setting has a command-line flag (`--mqtt-port`), an environment
 * variable (`WARBLER_MQTT_PORT`) and a key in the optional JSON config file
 * (`mqttPort`). Precedence: flag > environment > file > default. The result is
 * validated once at start (a bad value stops the start with a message naming
 * the field) and frozen. `docs/configuration.md` lists the same table; a test
 * keeps them in step.
 */
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import os from 'node:os'
import path from 'node:path'

type Kind = 'int' | 'port' | 'bool' | 'string' | 'list' | 'enum'

export interface SettingSpec {
  kind: Kind
  default: unknown
  /** One line for `--help` and docs/configuration.md. */
  doc: string
  min?: number
  max?: number
  values?: readonly string[]
}

const KiB = 1024
const MiB = 1024 * KiB

/** The settings table. Order here is the order of `--help` and the docs. */
export const settings = {
  dataDir: { kind: 'string', default: 'data', doc: 'Directory for the SQLite database and secrets.' },
  dev: { kind: 'bool', default: false, doc: 'Development mode: anonymous clients allowed, non-chat topics open to all.' },
  host: { kind: 'string', default: '', doc: 'Address to listen on. Default: 127.0.0.1 with --dev, 0.0.0.0 otherwise.' },
  mqttPort: { kind: 'port', default: 1883, doc: 'MQTT over TCP port (0 = any free port, -1 = off).' },
  wsPort: { kind: 'port', default: 8083, doc: 'MQTT over WebSocket port (path /mqtt; 0 = any free port, -1 = off).' },
  httpPort: { kind: 'port', default: 8080, doc: 'HTTP port for /healthz, /readyz and /metrics (-1 = off).' },
  httpHost: { kind: 'string', default: '', doc: 'Address the HTTP port listens on, apart from the MQTT listeners (127.0.0.1 keeps /metrics and the admin API on this machine). Default: the same as host.' },
  metricsTokenFile: { kind: 'string', default: '', doc: 'File whose content is the bearer token /metrics requires (Authorization: Bearer TOKEN; /healthz and /readyz stay open). Read once at start. Default: /metrics needs no token.' },
  mqttsPort: { kind: 'port', default: 8883, doc: 'MQTT over TLS port, used when tlsCert and tlsKey are set (-1 = off).' },
  wssPort: { kind: 'port', default: 8084, doc: 'MQTT over secure WebSocket port, used when tlsCert and tlsKey are set (-1 = off).' },
  tlsCert: { kind: 'string', default: '', doc: 'PEM certificate file; enables the TLS listeners together with tlsKey.' },
  tlsKey: { kind: 'string', default: '', doc: 'PEM private key file for tlsCert.' },
  httpTrustedProxies: { kind: 'list', default: [], doc: 'IP addresses of reverse proxies in front of the HTTP port: from these peers alone, the web app\'s logins take the client address (for the per-address login limits and the log) from the last X-Forwarded-For entry. Default: none, X-Forwarded-For is ignored.' },
  proxyProtocol: { kind: 'bool', default: false, doc: 'Behind a TCP proxy (HAProxy send-proxy or send-proxy-v2): the MQTT and WebSocket listeners read a PROXY protocol header (v1 or v2) first on every connection, and the client address it names is the one limits and logs use; a connection without one is closed. Only the proxy may reach those ports. The TLS listeners are for direct clients.' },
  redis: { kind: 'string', default: '', doc: 'Redis URL (redis://host:port/db): durable sessions, offline queues and retained messages, routing between nodes, and the message service\'s mirror of hot data (recent messages, unread counts, presence).' },
  workers: { kind: 'int', default: 1, min: 0, max: 1024, doc: 'Broker processes sharing the listening ports (node:cluster); 0 = one per core with redis, else 1. More than 1 needs redis (sessions); the workers of a node route to each other on local sockets. Default 1: on 2 vCPUs, 2 workers carried about what one process does for plain routing and less for chat (docs/benchmarks.md, workers).' },
  serviceProcess: { kind: 'enum', default: 'auto', values: ['auto', 'on', 'off'], doc: 'With workers and the embedded message service: run the service in a process of its own, which joins the workers\' local bus and takes no client connections (on), or in worker 0 beside its connections (off). auto: on with 2 or more workers when the machine has a core more than the workers. on needs redis; with --workers 1 it makes one connection worker and the service process.' },
  nodeName: { kind: 'string', default: '', doc: 'This node\'s name in the $SYS tree with redis ($SYS/broker/node/NAME/WORKER/...). Default: the host name.' },
  sysInterval: { kind: 'int', default: 10, min: 0, max: 3600, doc: 'Seconds between $SYS updates (0 = off).' },
  maxPayload: { kind: 'int', default: 256 * KiB, min: 1, max: 256 * MiB, doc: 'Largest publish payload in bytes; larger ones are refused with payload_too_large.' },
  maxPacket: { kind: 'int', default: 1 * MiB, min: 64, max: 256 * MiB, doc: 'Largest MQTT packet in bytes, fixed header included; a larger one closes the connection before it is buffered (MQTT 5 clients are told it as Maximum Packet Size, and get DISCONNECT 0x95 first).' },
  publishRate: { kind: 'int', default: 200, min: 0, max: 1_000_000, doc: 'Publishes per second allowed per client (0 = unlimited); excess is refused with rate_limited.' },
  publishBurst: { kind: 'int', default: 400, min: 1, max: 1_000_000, doc: 'Burst size of the per-client publish rate.' },
  maxConnections: { kind: 'int', default: 50_000, min: 1, max: 10_000_000, doc: 'Most client connections at once; more are refused (CONNACK 3).' },
  connRate: { kind: 'int', default: 50, min: 0, max: 1_000_000, doc: 'New connections per second allowed per source address (0 = unlimited).' },
  connBurst: { kind: 'int', default: 200, min: 1, max: 1_000_000, doc: 'Burst size of the per-address connection rate.' },
  loginFailures: { kind: 'int', default: 10, min: 1, max: 1_000_000, doc: 'Failed logins allowed per source address per minute before login is refused.' },
  maxSubscriptions: { kind: 'int', default: 100, min: 1, max: 1_000_000, doc: 'Subscriptions one client may hold; more get SUBACK 0x80.' },
  maxTopicLevels: { kind: 'int', default: 16, min: 1, max: 100, doc: 'Most levels in a topic name or filter.' },
  topicAliasMaximum: { kind: 'int', default: 0, min: 0, max: 65535, doc: 'MQTT 5: highest topic alias a client may set on its publishes, said in CONNACK (0 = none; a publish with an alias then closes the connection with reason 0x94).' },
  refusalDetail: { kind: 'enum', default: 'precise', values: ['precise', 'unspecified'], doc: 'MQTT 5: how a refused publish or subscription is answered in the protocol: precise (its own reason code, 0x87 or 0x97, with a reason string) or unspecified (0x80 Unspecified error, no reason string: MQTT 5 allows it when a server does not say why; for clients that take only 0x80, such as Paho\'s interoperability tests). The error notice on the device topic says why either way.' },
  offlineQueue: { kind: 'int', default: 1000, min: 1, max: 10_000_000, doc: 'Most QoS 1/2 messages queued for one persistent session.' },
  maxInflightInbound: { kind: 'int', default: 100, min: 1, max: 65535, doc: 'QoS 2 publishes one client may have stored and not yet released (PUBREL); one more is refused with awaiting_pubrel and closes an MQTT 3 connection. MQTT 5 clients are told it as Receive Maximum, and one with more unacknowledged QoS 1 and 2 publishes is disconnected with reason 0x93 (receive_maximum).' },
  serverKeepAlive: { kind: 'int', default: 0, min: 0, max: 65535, doc: 'MQTT 5: the keep alive in seconds every client gets, whatever it asked, said in CONNACK as Server Keep Alive (0 = off: the client\'s own). MQTT 3.1.1 clients keep theirs.' },
  maxKeepAlive: { kind: 'int', default: 0, min: 0, max: 65535, doc: 'MQTT 5: the longest keep alive in seconds a client may ask; one asking more, or none (0), gets this one as Server Keep Alive (0 = no cap). MQTT 3.1.1 clients keep theirs.' },
  maxSessionExpiry: { kind: 'int', default: 7 * 24 * 3600, min: 0, max: 4_294_967_295, doc: 'MQTT 5: the longest Session Expiry Interval in seconds a client may ask; one asking more gets this one, said in CONNACK (0 = no cap). Default 7 days.' },
  maxPendingSessions: { kind: 'int', default: 10_000, min: 0, max: 10_000_000, doc: 'MQTT 5: the most disconnected sessions with a Session Expiry Interval, and the most delayed wills, a broker process times at once; past it a session ends at its disconnect and a will goes out at once (0 = no cap). Each one held keeps its client\'s state in memory until it expires.' },
  maxInflight: { kind: 'int', default: 2000, min: 1, max: 10_000_000, doc: 'Publishes being routed at once; past it, publishers wait (no PUBACK, socket not read).' },
  slowConsumerBytes: { kind: 'int', default: 1 * MiB, min: 1 * KiB, max: 1024 * MiB, doc: 'Unsent bytes after which a subscriber is slow: it gets no QoS 0 and is disconnected for QoS 1/2 (its session keeps them).' },
  drainTimeout: { kind: 'int', default: 10, min: 1, max: 3600, doc: 'Seconds a subscriber may take to drain its socket before it is disconnected.' },
  bridge: { kind: 'enum', default: 'embedded', values: ['embedded', 'off'], doc: 'Run the message service in this node (embedded; with workers, in worker 0 only), or not (off: another node or a separate `warbler bridge` serves it). Run exactly one per Redis.' },
  durability: { kind: 'enum', default: 'process', values: ['process', 'power'], doc: 'What an acknowledged chat message survives: process (a crash of the process; a power cut can lose the last commits) or power (also a power cut; one fsync per archive batch).' },
  retentionDays: { kind: 'int', default: 0, min: 0, max: 36500, doc: 'Delete archived messages older than this many days (0 = keep forever).' },
  retentionMessages: { kind: 'int', default: 0, min: 0, max: 1_000_000_000, doc: 'Keep at most this many messages per conversation (0 = no limit).' },
  acl: { kind: 'list', default: [], doc: 'Extra ACL rules for non-chat topics, "read|write|readwrite PATTERN" with %u (user) and %c (client id).' },
  logLevel: { kind: 'enum', default: 'info', values: ['error', 'warn', 'info', 'debug'], doc: 'Log verbosity (logs go to stderr).' },
  startTimeout: { kind: 'int', default: 90, min: 1, max: 3600, doc: 'Seconds start-up may take (data dir, database, Redis, workers) before it gives up, naming the step, with exit code 6.' }
} as const satisfies Record<string, SettingSpec>

export type SettingName = keyof typeof settings

type ValueOf<S extends SettingSpec> =
  S['kind'] extends 'int' | 'port' ? number
    : S['kind'] extends 'bool' ? boolean
      : S['kind'] extends 'list' ? readonly string[]
        : string

export type Config = {
  readonly [K in SettingName]: ValueOf<(typeof settings)[K]>
} & {
  /** The host actually used, derived from host and dev. */
  readonly listenHost: string
  /** The host the HTTP port uses: httpHost, else listenHost. */
  readonly httpListenHost: string
  /** Whether the TLS listeners are on. */
  readonly tls: boolean
}

export class ConfigError extends Error {
  override name = 'ConfigError'
  constructor (readonly field: string, message: string) {
    super(`invalid setting ${field}: ${message}`)
  }
}

export function flagName (key: string): string {
  return '--' + key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())
}

export function envName (key: string): string {
  return 'WARBLER_' + key.replace(/[A-Z]/g, (c) => '_' + c).toUpperCase()
}

const byFlag = new Map<string, SettingName>(
  (Object.keys(settings) as SettingName[]).map((k) => [flagName(k), k])
)

/** Raw values (strings, or JSON values from the file) by setting name. */
type RawValues = Partial<Record<SettingName, unknown>>

/**
 * Split command-line arguments into known settings, plus `--config FILE`.
 * Unknown flags are an error, so that a typo never silently falls back.
 */
function parseFlags (argv: readonly string[]): { values: RawValues, config?: string } {
  const values: RawValues = {}
  let config: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (!arg.startsWith('--')) throw new ConfigError(arg, 'unexpected argument (settings are --name value)')
    const eq = arg.indexOf('=')
    let name = eq === -1 ? arg : arg.slice(0, eq)
    let inline: string | undefined = eq === -1 ? undefined : arg.slice(eq + 1)
    let negated = false
    if (name === '--config') {
      config = inline ?? argv[++i]
      if (config === undefined) throw new ConfigError('--config', 'needs a file name')
      continue
    }
    if (!byFlag.has(name) && name.startsWith('--no-') && byFlag.has('--' + name.slice(5))) {
      name = '--' + name.slice(5)
      negated = true
    }
    const key = byFlag.get(name)
    if (key === undefined) throw new ConfigError(name, 'unknown option (see warbler start --help)')
    const spec: SettingSpec = settings[key]
    if (spec.kind === 'bool') {
      if (negated) inline = 'false'
      values[key] = inline ?? 'true'
      continue
    }
    const value = inline ?? argv[++i]
    if (value === undefined) throw new ConfigError(name, 'needs a value')
    if (spec.kind === 'list') {
      const prev = (values[key] as string[] | undefined) ?? []
      values[key] = [...prev, value]
    } else {
      values[key] = value
    }
  }
  return config === undefined ? { values } : { values, config }
}

/** The settings given as WARBLER_* variables (empty ones are not given). */
export function fromEnv (env: NodeJS.ProcessEnv): RawValues {
  const values: RawValues = {}
  for (const key of Object.keys(settings) as SettingName[]) {
    const v = env[envName(key)]
    if (v === undefined || v === '') continue
    values[key] = settings[key].kind === 'list' ? v.split(';').map((s) => s.trim()).filter(Boolean) : v
  }
  return values
}

function fromFile (file: string): RawValues {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError('config', `cannot read ${file}: ${(err as Error).message}`)
  }
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (err) {
    throw new ConfigError('config', `${file} is not valid JSON: ${(err as Error).message}`)
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError('config', `${file} must hold a JSON object`)
  }
  const values: RawValues = {}
  for (const [k, v] of Object.entries(data)) {
    if (!(k in settings)) throw new ConfigError(k, `unknown key in ${file}`)
    checkJsonType(k as SettingName, v, file)
    values[k as SettingName] = v
  }
  return values
}

/** The JSON type each kind takes in the file, as said in an error. */
const jsonTypes: Record<Kind, string> = {
  int: 'a JSON number (an integer, not in quotes)',
  port: 'a JSON number (an integer, not in quotes)',
  bool: 'a JSON boolean (true or false)',
  string: 'a JSON string',
  enum: 'a JSON string',
  list: 'a JSON array of strings'
}

function describeJson (v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return `the array ${JSON.stringify(v)}`
  if (typeof v === 'object') return 'an object'
  return `the ${typeof v} ${JSON.stringify(v)}`
}

/**
 * A file value must already have its setting's JSON type: only flags and
 * environment variables are text to parse. Otherwise `"dev": "yes"` or
 * `"dev": "false"` would be read as a switch the writer may not have meant.
 */
function checkJsonType (key: SettingName, v: unknown, file: string): void {
  const kind = settings[key].kind
  const ok = kind === 'int' || kind === 'port' ? typeof v === 'number'
    : kind === 'bool' ? typeof v === 'boolean'
      : kind === 'list' ? Array.isArray(v) && v.every((x) => typeof x === 'string')
        : typeof v === 'string'
  if (!ok) throw new ConfigError(key, `expected ${jsonTypes[kind]} in ${file}, got ${describeJson(v)}`)
}

/** A raw value (flag or variable text, or a file's JSON value) as the setting's type; a ConfigError if it is not one. */
export function coerce (key: SettingName, raw: unknown): unknown {
  const spec: SettingSpec = settings[key]
  switch (spec.kind) {
    case 'int':
    case 'port': {
      const n = typeof raw === 'number' ? raw : (typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN)
      if (!Number.isSafeInteger(n)) throw new ConfigError(key, `expected an integer, got ${JSON.stringify(raw)}`)
      const min = spec.kind === 'port' ? -1 : (spec.min ?? -Infinity)
      const max = spec.kind === 'port' ? 65535 : (spec.max ?? Infinity)
      if (n < min || n > max) throw new ConfigError(key, `${n} is out of range ${min}..${max}`)
      return n
    }
    case 'bool':
      if (typeof raw === 'boolean') return raw
      if (raw === 'true' || raw === '1' || raw === 'yes') return true
      if (raw === 'false' || raw === '0' || raw === 'no') return false
      throw new ConfigError(key, `expected true or false, got ${JSON.stringify(raw)}`)
    case 'string':
      if (typeof raw !== 'string') throw new ConfigError(key, `expected a string, got ${JSON.stringify(raw)}`)
      return raw
    case 'enum':
      if (typeof raw !== 'string' || !(spec.values ?? []).includes(raw)) {
        throw new ConfigError(key, `expected one of ${(spec.values ?? []).join(', ')}, got ${JSON.stringify(raw)}`)
      }
      return raw
    case 'list':
      if (!Array.isArray(raw) || !raw.every((x) => typeof x === 'string')) {
        throw new ConfigError(key, 'expected a list of strings')
      }
      return Object.freeze([...raw])
  }
}

/** A redis setting is empty (no Redis) or a Redis URL. */
export function checkRedisUrl (url: string): void {
  if (url !== '' && !/^rediss?:\/\//.test(url)) {
    throw new ConfigError('redis', 'expected a redis:// or rediss:// URL')
  }
}

/**
 * Resolve the configuration from flags, environment and file, validate it and
 * freeze it. Throws a {@link ConfigError} naming the first bad field.
 */
export function resolveConfig (argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Config {
  const flags = parseFlags(argv)
  const envValues = fromEnv(env)
  const file = flags.config ?? env.WARBLER_CONFIG
  const fileValues = file !== undefined && file !== '' ? fromFile(file) : {}
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(settings) as SettingName[]) {
    const raw = flags.values[key] ?? envValues[key] ?? fileValues[key]
    out[key] = raw === undefined ? settings[key].default : coerce(key, raw)
  }
  const cfg = out as Omit<Config, 'listenHost' | 'httpListenHost' | 'tls'>
  if (cfg.maxPacket < cfg.maxPayload) {
    throw new ConfigError('maxPacket', `must be at least maxPayload (${cfg.maxPayload})`)
  }
  if ((cfg.tlsCert === '') !== (cfg.tlsKey === '')) {
    throw new ConfigError(cfg.tlsCert === '' ? 'tlsCert' : 'tlsKey', 'tlsCert and tlsKey must be set together')
  }
  for (const f of ['tlsCert', 'tlsKey'] as const) {
    if (cfg[f] !== '') {
      try { readFileSync(cfg[f]) } catch (err) { throw new ConfigError(f, `cannot read ${cfg[f]}: ${(err as Error).message}`) }
    }
  }
  checkRedisUrl(cfg.redis)
  // Workers share sessions (persistence) and routing (mq.ts) only through Redis.
  if (cfg.workers > 1 && cfg.redis === '') {
    throw new ConfigError('workers', `${cfg.workers} workers need redis (--redis URL): workers share sessions and routing through Redis`)
  }
  const nodeName = cfg.nodeName !== '' ? cfg.nodeName : os.hostname().replace(/[^A-Za-z0-9._-]/g, '_')
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(nodeName)) {
    throw new ConfigError('nodeName', `${JSON.stringify(nodeName)} must be 1 to 64 letters, digits, dots, dashes or underscores`)
  }
  if (cfg.serviceProcess === 'on' && cfg.redis === '') {
    throw new ConfigError('serviceProcess', 'on needs redis (--redis URL): the service process and the workers share sessions through Redis')
  }
  if (cfg.serviceProcess === 'on' && cfg.bridge !== 'embedded') {
    throw new ConfigError('serviceProcess', `on needs bridge embedded (it is ${cfg.bridge}): the message service is what runs in that process`)
  }
  if (cfg.mqttPort === -1 && cfg.wsPort === -1) {
    throw new ConfigError('mqttPort', 'at least one of mqttPort and wsPort must be on')
  }
  for (const rule of cfg.acl) parseAclRule(rule)
  for (const a of cfg.httpTrustedProxies) {
    if (isIP(a) === 0) throw new ConfigError('httpTrustedProxies', `${JSON.stringify(a)} is not an IP address (give each proxy's address, no names or ranges)`)
  }
  if (cfg.httpHost !== '' && isIP(cfg.httpHost) === 0 && !/^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$/.test(cfg.httpHost)) {
    throw new ConfigError('httpHost', `${JSON.stringify(cfg.httpHost)} is not an IP address or host name`)
  }
  if (cfg.metricsTokenFile !== '') readMetricsToken(cfg.metricsTokenFile)
  const listenHost = cfg.host !== '' ? cfg.host : (cfg.dev ? '127.0.0.1' : '0.0.0.0')
  const workers = cfg.workers !== 0 ? cfg.workers : (cfg.redis !== '' ? os.availableParallelism() : 1)
  // auto: a process of its own only where a core is left for it (docs/benchmarks.md, "The message service in its own process").
  const spare = cfg.redis !== '' && cfg.bridge === 'embedded' && workers >= 2 && os.availableParallelism() > workers
  return Object.freeze({
    ...cfg,
    dataDir: path.resolve(cfg.dataDir),
    workers,
    serviceProcess: cfg.serviceProcess === 'auto' ? (spare ? 'on' : 'off') : cfg.serviceProcess,
    nodeName,
    listenHost,
    httpListenHost: cfg.httpHost !== '' ? cfg.httpHost : listenHost,
    tls: cfg.tlsCert !== ''
  })
}

/**
 * The token in a metricsTokenFile: its content without surrounding white
 * space (a trailing newline from `echo` or an editor is not part of it).
 * The token itself never goes into the configuration, so that it is not
 * handed to workers in their environment nor printed with the settings.
 */
export function readMetricsToken (file: string): string {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ConfigError('metricsTokenFile', `cannot read ${file}: ${(err as Error).message}`)
  }
  const token = text.trim()
  if (token === '') throw new ConfigError('metricsTokenFile', `${file} is empty; it must hold the token /metrics requires`)
  if (/\s/.test(token)) throw new ConfigError('metricsTokenFile', `${file} must hold one token on one line (no spaces inside it)`)
  return token
}

export interface AclRule {
  read: boolean
  write: boolean
  pattern: string
}

/** Parse one `acl` entry: `"read|write|readwrite PATTERN"`. */
export function parseAclRule (rule: string): AclRule {
  const m = /^\s*(read|write|readwrite)\s+(\S+)\s*$/.exec(rule)
  if (m === null) throw new ConfigError('acl', `${JSON.stringify(rule)} is not "read|write|readwrite PATTERN"`)
  const access = m[1] as string
  const pattern = m[2] as string
  const levels = pattern.split('/')
  levels.forEach((level, i) => {
    if ((level.includes('#') && (level !== '#' || i !== levels.length - 1)) || (level.includes('+') && level !== '+')) {
      throw new ConfigError('acl', `${JSON.stringify(pattern)} has a misplaced wildcard`)
    }
  })
  if (pattern.startsWith('$') || pattern === 'wb' || pattern.startsWith('wb/')) {
    // $-topics are for admins and the chat space wb/ has its own fixed rules.
    throw new ConfigError('acl', `${JSON.stringify(pattern)} may not name $-topics or the chat topic space wb/`)
  }
  return { read: access !== 'write', write: access !== 'read', pattern }
}

/** The `--help` lines of one setting; `fileKey` for a command that reads the config file. */
export function settingHelp (key: SettingName, fileKey: boolean): string[] {
  const spec: SettingSpec = settings[key]
  const def = Array.isArray(spec.default) ? '[]' : JSON.stringify(spec.default)
  return [
    `  ${flagName(key)}${spec.kind === 'bool' ? '' : ' VALUE'}`,
    `      ${spec.doc}`,
    `      env ${envName(key)}${fileKey ? `, file key ${key}` : ''}, default ${def}`
  ]
}

/** `--help` text for `warbler start`, built from the settings table. */
export function startHelp (): string {
  const lines = ['Usage: warbler start [options]', '', 'Options (flag, environment variable, default):', '  --config FILE   JSON file with any of the keys below (env WARBLER_CONFIG)']
  for (const key of Object.keys(settings) as SettingName[]) lines.push(...settingHelp(key, true))
  return lines.join('\n')
}
