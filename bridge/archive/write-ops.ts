/**
 * The archive's writes beyond sends, as named steps of a writer operation
 * (they run inside the batch transaction, in order with sends, through
 * `Tx.run`): group membership, watermarks, when a user was last seen. Every
 * statement against the archive's tables is in bridge/archive/; callers
 * elsewhere name what they change, not how it is stored.
 */
import type { GroupRole } from '@warbler/sdk/protocol'
import type { Tx } from './tx.js'

export const members = {
  /** A new member of a group. */
  add: async (tx: Tx, conv: string, user: string, role: GroupRole, joinedAt: number): Promise<void> => {
    await tx.run('INSERT INTO members(conv, user, role, joined_at) VALUES (?, ?, ?, ?)', [conv, user, role, joinedAt])
  },
  remove: async (tx: Tx, conv: string, user: string): Promise<void> => {
    await tx.run('DELETE FROM members WHERE conv = ? AND user = ?', [conv, user])
  },
  setRole: async (tx: Tx, conv: string, user: string, role: GroupRole): Promise<void> => {
    await tx.run('UPDATE members SET role = ? WHERE conv = ? AND user = ?', [role, conv, user])
  }
}

export const watermarks = {
  /**
   * Move a member's read or delivered watermark forward to `seq`; never
   * back. True when it moved (it was behind `seq`).
   */
  forward: async (tx: Tx, column: 'read_seq' | 'delivered_seq', conv: string, user: string, seq: number): Promise<boolean> => {
    const sql = column === 'read_seq'
      ? 'UPDATE members SET read_seq = ?1 WHERE conv = ?2 AND user = ?3 AND read_seq < ?1'
      : 'UPDATE members SET delivered_seq = ?1 WHERE conv = ?2 AND user = ?3 AND delivered_seq < ?1'
    return (await tx.run(sql, [seq, conv, user])).changes > 0
  }
}

export const lastSeen = {
  /** When `user` was last seen online (their last device went away at `ts`). */
  store: async (tx: Tx, user: string, ts: number): Promise<void> => {
    await tx.run('INSERT INTO last_seen(user, ts) VALUES (?, ?) ON CONFLICT(user) DO UPDATE SET ts = excluded.ts', [user, ts])
  }
}
