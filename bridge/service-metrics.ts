/**
 * The message service's figures for /metrics (prom-client) and $SYS.
 */
import client from 'prom-client'
import { ErrorCodes } from '@warbler/sdk/protocol'
import { InternalKinds, type MessageService } from './service.js'

function percentile (values: readonly number[], p: number): number {
  if (values.length === 0) return 0
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}

/** Register the service's metrics; returns what to call for each committed batch. */
export function registerServiceMetrics (registry: client.Registry, svc: MessageService): void {
  const c = svc.counters
  const mirrored = (name: string, help: string, read: () => number): void => {
    let reported = 0
    // eslint-disable-next-line no-new
    new client.Counter({ name, help, registers: [registry], collect () { const now = read(); if (now > reported) this.inc(now - reported); reported = now } })
  }
  mirrored('warbler_messages_stored_total', 'Chat and system messages committed to the archive.', () => svc.writer.stats.stored)
  mirrored('warbler_message_duplicates_total', 'Retried sends answered with the original acknowledgement.', () => c.duplicates)
  mirrored('warbler_deliveries_total', 'Messages delivered to members: one per message per recipient user (on the feeds several share a publish).', () => c.deliveries)
  mirrored('warbler_store_batches_total', 'Archive transactions (group commits).', () => svc.writer.stats.batches)
  const reported: Record<string, number> = {}
  // eslint-disable-next-line no-new
  new client.Counter({
    name: 'warbler_requests_total',
    help: 'Requests to the message service, by operation.',
    labelNames: ['op'],
    registers: [registry],
    collect () {
      for (const [op, n = 0] of Object.entries(c.byOp)) { this.inc({ op }, n - (reported[op] ?? 0)); reported[op] = n }
    }
  })
  const refusedReported: Record<string, number> = {}
  // eslint-disable-next-line no-new
  new client.Counter({
    name: 'warbler_service_refusals_total',
    help: 'Sends and requests the message service refused, by error code.',
    labelNames: ['code'],
    registers: [registry],
    collect () {
      for (const code of Object.keys(ErrorCodes)) {
        const n = c.refusals[code as keyof typeof ErrorCodes] ?? 0
        this.inc({ code }, n - (refusedReported[code] ?? 0))
        refusedReported[code] = n
      }
    }
  })
  const internalReported: Record<string, number> = {}
  // eslint-disable-next-line no-new
  new client.Counter({
    name: 'warbler_service_internal_errors_total',
    help: 'Server faults of the message service (a failed archive commit, a bug), by what they answered; each is logged at error level with its cause.',
    labelNames: ['kind'],
    registers: [registry],
    collect () {
      for (const kind of InternalKinds) {
        const n = c.internal[kind] ?? 0
        this.inc({ kind }, n - (internalReported[kind] ?? 0))
        internalReported[kind] = n
      }
    }
  })
  const latency = new client.Histogram({
    name: 'warbler_store_latency_seconds',
    help: 'Time to commit one archive batch.',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1],
    registers: [registry]
  })
  const batch = new client.Histogram({
    name: 'warbler_store_batch_size',
    help: 'Items (sends, group changes, watermarks) per archive batch.',
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2048],
    registers: [registry]
  })
  svc.writer.onBatch = (ms, size) => { latency.observe(ms / 1000); batch.observe(size) }
  // Where a send's time in the service goes; what is left of its end-to-end
  // latency is the broker's (reading the publish, writing the deliveries) and the network's.
  const stages = new client.Histogram({
    name: 'warbler_send_stage_seconds',
    help: 'Time of a stored send in the message service, by stage: stored (publish handed to the service to archive commit done), routed (commit done to delivered to every recipient and acknowledged).',
    labelNames: ['stage'],
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1],
    registers: [registry]
  })
  const stored = stages.labels('stored')
  const routed = stages.labels('routed')
  svc.onSendStages = (storedMs, routedMs) => { stored.observe(storedMs / 1000); routed.observe(routedMs / 1000) }
}

/** The service's $SYS figures, under $SYS/broker/warbler/. */
export function serviceSys (svc: MessageService): Record<string, number | string> {
  const s = svc.writer.stats
  const c = svc.counters
  const out: Record<string, number | string> = {
    'messages/stored': s.stored,
    'messages/duplicates': c.duplicates,
    'messages/deliveries': c.deliveries,
    'store/batches': s.batches,
    'store/batch/last': s.lastBatchSize,
    'store/batch/max': s.maxBatchSize,
    'store/latency/p50_ms': percentile(s.latencies, 50).toFixed(2),
    'store/latency/p99_ms': percentile(s.latencies, 99).toFixed(2),
    'requests/total': c.requests,
    'requests/sync': c.syncRequests,
    'requests/search': c.searchRequests
  }
  for (const code of Object.keys(ErrorCodes)) out[`service/refused/${code}`] = c.refusals[code as keyof typeof ErrorCodes] ?? 0
  out['service/internal_errors'] = InternalKinds.reduce((n, kind) => n + (c.internal[kind] ?? 0), 0)
  return out
}
