/**
 * The local half of sharing the identity store through Redis
 * (identity-replica.ts holds the Redis half): users and device tokens as
 * records (one JSON text each, the same on every node), and a three-way
 * merge of this node's SQLite, the shared copy in Redis and the `base`, the
 * state both last agreed on.
 *
 * The base is kept in the store's `meta` table (a digest per record), so it
 * outlives restarts: a record that differs from the base here was changed on
 * this node (by the CLI, even while the node was down) and is pushed; one that
 * differs in Redis was changed elsewhere and is applied here. Deletions need
 * no tombstones: a record in the base and gone from one side was deleted there.
 * No schema change is needed either: `meta` is a key/value table, and its rows
 * do not move the change counter, so writing the base reloads no cache.
 */
import { createHash } from 'node:crypto'
import type { Database } from '../../shared/sqlite.js'

export type Kind = 'users' | 'tokens'
export const KINDS: readonly Kind[] = ['users', 'tokens']

/** Records by key (user name, token id): the JSON text, the same on every node. */
export type Records = Record<Kind, Map<string, string>>
/** Digests by key, of the records both sides last agreed on. */
type Base = Record<Kind, Map<string, string>>

/** What a merge decided: the changes to push to Redis (null: delete), how many records it applied here, and the records of Redis it left alone as malformed. */
export interface MergePlan {
  push: Record<Kind, Map<string, string | null>>
  applied: number
  malformed: string[]
  /** The store's change counter at the end of the merge: a later value is a change made after it. */
  version: string
}

const BASE_KEY = 'replica_base'

function digest (text: string): string {
  return createHash('sha256').update(text).digest('base64url').slice(0, 22)
}

// Type aliases, not interfaces: the database's row type wants an index signature.
type UserRow = { name: string, password_hash: string, admin: number, service: number, created_at: number }
type TokenRow = { id: string, user: string, name: string, secret_hash: Buffer, created_at: number, revoked_at: number | null }

/** This node's users and device tokens as records. Keys in a fixed order, so equal data is equal text. */
async function localRecords (db: Database): Promise<Records> {
  const users = await db.all<UserRow>('SELECT name, password_hash, admin, service, created_at FROM users')
  const tokens = await db.all<TokenRow>('SELECT id, user, name, secret_hash, created_at, revoked_at FROM device_tokens')
  return {
    users: new Map(users.map((u) => [u.name, JSON.stringify({ passwordHash: u.password_hash, admin: u.admin === 1, service: u.service === 1, createdAt: u.created_at })])),
    tokens: new Map(tokens.map((t) => [t.id, JSON.stringify({ user: t.user, name: t.name, secretHash: t.secret_hash.toString('base64'), createdAt: t.created_at, revokedAt: t.revoked_at })]))
  }
}

async function readBase (db: Database): Promise<Base> {
  const row = await db.get<{ value: Buffer | string }>('SELECT value FROM meta WHERE key = ?', [BASE_KEY])
  const parsed = row === undefined ? {} : JSON.parse(row.value.toString()) as Partial<Record<Kind, Record<string, string>>>
  return { users: new Map(Object.entries(parsed.users ?? {})), tokens: new Map(Object.entries(parsed.tokens ?? {})) }
}

async function writeBase (db: Database, base: Base): Promise<void> {
  const text = JSON.stringify({ users: Object.fromEntries(base.users), tokens: Object.fromEntries(base.tokens) })
  await db.run('INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value', [BASE_KEY, Buffer.from(text)])
}

/**
 * Whether a record from Redis has the shape this code writes. Another program
 * (or a hand) may have written there: such a record is neither applied nor
 * taken for a deletion, and the merge of every other record goes on.
 */
function wellFormed (kind: Kind, text: string): boolean {
  let v: unknown
  try { v = JSON.parse(text) } catch { return false }
  if (typeof v !== 'object' || v === null) return false
  const r = v as Record<string, unknown>
  const time = (x: unknown): boolean => Number.isSafeInteger(x)
  if (kind === 'users') return typeof r.passwordHash === 'string' && typeof r.admin === 'boolean' && typeof r.service === 'boolean' && time(r.createdAt)
  return typeof r.user === 'string' && typeof r.name === 'string' && typeof r.secretHash === 'string' && /^[A-Za-z0-9+/]{43}=$/.test(r.secretHash) &&
    time(r.createdAt) && (r.revokedAt === null || time(r.revokedAt))
}

