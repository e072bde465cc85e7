/**
 * What the SDK tests share: a client that records what its app sees (messages,
 * states, statuses, errors), bounded waits, and the checks of "works" 1-3
 * (every acknowledged message arrives once, in seq order, without a gap).
 */
import assert from 'node:assert/strict'
import { WarblerClient } from '../../sdk/src/client.js'
import type { MessageStatus, State } from '../../sdk/src/client.js'
import type { WarblerError } from '../../sdk/src/errors.js'
import type { ClientOptions } from '../../sdk/src/client-options.js'
import type { AckFrame, MessageFrame } from '../../sdk/src/protocol.js'

export const PW = 'password-123'

/** Short timers so that dead links and lost packets show within a test's time. */
const FAST: Partial<ClientOptions> = {
  keepalive: 2,
  connectTimeout: 2000,
  requestTimeout: 3000,
  reconnect: { minDelay: 50, maxDelay: 400 }
}

export interface Recorded {
  client: WarblerClient
  messages: MessageFrame[]
  states: State[]
  statuses: MessageStatus[]
  errors: WarblerError[]
}

/** A client with its listeners added before connect(), so that every state and message is seen. */
export function recorded (options: ClientOptions): Recorded {
  const client = new WarblerClient({ ...FAST, ...options })
  const r: Recorded = { client, messages: [], states: [], statuses: [], errors: [] }
  client.on('message', (m) => r.messages.push(m))
  client.on('state', (e) => r.states.push(e.newState))
  client.on('status', (s) => r.statuses.push(s))
  client.on('error', (e) => r.errors.push(e))
  return r
}

/**
 * Clean-ups run last-in first-out after the test (node:test runs `t.after`
 * hooks in the order added): clients close before their proxies and node, the
 * node stops before its data dir goes.
 */
export function lifo (t: { after: (fn: () => Promise<void>) => void }): (fn: () => unknown) => void {
  const fns: Array<() => unknown> = []
  t.after(async () => {
    const failures: unknown[] = []
    for (const fn of fns.reverse()) {
      try { await fn() } catch (err) { failures.push(err) }
    }
    if (failures.length > 0) throw failures[0]
  })
  return (fn) => { fns.push(fn) }
}

/** Poll `pred` every 20 ms until it holds; fail after `ms` naming `what`. */
export async function until (pred: () => boolean, ms: number, what: string | (() => string)): Promise<void> {
  const deadline = Date.now() + ms
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${typeof what === 'string' ? what : what()}`)
    await sleep(20)
  }
}

/** `p`, or a failure naming `what` after `ms` (the timer does not outlive it). */
export async function within<R> (p: Promise<R>, ms: number, what: string | (() => string)): Promise<R> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${typeof what === 'string' ? what : what()}`)), ms)
  })
  try { return await Promise.race([p, late]) } finally { clearTimeout(timer) }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

export type Outcome = { ok: true, ack: AckFrame, body: string } | { ok: false, error: WarblerError, body: string }

/** Send without waiting; the outcome lands in `out` (every send must end in one or the other). */
export function track (client: WarblerClient, target: { to: string } | { conv: string }, body: string, out: Outcome[]): Promise<void> {
  return client.send(target, body).then(
    (ack) => { out.push({ ok: true, ack, body }) },
    (error: WarblerError) => { out.push({ ok: false, error, body }) })
}

/** The app saw conversation `conv` as 1..n exactly: each seq once, in order, no gap. */
export function assertComplete (messages: MessageFrame[], conv: string, n: number, who: string): void {
  const seqs = messages.filter((m) => m.conv === conv).map((m) => m.seq)
  assert.deepEqual(seqs, Array.from({ length: n }, (_, i) => i + 1), `${who} should see seq 1..${n} once each, in order`)
}

/** Every acknowledged send is among `messages`, once, with the acknowledged seq, id and body. */
export function assertAllArrived (acked: Outcome[], messages: MessageFrame[], who: string): void {
  const byCid = new Map<string, MessageFrame[]>()
  for (const m of messages) if (m.cid !== undefined) byCid.set(m.cid, [...(byCid.get(m.cid) ?? []), m])
  for (const o of acked) {
    if (!o.ok) continue
    const got = byCid.get(o.ack.cid) ?? []
    assert.equal(got.length, 1, `${who} should get ${o.ack.cid} (seq ${o.ack.seq}) exactly once, got ${got.length}`)
    const m = got[0] as MessageFrame
    assert.deepEqual([m.seq, m.id, m.body], [o.ack.seq, o.ack.id, o.body], `${who}: ${o.ack.cid} as acknowledged`)
  }
}

/** States of a client that connected once and then came back after each of `drops` lost links. */
export function assertStates (states: State[], drops: number, who: string): void {
  const expected: State[] = ['connecting', 'connected']
  for (let i = 0; i < drops; i++) expected.push('reconnecting', 'connected')
  expected.push('closed')
  assert.deepEqual(states, expected, `${who}'s state events`)
}
