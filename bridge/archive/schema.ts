/**
 * The archive's tables, in the service's SQLite file next to the users.
 * Indexes follow the real queries:
 * - a page of history: messages by (conv, seq), the primary key;
 * - idempotent sends: messages by (sender, cid), unique;
 * - the conversation list of a user: members by user, then conversations by id
 *   (sorted by last activity in memory: a user has few conversations);
 * - unread counts: conversations.last_seq minus members.read_seq, no counting;
 * - full-text search: an FTS5 index over the text of each message.
 *
 * The schema is a list of numbered migrations (shared/migrations.ts runs
 * them and records the version). A change to the tables is a new migration
 * at the end of the list; a shipped migration is never edited, since
 * databases out there already ran it.
 */
import type { Database } from '../../shared/sqlite.js'
import type { Logger } from '../../shared/log.js'
import { migrateSchema, tableNames, type Migration, type MigrationOutcome, type SchemaComponent } from '../../shared/migrations.js'

/** Migration 1: the archive as the first release that recorded versions shipped it, exactly. */
const SCHEMA_V1 = `
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

/**
 * Migration 2: a send's row moves, in the statement that inserts it, its
 * conversation's last seq and time and the sender's read and delivered
 * watermarks (what one sends, one has read; watermarks only move forward).
 * A batch of sends is then one INSERT committed on its own: measured, that
 * costs SQLite about half of BEGIN, three statements and COMMIT parsed from
 * one script (bridge/archive/writer.ts). Group events (no cid) move no
 * watermark, as before; their conversation row is written by the writer.
 */
const SEND_TRIGGER_V2 = `
CREATE TRIGGER messages_send_moves AFTER INSERT ON messages BEGIN
  UPDATE conversations SET last_seq = NEW.seq, last_ts = NEW.ts WHERE id = NEW.conv;
  UPDATE members SET read_seq = max(read_seq, NEW.seq), delivered_seq = max(delivered_seq, NEW.seq)
    WHERE NEW.cid IS NOT NULL AND conv = NEW.conv AND user = NEW.sender;
END;
`

/**
 * Migration 3: the MQTT 5 user properties a sender gave a chat message, as
 * the JSON of mqtt.js's object (NULL when none), delivered with it in every
 * reply. Adding a nullable column rewrites no row; the copy of the file made
 * before any upgrade (shared/migrations.ts) is still taken, so an archive
 * needs its own size free on disk once.
 */
const USER_PROPERTIES_V3 = 'ALTER TABLE messages ADD COLUMN props TEXT;'

/**
 * Migration 4: numbered sends (bridge/archive/send-order.ts). `send_order`
 * holds the last n stored of each (sender, epoch), with when it last moved
 * (for the sweep of old epochs). A batch with numbered sends is written
 * through the `send_batch` view: its trigger inserts each message row (id
 * set) and moves each order row (epoch set), so messages and the numbers
 * that admitted them commit in one statement, as a batch of sends did
 * before (migration 2). Batches without numbered sends insert into messages
 * as before.
 */
const SEND_ORDER_V4 = `
CREATE TABLE send_order (
  sender TEXT NOT NULL,
  epoch TEXT NOT NULL,
  n INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  PRIMARY KEY (sender, epoch)
) WITHOUT ROWID;
CREATE INDEX send_order_by_ts ON send_order(ts);
CREATE VIEW send_batch AS
  SELECT conv, seq, id, sender, cid, ts, body, text, props, NULL AS epoch, NULL AS n FROM messages WHERE 0;
CREATE TRIGGER send_batch_insert INSTEAD OF INSERT ON send_batch BEGIN
  INSERT INTO messages(conv, seq, id, sender, cid, ts, body, text, props)
    SELECT NEW.conv, NEW.seq, NEW.id, NEW.sender, NEW.cid, NEW.ts, NEW.body, NEW.text, NEW.props WHERE NEW.id IS NOT NULL;
  INSERT INTO send_order(sender, epoch, n, ts) SELECT NEW.sender, NEW.epoch, NEW.n, NEW.ts WHERE NEW.epoch IS NOT NULL
    ON CONFLICT (sender, epoch) DO UPDATE SET n = max(n, excluded.n), ts = excluded.ts;
END;
`

/** The tables of migration 1: a file with all of them and no recorded version is at version 1. */
const V1_TABLES = ['conversations', 'members', 'messages', 'last_seen', 'messages_fts']

/** The archive's migrations, in order; a new one goes at the end. */
export const ARCHIVE_MIGRATIONS: readonly Migration[] = [
  { version: 1, what: 'conversations, members, messages, last_seen and the full-text index', up: SCHEMA_V1 },
  { version: 2, what: 'a send moves its conversation and its sender\'s watermarks in the same statement', up: SEND_TRIGGER_V2 },
  { version: 3, what: 'messages keep the MQTT 5 user properties of their sender', up: USER_PROPERTIES_V3 },
  { version: 4, what: 'numbered sends: the last n stored of each sender\'s epoch', up: SEND_ORDER_V4 }
]

/** The archive as a part of the database file, with `migrations` (the shipped list unless a test gives its own). */
function archiveComponent (migrations: readonly Migration[] = ARCHIVE_MIGRATIONS): SchemaComponent {
  return {
    name: 'archive',
    migrations,
    // Before versions were recorded, the schema ran with IF NOT EXISTS at
    // every start: a file with all of its tables is at version 1; one with only
    // some (a first start cut short) runs migration 1 again, which adds the rest.
    detect: async (db) => {
      const tables = await tableNames(db)
      return V1_TABLES.every((t) => tables.has(t)) ? 1 : 0
    }
  }
}

/** Bring the archive's tables to the newest version (see shared/migrations.ts). */
export async function migrate (db: Database, opts: { log?: Logger, migrations?: readonly Migration[] } = {}): Promise<MigrationOutcome> {
  return await migrateSchema(db, archiveComponent(opts.migrations), opts.log)
}
