/** What every hook family is built from. */
import type { Aedes } from 'aedes'
import type { Acl } from '../acl.js'
import type { Authenticator } from '../auth.js'
import type { PublishGate } from '../flow.js'
import type { Stats } from '../stats.js'
import type { Config } from '../../shared/config.js'
import type { Logger } from '../../shared/log.js'

export interface HookDeps {
  cfg: Config
  auth: Authenticator
  acl: Acl
  gate: PublishGate
  stats: Stats
  log: Logger
  broker: () => Aedes
}