/** Write one record from Redis into SQLite (null: delete it). Upserts, so a user's tokens are not cascaded away. */
async function apply (db: Database, kind: Kind, key: string, text: string | null): Promise<void> {
  if (kind === 'users') {
    if (text === null) { await db.run('DELETE FROM users WHERE name = ?', [key]); return }
    const u = JSON.parse(text) as { passwordHash: string, admin: boolean, service: boolean, createdAt: number }
    await db.run(`INSERT INTO users(name, password_hash, admin, service, created_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash, admin = excluded.admin, service = excluded.service, created_at = excluded.created_at`,
    [key, u.passwordHash, u.admin ? 1 : 0, u.service ? 1 : 0, u.createdAt])
    return
  }
  if (text === null) { await db.run('DELETE FROM device_tokens WHERE id = ?', [key]); return }
  const t = JSON.parse(text) as { user: string, name: string, secretHash: string, createdAt: number, revokedAt: number | null }
  await db.run(`INSERT INTO device_tokens(id, user, name, secret_hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT(id) DO UPDATE SET user = excluded.user, name = excluded.name, secret_hash = excluded.secret_hash, created_at = excluded.created_at, revoked_at = excluded.revoked_at`,
  [key, t.user, t.name, Buffer.from(t.secretHash, 'base64'), t.createdAt, t.revokedAt])
}

/**
 * Merge `remote` (Redis' copy) into this node's store, in one transaction:
 * what changed only in Redis is applied here, what changed only here is
 * returned to be pushed, and where both changed, this node's change is pushed
 * (the last push wins in Redis, and every node then takes it). `fresh` (Redis
 * holds no shared copy yet, or lost it) merges from an empty base: nothing is
 * deleted, every record of this node is pushed.
 */
export async function merge (db: Database, remote: Records, fresh: boolean): Promise<MergePlan> {
  return await db.transaction(async () => {
    const local = await localRecords(db)
    const base = fresh ? { users: new Map<string, string>(), tokens: new Map<string, string>() } : await readBase(db)
    const plan: MergePlan = { push: { users: new Map(), tokens: new Map() }, applied: 0, malformed: [], version: '' }
    // Users first, so that a token applied here finds its user.
    for (const kind of KINDS) {
      const keys = new Set([...local[kind].keys(), ...remote[kind].keys(), ...base[kind].keys()])
      for (const key of keys) {
        const l = local[kind].get(key) ?? null
        const r = remote[kind].get(key) ?? null
        if (r !== null && !wellFormed(kind, r)) { plan.malformed.push(`${kind}:${key}`); continue }
        const [ld, rd, bd] = [l === null ? null : digest(l), r === null ? null : digest(r), base[kind].get(key) ?? null]
        if (ld === rd) {
          if (ld === null) base[kind].delete(key)
          else base[kind].set(key, ld)
        } else if (ld === bd) {
          try {
            await apply(db, kind, key, r)
          } catch (err) {
            // A token whose user is missing (deleted meanwhile): the next merge sees it again.
            if (!/FOREIGN KEY/.test((err as Error).message)) throw err
            continue
          }
          plan.applied++
          if (rd === null) base[kind].delete(key)
          else base[kind].set(key, rd)
        } else {
          // The base moves only once the push went through (pushed()): a failed push is retried.
          plan.push[kind].set(key, l)
        }
      }
    }
    await writeBase(db, base)
    // Read in the transaction: no other writer comes between the merge and this value.
    plan.version = String((await db.get<{ value: number }>("SELECT value FROM meta WHERE key = 'identity_version'"))?.value ?? 0)
    return plan
  })
}

/** Record pushed changes in the base, once Redis has them; a record changed here again since stays to be pushed next time. */
export async function pushed (db: Database, done: MergePlan['push']): Promise<void> {
  await db.transaction(async () => {
    const base = await readBase(db)
    for (const kind of KINDS) {
      for (const [key, text] of done[kind]) {
        if (text === null) base[kind].delete(key)
        else base[kind].set(key, digest(text))
      }
    }
    await writeBase(db, base)
  })
}

/** The signing key stored here, and a way to replace it with the shared one (moving the change counter, so caches reload it). */
export async function localKey (db: Database): Promise<Buffer | undefined> {
  return (await db.get<{ value: Buffer }>("SELECT value FROM meta WHERE key = 'jwt_key'"))?.value
}

export async function adoptKey (db: Database, key: Buffer): Promise<void> {
  await db.transaction(async () => {
    await db.run("INSERT INTO meta(key, value) VALUES ('jwt_key', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", [key])
    await db.run("UPDATE meta SET value = value + 1 WHERE key = 'identity_version'")
  })
}
