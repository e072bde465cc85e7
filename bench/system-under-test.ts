/**
 * The system under test of `warbler bench`: started fresh for every run and
 * stopped by its PID, its CPU and memory, the identities provisioned in the
 * data dir beforehand, and the group a scenario's owner creates.
 */
import { hashPassword } from '../broker/identity/password.js'
import { IdentityStore } from '../broker/identity/identity-store.js'
import { encodeString, LeanClient } from './lean.js'
import { type BenchOptions, NET_TIMEOUT_MS, type TargetName } from './bench-options.js'
import type { RunContext } from './run-context.js'
import { GC_NODE_ARGS, gcMemory, processTree, type Proc, rssMb, spawnAedes, spawnMosquitto, spawnRedis, spawnWarbler, ticksOf } from './targets.js'

export interface Target {
  name: TargetName
  port: number
  httpPort: number | null
  /** The processes whose CPU and memory are measured (Warbler: the primary, its workers, Redis). */
  pids: () => number[]
  stop: () => Promise<void>
  errTail: () => string
  /**
   * Node targets spawned with bench/gc-ipc.ts (aedes always; Warbler in the
   * conns scenario, one process): a full GC, then process.memoryUsage().
   * Null where memory can only be read as it is (Mosquitto, Warbler's workers).
   */
  gcMemory: (() => Promise<NodeJS.MemoryUsage | null>) | null
  /** The redis-server started with Warbler's workers, if any (its PID and URL). */
  redis: { pid: number, url: string } | null
}

/** How Warbler is started: its `--workers` (0: one process) and whether a redis-server comes with it. */
export interface Shape { workers: number, redis: boolean, cpuProfDir?: string, serviceProcess?: 'on' | 'off' }

export const PASSWORD = 'bench-password-1'

/**
 * Users with one device token each, written to the data dir before the node
 * starts (as `warbler token create USER --device NAME` does, in one
 * transaction). One scrypt hash is shared by all users: hashing a password
 * per user would take minutes for thousands; the benchmark logs in with the
 * tokens only.
 */
export async function provision (dataDir: string, users: string[], admins: string[] = []): Promise<Map<string, string>> {
  const store = await IdentityStore.open(dataDir)
  const tokens = new Map<string, string>()
  try {
    const hash = await hashPassword(PASSWORD)
    await store.db.transaction(async () => {
      for (const u of [...users, ...admins]) {
        await store.db.run('INSERT INTO users(name, password_hash, admin, created_at, service) VALUES (?, ?, ?, ?, 0)', [u, hash, admins.includes(u) ? 1 : 0, Date.now()])
        tokens.set(u, (await store.createDeviceToken(u, 'bench')).token)
      }
    })
  } finally {
    await store.close()
  }
  return tokens
}

/** Start the system under test for one run, in `dir`. */
export async function startTarget (name: TargetName, dir: string, o: BenchOptions, shape: Shape = { workers: o.workers, redis: o.workers > 1 }): Promise<Target> {
  if (name === 'mosquitto') {
    const m = await spawnMosquitto(dir)
    return { name, port: m.port, httpPort: null, pids: () => [m.pid], stop: m.stop, errTail: () => m.err(), gcMemory: null, redis: null }
  }
  if (name === 'aedes') {
    const a = await spawnAedes(GC_NODE_ARGS)
    return { name, port: a.port, httpPort: null, pids: () => [a.pid], stop: a.stop, errTail: () => a.err().trim().split('\n').slice(-8).join('\n'), gcMemory: () => gcMemory(a.child), redis: null }
  }
  let redis: (Proc & { url: string }) | null = null
  if (shape.redis) redis = await spawnRedis(dir)
  // The conns scenario reads memory after a full GC (one process only: a primary cannot collect its workers' garbage).
  const gc = o.scenario === 'conns' && shape.workers <= 1
  try {
    const prof = shape.cpuProfDir ?? o.cpuProf
    const nodeArgs = [...(gc ? GC_NODE_ARGS : []), ...(prof !== null ? ['--cpu-prof', '--cpu-prof-dir', prof] : [])]
    const w = await spawnWarbler({ dataDir: dir, bridge: o.bridge, workers: shape.workers > 0 ? shape.workers : undefined, redis: redis?.url, readyTimeoutMs: 60_000, nodeArgs, ...(gc ? { ipc: true } : {}), ...(shape.serviceProcess !== undefined ? { extra: ['--service-process', shape.serviceProcess] } : {}) })
    let tree = processTree(w.pid)
    let treeAt = Date.now()
    return {
      name,
      port: w.port,
      httpPort: w.httpPort,
      pids: () => {
        if (Date.now() - treeAt > 5000) { tree = processTree(w.pid); treeAt = Date.now() }
        return redis !== null ? [...tree, redis.pid] : tree
      },
      stop: async () => { await w.stop(); await redis?.stop() },
      errTail: () => w.err().trim().split('\n').slice(-8).join('\n'),
      gcMemory: gc ? () => gcMemory(w.child) : null,
      redis: redis === null ? null : { pid: redis.pid, url: redis.url }
    }
  } catch (err) {
    await redis?.stop()
    throw err
  }
}

