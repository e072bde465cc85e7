/**
 * Error notices to one client on its device topics, rate-limited per
 * client: a refused PUBLISH or SUBSCRIBE tells its sender why.
 */
import type { Aedes } from 'aedes'
import { type ErrorFrame, topics } from '@warbler/sdk/protocol'
import type { Session } from '../session.js'

/** Least time between two error notices to one client (ms); the rest are counted, not sent. */
const NOTICE_INTERVAL_MS = 100

export type Notify = (s: Session, frame: ErrorFrame) => void

export function createNotify (broker: () => Aedes): Notify {
  return (s, frame) => {
    const now = Date.now()
    if (now - s.lastNotice < NOTICE_INTERVAL_MS) {
      s.suppressedNotices++
      return
    }
    s.lastNotice = now
    const suppressed = s.suppressedNotices
    s.suppressedNotices = 0
    const payload = Buffer.from(JSON.stringify(suppressed > 0 ? { ...frame, suppressed } : frame))
    // Both device topics: the client reads one (fanout.ts), and refusals are rare.
    for (const topic of [topics.device(s.clientId), topics.deviceFeed(s.clientId)]) {
      broker().publish({ cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false }, () => {})
    }
  }
}
