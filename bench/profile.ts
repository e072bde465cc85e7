/**
 * Where the broker's event loop spends its time, per message, from a V8 CPU
 * profile written by `npm run bench:archive -- --cpu-prof DIR`:
 *
 *   node dist/bench/profile.js DIR/warbler-chat-….cpuprofile --rate 9206
 *
 * Only the middle of the profile is counted (35 %–80 % of its duration: the
 * measured window, not start-up, warmup or drain). Each sample goes to a
 * category by the nearest frame with a source file (native code counts for
 * its caller). `--rate` is the run's messages/s, to turn shares into µs per
 * message. The profile counts wall time: a thread waiting for a core counts.
 */
import { readFileSync } from 'node:fs'

interface ProfileNode { id: number, callFrame: { functionName: string, url: string }, children?: number[] }
interface Profile { nodes: ProfileNode[], samples: number[], timeDeltas: number[] }

const [file, ...rest] = process.argv.slice(2)
if (file === undefined) {
  process.stderr.write('usage: node dist/bench/profile.js FILE.cpuprofile [--rate MESSAGES_PER_SECOND]\n')
  process.exit(2)
}
const rateAt = rest.indexOf('--rate')
const rate = rateAt === -1 ? NaN : Number(rest[rateAt + 1])
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile
const byId = new Map(p.nodes.map((n) => [n.id, n]))
const parent = new Map<number, number>()
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id)

function category (id: number): string {
  const f = (byId.get(id) as ProfileNode).callFrame
  if (f.functionName === '(garbage collector)') return 'garbage collection'
  if (f.functionName === '(idle)') return 'idle'
  if (f.functionName === '(program)') return 'other (V8, native)'
  let url = ''
  let cur: number | undefined = id
  while (cur !== undefined && url === '') {
    url = (byId.get(cur) as ProfileNode).callFrame.url
    cur = parent.get(cur)
  }
  if (f.functionName === 'writev' || f.functionName === 'writeBuffer' || /stream_base_commons|internal\/streams|node:net/.test(url)) return 'socket writes (system calls, streams)'
  if (/bridge\/archive\/|shared\/sqlite|node_modules\/sqlite3/.test(url)) return 'archive writer and node-sqlite3 calls'
  if (/bridge\//.test(url)) return 'service: JSON, validation, publish calls'
  return 'MQTT: aedes, mqtt-packet, routing, hooks'
}

let t = 0
const times = p.timeDeltas.map((d) => (t += d))
const lo = t * 0.35
const hi = t * 0.8
const agg = new Map<string, number>()
let total = 0
p.samples.forEach((id, i) => {
  const at = times[i] as number
  if (at < lo || at > hi) return
  const d = p.timeDeltas[i] as number
  const k = category(id)
  agg.set(k, (agg.get(k) ?? 0) + d)
  total += d
})
const busy = total - (agg.get('idle') ?? 0)
const perMsg = (us: number): string => Number.isFinite(rate) ? `${(us / total * 1e6 / rate).toFixed(1)} µs` : '-'
process.stdout.write(`event loop busy ${(100 * busy / total).toFixed(0)} % of ${(total / 1e6).toFixed(1)} s${Number.isFinite(rate) ? `; ${perMsg(busy)} per message at ${rate} msg/s` : ''}\n\n`)
process.stdout.write('| on the event loop | share | per message |\n| --- | ---: | ---: |\n')
for (const [k, v] of [...agg].sort((a, b) => b[1] - a[1])) {
  if (k !== 'idle') process.stdout.write(`| ${k} | ${(100 * v / busy).toFixed(0)} % | ${perMsg(v)} |\n`)
}
