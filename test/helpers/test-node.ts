/**
 * Start Warbler for a test, on port 0 in a temp data dir, two ways:
 * - `startNode`: in this process (fast; direct access to stats and the store);
 * - `spawnNode`: the real CLI as a child process (`warbler start`), for the
 *   start contract, signals and crashes. Stopped by its PID.
 * Both remove their temp dir when closed.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import { resolveConfig } from '../../shared/config.js'
import { IdentityStore } from '../../broker/identity/identity-store.js'
import { createLogger, type Logger } from '../../shared/log.js'
import { startWarbler, type Warbler } from '../../server/node.js'

/** The compiled CLI entry point. */
export const CLI = fileURLToPath(new URL('../../cli/warbler.js', import.meta.url))

export function tempDir (prefix = 'warbler-test-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix))
}

export interface TestNode extends Warbler {
  dataDir: string
  mqttUrl: string
  wsUrl: string
  httpUrl: string
}

/**
 * Start a node in this process. `args` are `warbler start` flags. With
 * `logLines`, every log line (debug level) is appended to it; `log` replaces
 * the logger altogether.
 */
export async function startNode (args: string[] = [], opts: { dataDir?: string, users?: UserSpec[], log?: Logger, logLines?: string[] } = {}): Promise<TestNode> {
  const dataDir = opts.dataDir ?? tempDir()
  for (const u of opts.users ?? []) await addUser(dataDir, u)
  const cfg = resolveConfig(['--mqtt-port', '0', '--ws-port', '0', '--http-port', '0', '--data-dir', dataDir, '--sys-interval', '0', ...args], {})
  const quiet = process.env.WARBLER_TEST_LOG === undefined
  const lines = opts.logLines
  const log = opts.log ?? (lines !== undefined ? createLogger('debug', (l) => { lines.push(l) }) : createLogger(quiet ? 'error' : 'debug'))
  const node = await startWarbler(cfg, { log })
  const close = node.close
  let closed = false
  return Object.assign(node, {
    dataDir,
    mqttUrl: `mqtt://127.0.0.1:${node.ports.mqtt ?? 0}`,
    wsUrl: `ws://127.0.0.1:${node.ports.ws ?? 0}/mqtt`,
    httpUrl: `http://127.0.0.1:${node.ports.http ?? 0}`,
    close: async () => {
      await close()
      if (!closed && opts.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true })
      closed = true
    }
  })
}

export interface UserSpec { name: string, password: string, admin?: boolean, service?: boolean }

export async function addUser (dataDir: string, u: UserSpec): Promise<void> {
  const store = await IdentityStore.open(dataDir)
  try { await store.addUser(u.name, u.password, u.admin === true, u.service === true) } finally { await store.close() }
}

export async function withStore<T> (dataDir: string, fn: (s: IdentityStore) => Promise<T>): Promise<T> {
  const store = await IdentityStore.open(dataDir)
  try { return await fn(store) } finally { await store.close() }
}

export interface SpawnedNode {
  child: ChildProcess
  pid: number
  ports: Record<string, number>
  dataDir: string
  stdout: () => string
  stderr: () => string
  /** Send a signal and wait for the exit; resolves to the exit code (null if killed by a signal). */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>
}

/** Spawn `warbler start` with `args` (port-0 flags and a temp data dir are added unless given). */
export async function spawnNode (args: string[] = [], opts: { dataDir?: string, env?: NodeJS.ProcessEnv, timeoutMs?: number } = {}): Promise<SpawnedNode> {
  const dataDir = opts.dataDir ?? tempDir()
  const child = spawn(process.execPath, [CLI, 'start', '--mqtt-port', '0', '--ws-port', '0', '--http-port', '0', '--data-dir', dataDir, ...args], {
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let out = ''
  let err = ''
  child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr?.on('data', (d: Buffer) => { err += d.toString() })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  const ports = await new Promise<Record<string, number>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line after ${opts.timeoutMs ?? 15000} ms; stderr:\n${err}`)), opts.timeoutMs ?? 15000)
    const check = (): void => {
      const m = /^warbler ready (\{.*\})$/m.exec(out)
      if (m !== null) {
        clearTimeout(timer)
        resolve(JSON.parse(m[1] as string) as Record<string, number>)
      }
    }
    child.stdout?.on('data', check)
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`warbler exited with ${String(code)} before ready; stderr:\n${err}`)) })
  })
  return {
    child,
    pid: child.pid ?? -1,
    ports,
    dataDir,
    stdout: () => out,
    stderr: () => err,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
      return await exited
    }
  }
}

/** Connect an mqtt.js client and wait for CONNACK (rejects on refusal). */
export async function connect (url: string, opts: IClientOptions = {}): Promise<MqttClient> {
  return await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...opts })
}

/** Try to connect and return the CONNACK return code (0 on success; the client is closed). */
export async function connackCode (url: string, opts: IClientOptions = {}): Promise<number> {
  return await new Promise((resolve, reject) => {
    const c = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...opts })
    c.once('connect', () => { c.end(true); resolve(0) })
    c.once('error', (e: Error & { code?: number }) => {
      c.end(true)
      if (typeof e.code === 'number') resolve(e.code)
      else reject(e)
    })
    c.once('close', () => { /* the error event carries the code */ })
  })
}

/** The next message on a topic (filter), or a rejection after timeoutMs. */
export function nextMessage (client: MqttClient, filter: (topic: string) => boolean = () => true, timeoutMs = 5000): Promise<{ topic: string, payload: Buffer }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { client.off('message', on); reject(new Error(`no message within ${timeoutMs} ms`)) }, timeoutMs)
    const on = (topic: string, payload: Buffer): void => {
      if (!filter(topic)) return
      clearTimeout(timer)
      client.off('message', on)
      resolve({ topic, payload })
    }
    client.on('message', on)
  })
}

/**
 * Messages that arrive on a client up to the first one `last` accepts (left
 * out); a message published after everything else marks the end instead of a
 * time window that a loaded machine may overrun. `ms` is a safety bound.
 */
export async function collectUntil (client: MqttClient, last: (topic: string, payload: Buffer) => boolean, ms = 15_000): Promise<Array<{ topic: string, payload: Buffer }>> {
  const got: Array<{ topic: string, payload: Buffer }> = []
  let on: (topic: string, payload: Buffer) => void = () => {}
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the end marker did not arrive within ${ms} ms (got ${got.map((m) => m.topic).join(', ')})`)), ms)
      on = (topic, payload) => {
        if (!last(topic, payload)) {
          got.push({ topic, payload })
          return
        }
        clearTimeout(timer)
        resolve()
      }
      client.on('message', on)
    })
  } finally {
    client.off('message', on)
  }
  return got
}

/** Messages that arrive on a client during `ms`. */
export async function collect (client: MqttClient, ms: number): Promise<Array<{ topic: string, payload: Buffer }>> {
  const got: Array<{ topic: string, payload: Buffer }> = []
  const on = (topic: string, payload: Buffer): void => { got.push({ topic, payload }) }
  client.on('message', on)
  await new Promise((resolve) => setTimeout(resolve, ms))
  client.off('message', on)
  return got
}
