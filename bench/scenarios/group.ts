/**
 * group: fan-out. Warbler: the owner creates a group of `members` receivers
 * and `senders` posters with a `group.create` request to the message service;
 * each member listens to its feed; the senders post QoS 1 with `window`
 * posts unacknowledged each. Mosquitto: the same members subscribe to one
 * topic, the same senders publish to it. Deliveries/s at the members and
 * latency from post to receipt by each member.
 */
import { generators } from '../generators.js'
import { drain, measure, type Sample } from '../phases.js'
import type { RunContext } from '../run-context.js'
import type { RunResult } from '../run.js'
import { createGroup, provision, target } from '../system-under-test.js'
import { empty, group as groupOf, groupUsers } from './build.js'
import { LATENCY, latencyValues, type ScenarioDef } from './scenario.js'

async function run (ctx: RunContext): Promise<RunResult> {
  const o = ctx.o
  const warbler = ctx.target === 'warbler'
  const u = groupUsers('g', o.senders, o.members)
  const tokens = warbler ? await provision(ctx.dir, [...u.senders, ...u.members]) : null
  const t = await target(ctx)
  let conv: string | null = null
  if (warbler && tokens !== null) {
    const owner = u.senders[0] as string
    conv = await createGroup(t.port, owner, tokens.get(owner) as string, [...u.senders.slice(1), ...u.members])
  }
  const p = empty()
  groupOf(p, warbler, tokens, 'g', o.senders, o.members, conv, 0)
  const gens = generators(ctx, t, p.clients, p.senders)
  const c = await gens.connect(ctx.progress, p.clients.length)
  if (c.counters.connectFailures > 0) throw new Error(`${c.counters.connectFailures} connects failed: ${c.counters.firstError ?? ''}`)
  const timeline: Sample[] = []
  const ph = await measure(gens, t, ctx.progress, { name: 'fan-out', go: { mode: 'closed', window: o.window }, warmup: o.warmup, duration: o.duration }, timeline, performance.now())
  const check = await drain(gens, ctx.progress)
  return {
    target: ctx.target,
    run: ctx.run,
    values: {
      deliveries_per_s: ph.deliveredPerSec,
      posts_per_s: ph.ackedPerSec,
      ...latencyValues('', ph.latencyMs),
      cpu_us_per_delivery: ph.cpuUsPerMsg,
      rss_peak_mb: ph.rssPeakMb,
      generator_elu: ph.generatorElu,
      lost_acked: check.lostAcked,
      errors: check.errors
    },
    phases: { fanout: ph },
    timeline,
    check,
    notes: conv !== null ? [`group ${conv}: ${o.members} members + ${o.senders} sender(s)`] : []
  }
}

export const group: ScenarioDef = {
  about: 'fan-out of QoS 1 posts to the members of one group (Mosquitto: subscribers of one topic)',
  metrics: [
    { key: 'deliveries_per_s', label: 'deliveries at the members', unit: 'msg/s', better: 'higher', chart: true },
    { key: 'posts_per_s', label: 'posts acknowledged', unit: 'posts/s', better: 'higher' },
    ...LATENCY('', 'post to member'),
    { key: 'cpu_us_per_delivery', label: 'CPU per delivery', unit: 'µs', better: 'lower', digits: 2, chart: true },
    { key: 'rss_peak_mb', label: 'peak RSS', unit: 'MB', better: 'lower', digits: 1, chart: true },
    { key: 'generator_elu', label: 'generator event-loop load', unit: '', better: null, digits: 2 },
    { key: 'lost_acked', label: 'acknowledged deliveries lost', unit: '', better: 'lower' },
    { key: 'errors', label: 'error notices', unit: '', better: 'lower' }
  ],
  run
}
