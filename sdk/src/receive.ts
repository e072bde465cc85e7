/**
 * Receiving: a payload from the server is decoded and handed on by kind.
 * Chat messages go to the client (which orders them), acks and refusals of
 * sends to the send queue, answers and refusals of requests to whoever waits
 * for them, receipts, typing and presence out as events. Payloads that are
 * not Warbler frames are ignored.
 */
import { decodeFrame } from './codec.js'
import { ServerError } from './errors.js'
import type { ClientEvents } from './events.js'
import type { Link } from './link.js'
import type { ErrorFrame, MessageFrame, ServerFrame, SingleFrame } from './protocol.js'
import type { Requests } from './pending-requests.js'
import type { SendQueue } from './send-queue.js'

export interface Receivers {
  /** A chat message that came on `link`. */
  message: (link: Link, m: MessageFrame) => void
  readonly sends: SendQueue
  readonly requests: Requests
  emit: <K extends keyof ClientEvents>(event: K, ...args: Parameters<ClientEvents[K]>) => void
}

/** One payload that came on `link`. */
export async function receive (link: Link, payload: Uint8Array, r: Receivers): Promise<void> {
  let f: ServerFrame
  try {
    f = await decodeFrame(payload) as ServerFrame
  } catch {
    return // not ours
  }
  if (typeof f !== 'object' || f === null) return
  if (f.t === 'batch') {
    // Several frames of one commit, in order (the feed topics); never nested.
    if (!Array.isArray(f.frames)) return
    for (const one of f.frames) if (typeof one === 'object' && one !== null && (one as { t?: unknown }).t !== 'batch') await receiveOne(link, one, r)
    return
  }
  await receiveOne(link, f, r)
}

async function receiveOne (link: Link, f: SingleFrame, r: Receivers): Promise<void> {
  switch (f.t) {
    case 'msg':
      if (typeof f.conv !== 'string' || !Number.isSafeInteger(f.seq) || f.seq < 1) return
      r.message(link, f)
      return
    case 'ack': await r.sends.acked(f); return
    case 'res': r.requests.resolve(f.id, f.data); return
    case 'error': await onError(link, f, r); return
    case 'receipt': r.emit('receipt', f); return
    case 'typing': r.emit('typing', f); return
    case 'presence': r.emit('presence', f)
  }
}

/**
 * A refusal names the request or send it answers (by id, or by the MQTT
 * packet id it came in); otherwise it is an `error` event. The broker's
 * refusal of a publish whose send or request is answered already (a copy
 * sent again after a rate limit, of a send acknowledged meanwhile) is
 * dropped: nothing waits for it.
 */
async function onError (link: Link, f: ErrorFrame, r: Receivers): Promise<void> {
  const byMid = f.ref === undefined && f.mid !== undefined ? link.mids.get(f.mid) : undefined
  const ref = f.ref ?? byMid
  // A send stored out of order: sent again from where the service says (send-queue.ts), not a failure.
  if (f.code === 'out_of_order' && ref !== undefined && r.sends.outOfOrder(ref, f.next)) return
  const e = new ServerError(f.code, f.message, ref)
  if (ref !== undefined && (r.requests.reject(ref, e) || await r.sends.refused(link, ref, e))) return
  if (byMid !== undefined) return
  r.emit('error', e)
}
