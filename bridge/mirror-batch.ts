/**
 * What one commit's messages change in the Redis mirror, gathered per key.
 *
 * Under load a commit holds hundreds of messages over a few conversations.
 * Written message by message that was 3 commands per message plus 5 per
 * recipient (13 for a direct chat message), each an ioredis Command with its
 * promise and buffers: with Redis on, the mirror was the largest part of a
 * chat message's CPU on the event loop, and its garbage the largest part of
 * the collector's. Gathered per key, a commit costs a few commands per
 * conversation and per member touched, whatever the number of messages, and
 * leaves Redis in the same state as the commands applied one by one:
 * - `wb:recent:{conv}`: one LPUSH of the commit's messages in commit order
 *   (so the newest ends first, as before), one LTRIM, one EXPIRE;
 * - `wb:convs:{user}`: one ZADD with each conversation's last time, one
 *   ZREMRANGEBYRANK, one EXPIRE;
 * - `wb:unread:{user}`: per conversation, the HDEL of the member's own last
 *   chat message if there is one, then one HINCRBY by the messages after
 *   it; one EXPIRE per member if any counter went up.
 */
import type { StoredMessage } from './archive/writer.js'

interface UnreadChange {
  /** The member sent a chat message in this conversation: the counter restarts from zero. */
  reset: boolean
  /** Messages to count after that (or since the commit before). */
  add: number
}

export interface MirrorBatch {
  /** Conversation -> its messages' JSON, oldest first. */
  recent: Map<string, string[]>
  /** Member -> conversation -> its last message's time (ms). */
  convs: Map<string, Map<string, number>>
  /** Member -> conversation -> how its unread counter moves. */
  unread: Map<string, Map<string, UnreadChange>>
}

function inner<K, V> (outer: Map<string, Map<K, V>>, key: string): Map<K, V> {
  let m = outer.get(key)
  if (m === undefined) { m = new Map(); outer.set(key, m) }
  return m
}

export function gatherBatch (messages: readonly StoredMessage[]): MirrorBatch {
  const b: MirrorBatch = { recent: new Map(), convs: new Map(), unread: new Map() }
  for (const { frame, recipients } of messages) {
    const list = b.recent.get(frame.conv)
    if (list === undefined) b.recent.set(frame.conv, [JSON.stringify(frame)])
    else list.push(JSON.stringify(frame))
    for (const user of recipients) {
      const convs = inner(b.convs, user)
      // The last message's time, as ZADD one by one would leave it.
      convs.set(frame.conv, frame.ts)
      const unread = inner(b.unread, user)
      const u = unread.get(frame.conv) ?? { reset: false, add: 0 }
      // As in SQLite: a chat message one sends, one has read (system messages are not).
      if (user === frame.from && frame.cid !== undefined) { u.reset = true; u.add = 0 } else u.add++
      unread.set(frame.conv, u)
    }
  }
  return b
}
