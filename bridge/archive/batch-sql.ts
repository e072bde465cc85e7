/**
 * The statements a batch of the archive writer is made of, and how their
 * parameters are written. A batch costs a fixed handful of statements
 * whatever its size (see writer.ts).
 */

/**
 * The batch statements: each takes one JSON array, so one prepared statement
 * serves a batch of any size. The array is bound as a UTF-8 Buffer cast to
 * text (node-sqlite3 binds a Buffer about ten times faster than a string of
 * the same size, on the event loop). The dedup lookup goes through the
 * partial index on (sender, cid) (the `cid IS NOT NULL` lets the planner use it).
 */
export const SQL_EXISTING = `SELECT m.sender, m.cid, m.conv, m.seq, m.id, m.ts FROM json_each(CAST(?1 AS TEXT)) AS k
  CROSS JOIN messages AS m ON m.sender = k.value->>0 AND m.cid = k.value->>1 AND m.cid IS NOT NULL`
export const SQL_INSERT = `INSERT INTO messages(conv, seq, id, sender, cid, ts, body, text, props)
  SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, value->>7, value->>8 FROM json_each(CAST(?1 AS TEXT))`
export const SQL_MARKS = `UPDATE members SET read_seq = v.value->>2, delivered_seq = v.value->>2
  FROM json_each(CAST(?1 AS TEXT)) AS v WHERE members.conv = v.value->>0 AND members.user = v.value->>1`
export const SQL_CONVS = `UPDATE conversations SET last_seq = v.value->>1, last_ts = v.value->>2, name = v.value->>3
  FROM json_each(CAST(?1 AS TEXT)) AS v WHERE conversations.id = v.value->>0`

/** A batch statement's parameter: a JSON array as UTF-8 bytes (see SQL_INSERT). */
export function jsonParam (v: unknown[]): Buffer {
  return Buffer.from(JSON.stringify(v), 'utf8')
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g

/**
 * A string with each lone surrogate replaced by U+FFFD, as binding it would
 * have done: JSON keeps a lone surrogate as an escape, and SQLite's JSON
 * functions would turn that into invalid UTF-8 in a text column.
 */
export function wellFormed (s: string | null): string | null {
  return s !== null && /[\ud800-\udfff]/.test(s) ? s.replace(LONE_SURROGATE, '\ufffd') : s
}

/** A conversation's row and its members, to load it into the writer's memory. */
export const SQL_CONV = 'SELECT kind, name, last_seq, last_ts FROM conversations WHERE id = ?'
export const SQL_CONV_MEMBERS = 'SELECT user, role FROM members WHERE conv = ?'
export const SQL_NEW_CONV = 'INSERT INTO conversations(id, kind, name, created_at, last_seq, last_ts) VALUES (?, ?, ?, ?, 0, ?)'
export const SQL_NEW_MEMBER = 'INSERT INTO members(conv, user, role, joined_at) VALUES (?, ?, ?, ?)'
/** Whether a user exists (the identity store's table, read to check the peer of a new conversation). */
export const SQL_USER_EXISTS = 'SELECT 1 AS x FROM users WHERE name = ?'