export function cpuTicks (t: Target): number { return t.pids().reduce((s, pid) => s + ticksOf(pid), 0) }
export function rssOf (t: Target): number { return t.pids().reduce((s, pid) => s + rssMb(pid), 0) }

/** Heap used by the Warbler processes, from /metrics (bytes; NaN when not available). */
export async function heapUsed (t: Target): Promise<number> {
  if (t.httpPort === null) return NaN
  try {
    const res = await fetch(`http://127.0.0.1:${t.httpPort}/metrics`, { signal: AbortSignal.timeout(5000) })
    const text = await res.text()
    let sum = 0
    let found = false
    for (const m of text.matchAll(/^\w*nodejs_heap_size_used_bytes(?:\{[^}]*\})? (\S+)/gm)) { sum += Number(m[1]); found = true }
    return found ? sum : NaN
  } catch {
    return NaN
  }
}

/**
 * The owner creates a group through the service's MQTT requests
 * (`group.create`, then `group.add` for members past the first request's
 * list); its conversation id.
 */
export async function createGroup (port: number, owner: string, token: string, members: string[]): Promise<string> {
  const cid = `${owner}-setup`
  const c = await LeanClient.connect(port, cid, { username: owner, password: token }, '127.0.0.1', { timeoutMs: NET_TIMEOUT_MS })
  const waiting = new Map<string, { resolve: (data: { conv?: string }) => void, reject: (e: Error) => void }>()
  c.handlers.onPublish = (_topic, payload) => {
    const f = JSON.parse(payload.toString('utf8')) as { t: string, id?: string, ref?: string, data?: { conv?: string }, message?: string }
    const w = waiting.get(f.id ?? f.ref ?? '')
    if (f.t === 'res') w?.resolve(f.data ?? {})
    else if (f.t === 'error') w?.reject(new Error(`group request refused: ${String(f.message)}`))
  }
  let n = 0
  const request = async (op: string, params: Record<string, unknown>): Promise<{ conv?: string }> => {
    const id = `g${++n}`
    let timer: NodeJS.Timeout | undefined
    const answer = new Promise<{ conv?: string }>((resolve, reject) => {
      waiting.set(id, { resolve, reject })
      timer = setTimeout(() => reject(new Error(`no answer to ${op} within ${NET_TIMEOUT_MS} ms`)), NET_TIMEOUT_MS)
    })
    c.publish1(encodeString(`wb/u/${owner}/out`), Buffer.from(JSON.stringify({ t: 'req', id, op, ...params })), n)
    try { return await answer } finally { clearTimeout(timer); waiting.delete(id) }
  }
  try {
    await c.subscribe([`wb/d/${cid}`])
    const CHUNK = 250
    const conv = (await request('group.create', { name: 'bench', members: members.slice(0, CHUNK) })).conv
    if (typeof conv !== 'string') throw new Error('group.create answered without a conversation id')
    for (let i = CHUNK; i < members.length; i += CHUNK) await request('group.add', { conv, users: members.slice(i, i + CHUNK) })
    return conv
  } finally {
    c.end()
  }
}

/** Start the target and register its stop. */
export async function target (ctx: RunContext): Promise<Target> {
  const t = await startTarget(ctx.target, ctx.dir, ctx.o)
  ctx.cleanup.push(t.stop)
  return t
}
