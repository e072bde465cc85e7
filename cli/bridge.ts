/**
 * `warbler bridge`: the message service as its own process, a privileged
 * MQTT client of a broker started with `--bridge off`. It logs in as a user
 * with the service role (`warbler user add NAME --service`), listens on
 * `wb/u/+/out/+` (the broker appends the sender's client id) and follows
 * the brokers' client notices and heartbeats for presence
 * (bridge/presence.ts); at its start it asks the brokers for the clients
 * already connected.
 *
 * It refuses to start, with a message saying why, when:
 * - the account is missing from the data dir or is not a service account
 *   (checked in the database the broker reads, before connecting);
 * - another message service holds the data dir: another `warbler bridge`,
 *   or a `warbler start` with its embedded service (shared/data-dir.ts: an
 *   operating-system lock, released even when its holder is killed);
 * - another message service already answers on the broker: the broker's
 *   embedded one (a broker not started with `--bridge off`), or another
 *   bridge. Both would store and deliver every message twice. To find out,
 *   the bridge sends one harmless request on its own out topic before it
 *   handles anything, and waits until the broker has routed that request
 *   back to the bridge itself (so any other subscriber of `wb/u/+/out/+`
 *   has it too) plus a grace period: an answer from anyone else means
 *   another service is there. Messages that arrive meanwhile are held and
 *   handled once the check passes.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { MqttClient } from 'mqtt'
import { isValidUsername, parseStampedOut, type PublishProperties, SERVICE_OUT_FILTER, topics } from '@warbler/sdk/protocol'
import { IdentityStore } from '../broker/identity/identity-store.js'
import { createLogger } from '../shared/log.js'
import { type DataDirLock, lockDataDir, prepareDataDir } from '../shared/data-dir.js'
import { StartError } from '../shared/start-error.js'
import { PRESENCE_FILTERS } from '../bridge/presence.js'
import { SERVICE_BIRTH } from '../shared/sys-topics.js'
import { type RunningService, startService } from '../bridge/start-service.js'
import { laterTransport, mqttTransport } from '../bridge/transport.js'
import { CliError, dataDirOf, parseArgs } from '../shared/args.js'
import { flagName } from '../shared/config.js'
import { resolveSettings, settingsHelp } from '../shared/flag-settings.js'

/**
 * The settings of `warbler start` the message service takes: the same flags,
 * environment variables, defaults and checks (shared/flag-settings.ts), no config file.
 */
export const SERVICE_SETTINGS = ['redis', 'maxPayload', 'retentionDays', 'retentionMessages', 'durability'] as const

const HELP = `Usage: warbler bridge --mqtt URL --username NAME [options]

Runs the message service as its own process against a broker started with
--bridge off. NAME must be a user with the service role
(warbler user add NAME --service).

Options:
  --mqtt URL             broker to connect to (env WARBLER_BRIDGE_MQTT), e.g. mqtt://127.0.0.1:1883
  --username NAME        service user (env WARBLER_BRIDGE_USERNAME)
  --password-file FILE   file holding its password or token; or env WARBLER_BRIDGE_PASSWORD
  --data-dir DIR         the broker's data dir, with warbler.db (env WARBLER_DATA_DIR, default ./data)

Settings of warbler start the message service takes, with the same flags,
environment variables, defaults and checks (no config file). The bridge uses
redis for the mirror only; give it the broker's max-payload, the largest
payload the service accepts once decoded.
${settingsHelp(SERVICE_SETTINGS)}
`

/** After the broker routed the probe back to us: how long another service gets to answer it. */
const PROBE_GRACE_MS = 300
/** Longest wait for the probe to come back at all. */
const PROBE_TIMEOUT_MS = 5000
/** Longest wait at stop for messages being handled. */
const DRAIN_TIMEOUT_MS = 5000

/** The account must exist in the broker's database and have the service role. */
async function checkAccount (dataDir: string, username: string): Promise<void> {
  const store = await IdentityStore.open(dataDir, { create: false })
  let row: { service: number, admin: number } | undefined
  try {
    row = await store.db.get<{ service: number, admin: number }>('SELECT service, admin FROM users WHERE name = ?', [username])
  } finally {
    await store.close()
  }
  if (row === undefined) {
    throw new CliError(`there is no user ${username} in ${dataDir}; create the service account with \`warbler user add ${username} --service\`, and run the bridge on the broker's --data-dir`)
  }
  if (row.service !== 1) {
    throw new CliError(`${username} is not a service account; the bridge logs in as one (\`warbler user add NAME --service\`)`)
  }
}

