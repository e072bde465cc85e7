/**
 * How the service's frames reach users and devices.
 *
 * A user has two topics with the same content: `wb/u/{user}/inbox`, one frame
 * per publish (for plain MQTT clients), and `wb/u/{user}/feed` (the SDK's),
 * where the messages of one commit for that user (and the receipts of the
 * watermarks it moved) travel together in `batch` frames: one publish and one PUBACK for many messages, which is most of what
 * a chat message costs the broker under load. A device likewise has
 * `wb/d/{clientId}` and `wb/d/{clientId}/feed`, where the acks of one commit
 * travel together.
 *
 * A frame goes to each of the two topics that has a subscriber, asked of the
 * broker (`Audience`) once per user per commit: a live connection or a
 * persistent session, online or not, so offline queues get theirs. Where the
 * broker cannot tell (the service as an MQTT client, or routing shared with
 * other brokers through Redis, where another broker's clients are unknown
 * here) it goes to both; a device reads one of them, so nobody gets a frame
 * twice. A device's two topics are looked up among this broker's live
 * connections only: each that one reads gets the frame, and both do when
 * none reads either (a persistent session may queue it).
 *
 * Deliveries go out in commit order: a batch whose subscriber lookups are
 * still pending holds the ones after it.
 */
import { type AckFrame, BATCH_MAX_BYTES, BATCH_MAX_FRAMES, type PublishProperties, topics } from '@warbler/sdk/protocol'
import type { StoredMessage, StoredReceipt } from './archive/writer.js'

export interface Audience {
  /** Whether any session (connected or persistent) subscribes to a topic. */
  any: (topic: string) => boolean | Promise<boolean>
  /** Whether a connection to this broker subscribes to a topic. */
  live: (topic: string) => boolean
}

/** `props`: MQTT 5 properties of the publish (MQTT 3.1.1 subscribers get the publish without them). */
export type Publish = (topic: string, payload: Buffer, qos: 0 | 1, props?: PublishProperties) => Promise<void>

/** Which of a user's two topics to publish to. */
interface Targets { inbox: boolean, feed: boolean }

const BOTH: Targets = { inbox: true, feed: true }

/** The bytes a batch frame adds around its frames: `{"t":"batch","frames":[` and `]}`. */
const BATCH_WRAPPER = 25

/** `frames` (JSON texts) as batch frames of at most BATCH_MAX_FRAMES frames and BATCH_MAX_BYTES bytes; a lone frame as itself. */
export function batchPayloads (frames: string[]): Buffer[] {
  const out: Buffer[] = []
  const size = frames.map((f) => Buffer.byteLength(f))
  let start = 0
  while (start < frames.length) {
    let end = start + 1
    let bytes = BATCH_WRAPPER + (size[start] as number)
    while (end < frames.length && end - start < BATCH_MAX_FRAMES && bytes + (size[end] as number) + 1 <= BATCH_MAX_BYTES) {
      bytes += (size[end] as number) + 1
      end++
    }
    out.push(Buffer.from(end - start === 1 ? frames[start] as string : `{"t":"batch","frames":[${frames.slice(start, end).join(',')}]}`))
    start = end
  }
  return out
}

export class Fanout {
  /** Publishing steps waiting for subscriber lookups; later steps wait behind them. */
  private queued = 0
  private tail: Promise<void> = Promise.resolve()
  /** Acks waiting for the end of this loop turn, by client id; `plain`: to the plain device topic too. */
  private readonly acks = new Map<string, { frames: string[], plain: boolean, sent: Promise<void>, resolve: () => void }>()
  private flushing = false

  /** `counters.deliveries` counts one per message per recipient user. */
  constructor (private readonly publish: Publish, private readonly audience: Audience | undefined, private readonly counters: { deliveries: number }) {}

  /** Which of a user's topics have subscribers. */
  private targets (user: string): Targets | Promise<Targets> {
    const a = this.audience
    if (a === undefined) return BOTH
    const inbox = a.any(topics.inbox(user))
    const feed = a.any(topics.feed(user))
    if (typeof inbox === 'boolean' && typeof feed === 'boolean') return { inbox, feed }
    return Promise.all([inbox, feed]).then(([i, f]) => ({ inbox: i, feed: f }))
  }

  /**
   * Run `step` with each user's targets once every step before it has run,
   * at once when nothing waits. Resolves when its publishes are routed.
   */
  private inOrder (users: string[], step: (targets: Targets[]) => Array<Promise<void>>): Promise<unknown> {
    const looked = users.map((u) => this.targets(u))
    if (this.queued === 0 && looked.every((t): t is Targets => !(t instanceof Promise))) {
      return Promise.all(step(looked))
    }
    this.queued++
    let routed: Promise<unknown> = Promise.resolve()
    // Some lookups answered at once, others are promises: Promise.all takes both.
    // eslint-disable-next-line @typescript-eslint/await-thenable
    const ran = this.tail.then(async () => await Promise.all(looked)).then(
      (targets) => { routed = Promise.all(step(targets)) },
      () => { routed = Promise.all(step(users.map(() => BOTH))) } // a failed lookup: publish to both
    ).finally(() => { this.queued-- })
    this.tail = ran
    return ran.then(async () => await routed)
  }

