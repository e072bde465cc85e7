/**
 * The options of `warbler bench` and what they name: the scenarios, the
 * targets (Warbler and the references it can be compared with), and the bound
 * on every wait on the network.
 */

export const SCENARIOS = ['conns', 'chat', 'group', 'overload', 'soak', 'workers'] as const
export type Scenario = typeof SCENARIOS[number]
/** What Warbler can be compared with (`--against`): Debian's Mosquitto, a bare aedes (bench/aedes.ts). */
export const REFERENCES = ['mosquitto', 'aedes'] as const
export type Reference = typeof REFERENCES[number]
export type TargetName = 'warbler' | Reference
export const TARGET_LABEL: Record<TargetName, string> = { warbler: 'Warbler', mosquitto: 'Mosquitto', aedes: 'bare aedes' }

export interface BenchOptions {
  scenario: Scenario
  /** The references, in the order given (empty: Warbler alone). */
  against: Reference[]
  /** Warbler's `--bridge` (conns only: the other scenarios need the message service). */
  bridge: 'embedded' | 'off'
  runs: number
  sessions: number
  pairs: number
  window: number
  rate: number
  duration: number
  warmup: number
  members: number
  senders: number
  payload: number
  workers: number
  /** workers: Warbler is measured in one process, then with 1..maxWorkers workers and Redis. */
  maxWorkers: number
  generators: number
  sources: number
  connectConcurrency: number
  json: string | null
  md: string | null
  svg: string | null
  /** Write a V8 CPU profile of each Warbler process to this directory (node --cpu-prof). */
  cpuProf: string | null
  /** conns, chat, group: the generator's MQTT protocol, 4 (3.1.1, the default) or 5 (bench/lean.ts). */
  protocol: 4 | 5
  /** chat, group: each send carries the SDK's numbering (epoch, n: docs/protocol.md, "Numbered sends"), as SDK apps send. */
  numbered: boolean
}

/** Every wait on the network is bounded by this. */
export const NET_TIMEOUT_MS = 20_000
