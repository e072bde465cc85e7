/**
 * The archive's tables, in the service's SQLite file next to the users.
 * Indexes follow the real queries:
 * - a page of history: messages by (conv, seq), the primary key;
 * - idempotent sends: messages by (sender, cid), unique;
 * - the conversation list of a user: members by user, then conversations by id
 *   (sorted by last activity in memory: a user has few conversations);
 * - unread counts: conversations.last_seq minus members.read_seq, no counting;
 * - full-text search: an FTS5 index over the text of each message.
 */
import type { Database } from '../../shared/sqlite.js'

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS conversations (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
  name TEXT,
  created_at INTEGER NOT NULL,
  last_seq INTEGER NOT NULL DEFAULT 0,
  last_ts INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS members (
  conv TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  user TEXT NOT NULL,
  role TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
  joined_at INTEGER NOT NULL,
  read_seq INTEGER NOT NULL DEFAULT 0,
  delivered_seq INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (conv, user)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_by_user ON members(user, conv);

CREATE TABLE IF NOT EXISTS messages (
  rowid INTEGER PRIMARY KEY,
  conv TEXT NOT NULL,
  seq INTEGER NOT NULL,
  id TEXT NOT NULL,
  sender TEXT NOT NULL,
  cid TEXT,
  ts INTEGER NOT NULL,
  body TEXT NOT NULL,
  text TEXT NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_conv_seq ON messages(conv, seq);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_id ON messages(id);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_sender_cid ON messages(sender, cid) WHERE cid IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_by_ts ON messages(ts);

CREATE TABLE IF NOT EXISTS last_seen (
  user TEXT PRIMARY KEY,
  ts INTEGER NOT NULL
) WITHOUT ROWID;

CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(text, content='messages', content_rowid='rowid');
CREATE TRIGGER IF NOT EXISTS messages_fts_insert AFTER INSERT ON messages WHEN new.text <> '' BEGIN
  INSERT INTO messages_fts(rowid, text) VALUES (new.rowid, new.text);
END;
CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages WHEN old.text <> '' BEGIN
  INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
`

export async function migrate (db: Database): Promise<void> {
  await db.exec(SCHEMA)
}
