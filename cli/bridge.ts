/**
 * `warbler bridge`: the message service as its own process, a privileged
 * MQTT client of a broker started with `--bridge off`. It logs in as a user
 * with the service role (`warbler user add NAME --service`), listens on
 * `wb/u/+/out/+` (the broker appends the sender's client id) and follows
 * connects and disconnects on `$SYS/+/new/clients` and
 * `$SYS/+/disconnect/clients` for presence.
 */
import { readFileSync } from 'node:fs'
import { clientIdBelongsTo, isValidUsername } from '../sdk/src/protocol.js'
import { createLogger } from '../broker/log.js'
import { RedisMirror } from '../bridge/mirror.js'
import { Retention } from '../bridge/retention.js'
import { MessageService } from '../bridge/service.js'
import { mqttTransport, OUT_FILTER, parseOutTopic } from '../bridge/transport.js'
import { CliError, dataDirOf, parseArgs } from './args.js'

const HELP = `Usage: warbler bridge --mqtt URL --username NAME [options]

Runs the message service as its own process against a broker started with
--bridge off. NAME must be a user with the service role
(warbler user add NAME --service).

Options:
  --mqtt URL             broker to connect to (env WARBLER_BRIDGE_MQTT), e.g. mqtt://127.0.0.1:1883
  --username NAME        service user (env WARBLER_BRIDGE_USERNAME)
  --password-file FILE   file holding its password or token; or env WARBLER_BRIDGE_PASSWORD
  --data-dir DIR         the data dir with warbler.db (env WARBLER_DATA_DIR, default ./data)
  --redis URL            mirror hot data into Redis (env WARBLER_REDIS)
  --max-payload BYTES    largest decoded payload (default 262144)
  --retention-days N     delete messages older than N days (0 = keep)
  --retention-messages N keep at most N messages per conversation (0 = all)
`

function intOpt (v: string | true | undefined, name: string, def: number): number {
  if (v === undefined) return def
  if (typeof v !== 'string' || !/^\d+$/.test(v)) throw new CliError(`--${name} must be a whole number`)
  return Number(v)
}

export async function runBridge (argv: string[]): Promise<number> {
  const p = parseArgs(argv, ['mqtt', 'username', 'password-file', 'data-dir', 'redis', 'max-payload', 'retention-days', 'retention-messages'], ['help'])
  if (p.options.has('help')) { process.stdout.write(HELP); return 0 }
  if (p.positional.length > 0) throw new CliError(`unexpected argument ${JSON.stringify(p.positional[0])}`)
  const url = (p.options.get('mqtt') as string | undefined) ?? process.env.WARBLER_BRIDGE_MQTT
  const username = (p.options.get('username') as string | undefined) ?? process.env.WARBLER_BRIDGE_USERNAME
  if (url === undefined || !/^(mqtts?|wss?):\/\//.test(url)) throw new CliError('--mqtt needs a broker URL (mqtt://host:port)')
  if (username === undefined || !isValidUsername(username)) throw new CliError('--username needs the service user name')
  const pwFile = p.options.get('password-file')
  const password = typeof pwFile === 'string' ? readFileSync(pwFile, 'utf8').trim() : process.env.WARBLER_BRIDGE_PASSWORD
  if (password === undefined || password === '') throw new CliError('give the service password with --password-file or WARBLER_BRIDGE_PASSWORD')
  const redisUrl = (p.options.get('redis') as string | undefined) ?? process.env.WARBLER_REDIS ?? ''
  const log = createLogger('info')
  const dataDir = dataDirOf(p)

  const mirror = redisUrl !== '' ? await RedisMirror.connect(redisUrl, log) : undefined
  const { transport, client } = await mqttTransport(url, { username, password, clientId: `${username}-bridge` })
  const service = await MessageService.open({ dataDir, transport, log, maxPayload: intOpt(p.options.get('max-payload'), 'max-payload', 256 * 1024), ...(mirror !== undefined ? { mirror } : {}) })
  const retention = new Retention(service.writer, { days: intOpt(p.options.get('retention-days'), 'retention-days', 0), messages: intOpt(p.options.get('retention-messages'), 'retention-messages', 0) })

  client.on('message', (topic, payload) => {
    const who = parseOutTopic(topic)
    if (who !== null) { void service.handle(who.user, who.clientId, payload); return }
    const m = /^\$SYS\/[^/]+\/(new|disconnect)\/clients$/.exec(topic)
    if (m === null) return
    const clientId = payload.toString('utf8')
    const user = clientId.split('-')[0] ?? ''
    if (isValidUsername(user) && clientIdBelongsTo(clientId, user) && user !== username) service.presence(user, m[1] === 'new')
  })
  const granted = await client.subscribeAsync([OUT_FILTER, '$SYS/+/new/clients', '$SYS/+/disconnect/clients'], { qos: 1 })
  const refused = granted.filter((g) => g.qos === 128)
  if (refused.length > 0) throw new CliError(`the broker refused ${refused.map((g) => g.topic).join(', ')}: is ${username} a service user, and the broker started with --bridge off?`)
  retention.start()
  process.stdout.write(`warbler bridge ready ${JSON.stringify({ mqtt: url.replace(/\/\/[^@]*@/, '//') })}\n`)
  log.info('bridge started', { user: username })

  await new Promise<void>((resolve) => {
    const stop = (): void => { resolve() }
    process.once('SIGTERM', stop)
    process.once('SIGINT', stop)
  })
  retention.stop()
  await client.endAsync()
  await service.close()
  await mirror?.close()
  return 0
}
