/** What every hook family is built from. */
import type { Aedes } from 'aedes'
import type { Acl } from '../acl.js'
import type { Authenticator } from '../auth.js'
import type { PublishGate } from '../flow.js'
import type { InboundQos2 } from '../inbound-qos2.js'
import type { Stats } from '../stats.js'
import type { Config } from '../../shared/config.js'
import type { Logger } from '../../shared/log.js'

export interface HookDeps {
  cfg: Config
  auth: Authenticator
  acl: Acl
  gate: PublishGate
  /** Inbound QoS 2 packets held per client id: bounded by the publish hook, cleared when a clean session ends. */
  inbound: InboundQos2
  stats: Stats
  log: Logger
  broker: () => Aedes
}