  /**
   * Deliver a commit's messages, then the receipts of the watermarks it moved
   * (a sender's own, at least), to every recipient; one promise per message
   * id, settled once all are routed. On a feed, a user's receipts travel in
   * the batch frame with the commit's messages; on an inbox each is a publish
   * of its own, at QoS 0 like every receipt.
   */
  deliver (stored: StoredMessage[], receipts: readonly StoredReceipt[] = []): Map<string, Promise<unknown>> {
    /** Each frame's JSON (the messages', then the receipts'), and its payload for the inboxes once one needs it (shared by all of them). */
    const texts = [...stored.map((s) => JSON.stringify(s.frame)), ...receipts.map((r) => JSON.stringify(r.frame))]
    const payloads: Array<Buffer | undefined> = []
    /** The batch frames of each list of frames, by the list (users who get the same share them). */
    const batches = new Map<string, Buffer[]>()
    /** Each user's frames, by index in `texts`: its messages first, in commit order, then its receipts. */
    const byUser = new Map<string, number[]>()
    const add = (user: string, i: number): void => {
      let list = byUser.get(user)
      if (list === undefined) byUser.set(user, list = [])
      list.push(i)
    }
    stored.forEach((s, i) => {
      for (const user of s.recipients) {
        add(user, i)
        this.counters.deliveries++
      }
    })
    receipts.forEach((r, j) => { for (const user of r.recipients) add(user, stored.length + j) })
    /** Messages at QoS 1; receipts, which a later one supersedes, at QoS 0. */
    const qos = (i: number): 0 | 1 => i < stored.length ? 1 : 0
    /** A message's user properties go on its inbox publish too, for MQTT 5 clients that read them there (on a feed they are in the frames only). */
    const inboxProps = (i: number): PublishProperties | undefined => {
      const props = stored[i]?.frame.props
      return props === undefined ? undefined : { userProperties: props }
    }
    const users = [...byUser.keys()]
    const routed = this.inOrder(users, (targets) => {
      const sent: Array<Promise<void>> = []
      users.forEach((user, u) => {
        const t = targets[u] as Targets
        const mine = byUser.get(user) as number[]
        if (t.inbox) for (const i of mine) sent.push(this.publish(topics.inbox(user), payloads[i] ??= Buffer.from(texts[i] as string), qos(i), inboxProps(i)))
        if (t.feed) {
          // The members of a group get the same messages: one set of batch frames for them all.
          const key = mine.join(',')
          let ps = batches.get(key)
          if (ps === undefined) batches.set(key, ps = batchPayloads(mine.map((i) => texts[i] as string)))
          for (const p of ps) sent.push(this.publish(topics.feed(user), p, qos(mine[0] as number)))
        }
      })
      return sent
    })
    const out = new Map<string, Promise<unknown>>()
    for (const s of stored) out.set(s.frame.id, routed)
    return out
  }

  /** An event (receipt, typing, presence) to users, on each of their topics that has subscribers; `props` go with each publish. */
  toUsers (users: Iterable<string>, frame: object, qos: 0 | 1, props?: PublishProperties): Promise<unknown> {
    const payload = Buffer.from(JSON.stringify(frame))
    const list = [...users]
    return this.inOrder(list, (targets) => {
      const sent: Array<Promise<void>> = []
      list.forEach((user, i) => {
        const t = targets[i] as Targets
        if (t.inbox) sent.push(this.publish(topics.inbox(user), payload, qos, props))
        if (t.feed) sent.push(this.publish(topics.feed(user), payload, qos, props))
      })
      return sent
    })
  }

  /**
   * Which of a device's topics to publish to: each one a connection to this
   * broker reads (one connection may read the device topic while another
   * reads its feed); both when none is read here (a persistent session gets
   * QoS 1 frames in its queue) or the broker cannot tell.
   */
  private deviceTopics (clientId: string): { plain: boolean, feed: boolean } {
    const a = this.audience
    if (a === undefined) return { plain: true, feed: true }
    const plain = a.live(topics.device(clientId))
    const feed = a.live(topics.deviceFeed(clientId))
    return plain || feed ? { plain, feed } : { plain: true, feed: true }
  }

  /** A reply or refusal to one device. */
  toDevice (clientId: string, frame: object, qos: 0 | 1): Promise<unknown> {
    const payload = Buffer.from(JSON.stringify(frame))
    const t = this.deviceTopics(clientId)
    const sent: Array<Promise<void>> = []
    if (t.plain) sent.push(this.publish(topics.device(clientId), payload, qos))
    if (t.feed) sent.push(this.publish(topics.deviceFeed(clientId), payload, qos))
    return Promise.all(sent)
  }

  /** An answer on a topic the requester named (an MQTT 5 Response Topic, checked by the caller), with its properties. */
  toTopic (topic: string, frame: object, qos: 0 | 1, props: PublishProperties): Promise<unknown> {
    return this.publish(topic, Buffer.from(JSON.stringify(frame)), qos, props)
  }

  /**
   * A send's ack (QoS 0). On a device feed, the acks of one loop turn (the
   * sends of one commit resolve together) go out as one batch frame; the
   * device's topics are looked up once for them all.
   */
  ack (clientId: string, ack: AckFrame): Promise<unknown> {
    let entry = this.acks.get(clientId)
    if (entry === undefined) {
      const t = this.deviceTopics(clientId)
      if (!t.feed) return this.toDevice(clientId, ack, 0)
      let resolve = (): void => {}
      const sent = new Promise<void>((resolve_) => { resolve = resolve_ })
      this.acks.set(clientId, entry = { frames: [], plain: t.plain, sent, resolve })
      if (!this.flushing) {
        this.flushing = true
        setImmediate(() => { this.flushAcks() })
      }
    }
    entry.frames.push(JSON.stringify(ack))
    return entry.sent
  }

  private flushAcks (): void {
    this.flushing = false
    for (const [clientId, entry] of this.acks) {
      const sent = batchPayloads(entry.frames).map((p) => this.publish(topics.deviceFeed(clientId), p, 0))
      if (entry.plain) for (const f of entry.frames) sent.push(this.publish(topics.device(clientId), Buffer.from(f), 0))
      Promise.all(sent).then(entry.resolve, entry.resolve)
    }
    this.acks.clear()
  }
}