async function drain (inflight: Set<Promise<void>>, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (inflight.size > 0 && Date.now() < deadline) {
    await Promise.race([Promise.allSettled([...inflight]), new Promise((resolve) => setTimeout(resolve, Math.max(1, deadline - Date.now())))])
  }
}

// eslint-disable-next-line max-lines-per-function -- the command's life in order: settings, lock, login checks, serve, stop
export async function runBridge (argv: string[]): Promise<number> {
  const flags = SERVICE_SETTINGS.map((key) => flagName(key).slice(2))
  const p = parseArgs(argv, ['mqtt', 'username', 'password-file', 'data-dir', ...flags], ['help'])
  if (p.options.has('help')) { process.stdout.write(HELP); return 0 }
  if (p.positional.length > 0) throw new CliError(`unexpected argument ${JSON.stringify(p.positional[0])}`)
  const url = (p.options.get('mqtt') as string | undefined) ?? process.env.WARBLER_BRIDGE_MQTT
  const username = (p.options.get('username') as string | undefined) ?? process.env.WARBLER_BRIDGE_USERNAME
  if (url === undefined || !/^(mqtts?|wss?):\/\//.test(url)) throw new CliError('--mqtt needs a broker URL (mqtt://host:port)')
  if (username === undefined || !isValidUsername(username)) throw new CliError('--username needs the service user name')
  const pwFile = p.options.get('password-file')
  const password = typeof pwFile === 'string' ? readFileSync(pwFile, 'utf8').trim() : process.env.WARBLER_BRIDGE_PASSWORD
  if (password === undefined || password === '') throw new CliError('give the service password with --password-file or WARBLER_BRIDGE_PASSWORD')
  const given: Partial<Record<typeof SERVICE_SETTINGS[number], string>> = {}
  SERVICE_SETTINGS.forEach((key, i) => {
    const v = p.options.get(flags[i] as string)
    if (typeof v === 'string') given[key] = v
  })
  const settings = resolveSettings(SERVICE_SETTINGS, given)
  const log = createLogger('info')
  const dataDir = dataDirOf(p)
  const safeUrl = url.replace(/\/\/[^@/]*@/, '//')

  prepareDataDir(dataDir)
  await checkAccount(dataDir, username)
  const lock: DataDirLock = await lockDataDir(dataDir, 'service')

  const clientId = `${username}-bridge`
  const probeId = `bridge-probe-${randomBytes(6).toString('hex')}`
  let client: MqttClient | null = null
  let running: RunningService | null = null
  let live = false
  const held: Array<[string, Buffer, PublishProperties | undefined]> = []
  const inflight = new Set<Promise<void>>()
  let onEcho = (): void => {}
  let foreignAnswer = false

  const dispatch = (topic: string, payload: Buffer, props?: PublishProperties): void => {
    const r = running as RunningService
    const who = parseStampedOut(topic)
    if (who !== null) {
      const done = r.service.handle(who.user, who.clientId, payload, props)
      inflight.add(done)
      void done.finally(() => inflight.delete(done))
      return
    }
    r.notice(topic, payload)
  }
  const route = (topic: string, payload: Buffer, props: PublishProperties | undefined): void => {
    if (topic === topics.device(clientId)) {
      // Only another message service answers our probe (broker notices carry no ref).
      try {
        const f = JSON.parse(payload.toString('utf8')) as { id?: unknown, ref?: unknown }
        if (f.id === probeId || f.ref === probeId) foreignAnswer = true
      } catch { /* not a frame */ }
      return
    }
    const who = parseStampedOut(topic)
    if (who !== null && who.user === username) {
      // The service account does not chat; its own out topic carries only probes.
      if (who.clientId === clientId && payload.includes(probeId)) onEcho()
      return
    }
    if (live) dispatch(topic, payload, props)
    else held.push([topic, payload, props])
  }

  const release = async (): Promise<void> => {
    await client?.endAsync().catch(() => {})
    await running?.close().catch(() => {})
    await lock.release()
  }

  try {
    // Publishes go out once connected; nothing is published before (nothing is handled before).
    const later = laterTransport()
    // Presence from the brokers' notices; the service account's own connections do not count.
    running = await startService({ settings: { ...settings, dataDir }, transport: later.transport, log, notices: { isService: (user) => user === username } })
    try {
      const c = await mqttTransport(url, { username, password, clientId }, route)
      client = c.client
      later.bind(c.transport)
    } catch (err) {
      const e = err as Error & { code?: unknown }
      if (typeof e.code === 'number') throw new CliError(`the broker at ${safeUrl} refused the login of ${username}: ${e.message}`)
      throw new StartError(`cannot connect to the broker at ${safeUrl}: ${e.message}`)
    }
    const mqc = client
    // mqtt.js rejects when any filter gets SUBACK 0x80: the broker refuses a
    // service account's subscriptions when it runs its embedded service, or
    // when the account is not a service account there.
    const granted = await mqc.subscribeAsync([topics.device(clientId), SERVICE_OUT_FILTER, ...PRESENCE_FILTERS], { qos: 1 })
      .catch(() => [{ topic: SERVICE_OUT_FILTER, qos: 128 }])
    const refused = granted.filter((g) => g.qos === 128)
    if (refused.length > 0) {
      throw new CliError(`the broker at ${safeUrl} refused the subscriptions ${refused.map((g) => g.topic).join(', ')} of ${username}: ` +
        'it runs its embedded message service (start it with --bridge off), or the account is not a service account on that broker (same --data-dir)')
    }

    // Is another message service on this broker? (see the header)
    const echoed = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), PROBE_TIMEOUT_MS)
      onEcho = () => { clearTimeout(timer); resolve(true) }
    })
    await mqc.publishAsync(topics.out(username), JSON.stringify({ t: 'req', id: probeId, op: 'unread' }), { qos: 1 })
    if (!await echoed) throw new StartError(`the broker at ${safeUrl} did not route the service's own test message back to it within ${PROBE_TIMEOUT_MS} ms; is it a Warbler broker?`)
    await new Promise((resolve) => setTimeout(resolve, PROBE_GRACE_MS))
    if (foreignAnswer) {
      throw new CliError(`another message service already answers on the broker at ${safeUrl}: the broker runs its embedded one (start it with --bridge off), or another warbler bridge is connected. Refusing to start: every message would be stored and delivered twice`)
    }
  } catch (err) {
    // Leave no subscription behind in the persistent session: the broker
    // would queue every user's sends for a service that is not coming.
    await client?.unsubscribeAsync([topics.device(clientId), SERVICE_OUT_FILTER, ...PRESENCE_FILTERS]).catch(() => {})
    await release()
    throw err
  }

  live = true
  for (const [topic, payload, props] of held.splice(0)) dispatch(topic, payload, props)
  // The clients connected before this start (or while the connection was
  // down, when their notices went by): every broker answers with its list.
  const askForClients = (c: MqttClient): Promise<unknown> => c.publishAsync(SERVICE_BIRTH, `${clientId}:${Date.now()}`, { qos: 0 }).catch(() => {})
  await askForClients(client)
  // One warning per outage, however many reconnect attempts fail.
  let down = false
  client.on('connect', () => {
    if (down) log.info('reconnected to the broker', { mqtt: safeUrl })
    down = false
    if (client !== null) void askForClients(client)
  })
  client.on('offline', () => {
    if (!down) log.warn('lost the broker; reconnecting every second', { mqtt: safeUrl })
    down = true
  })
  client.on('error', (err: Error) => {
    if (!down) log.warn('broker connection error', { mqtt: safeUrl, error: err.message })
    down = true
  })
  running.retention.start()
  // The signal handlers go in before the ready line: a supervisor may signal as soon as it reads it.
  const stopped = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'))
    process.once('SIGINT', () => resolve('SIGINT'))
  })
  process.stdout.write(`warbler bridge ready ${JSON.stringify({ mqtt: safeUrl })}\n`)
  log.info('bridge started', { user: username, dataDir })

  const signal = await stopped
  log.info('stopping', { signal })
  running.stop()
  // Finish what is being handled while still connected (acks and deliveries
  // go out), then disconnect (mqtt.js waits for our publishes' PUBACKs), then
  // finish what arrived meanwhile and close the archive. Sends not yet
  // received stay queued in the broker for the service's persistent session.
  await drain(inflight, DRAIN_TIMEOUT_MS)
  await client.endAsync().catch(() => {})
  await drain(inflight, DRAIN_TIMEOUT_MS)
  client = null
  await release()
  log.info('stopped')
  return 0
}
