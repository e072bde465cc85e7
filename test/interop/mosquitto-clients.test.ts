/**
 * Plain MQTT devices: Debian's mosquitto_pub and mosquitto_sub against
 * Warbler, bounded by -W (seconds) and -C (message counts).
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { test } from 'node:test'
import type { AedesPublishPacket, Client, Subscription } from 'aedes'
import { startNode, type TestNode } from '../helpers/test-node.js'

const USERS = [
  { name: 'alice', password: 'alice-pw-1' },
  { name: 'bob', password: 'bob-pw-1' },
  { name: 'carol', password: 'carol-pw-1', admin: true }
]

interface Run { code: number | null, stdout: string, stderr: string }

/** Spawn a mosquitto client; resolves when it exits (it is killed at test end if still running). */
function run (t: { after: (fn: () => unknown) => void }, cmd: 'mosquitto_pub' | 'mosquitto_sub', node: TestNode, args: string[]): Promise<Run> {
  const child = spawn(cmd, ['-h', '127.0.0.1', '-p', String(node.ports.mqtt), '-V', 'mqttv311', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const done = new Promise<Run>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, stdout, stderr }))
  })
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await done.catch(() => {})
  })
  return done
}

/** Resolves once the broker has granted (or refused) a subscription of this client id to this filter. */
function subscribed (node: TestNode, clientId: string, filter: string): Promise<void> {
  return new Promise((resolve) => {
    const on = (subs: Subscription[], client: Client): void => {
      if (client.id !== clientId || !subs.some((s) => s.topic === filter)) return
      node.broker.off('subscribe', on)
      resolve()
    }
    node.broker.on('subscribe', on)
  })
}

async function until (cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

function servicePublish (node: TestNode, topic: string, payload: string): void {
  node.broker.publish({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 0, retain: false, dup: false }, () => {})
}

/** What the broker routes on a filter, seen from inside the process. */
async function watch (t: { after: (fn: () => unknown) => void }, node: TestNode, topic: string): Promise<Array<{ topic: string, payload: string }>> {
  const seen: Array<{ topic: string, payload: string }> = []
  const fn = (packet: AedesPublishPacket, cb: () => void): void => { seen.push({ topic: packet.topic, payload: Buffer.from(packet.payload).toString() }); cb() }
  await new Promise<void>((resolve) => node.broker.subscribe(topic, fn, () => resolve()))
  t.after(() => new Promise<void>((resolve) => node.broker.unsubscribe(topic, fn, () => resolve())))
  return seen
}

test('development mode: mosquitto_sub receives what mosquitto_pub sends, and "#" never shows another\'s inbox', { timeout: 20_000 }, async (t) => {
  const node = await startNode(['--dev'])
  t.after(() => node.close())
  const ready = subscribed(node, 'dev-sub', 'sensors/+/temp')
  const sub = run(t, 'mosquitto_sub', node, ['-i', 'dev-sub', '-t', 'sensors/+/temp', '-q', '1', '-C', '2', '-W', '5', '-v'])
  await ready
  const pub = await run(t, 'mosquitto_pub', node, ['-i', 'dev-pub', '-t', 'sensors/kitchen/temp', '-m', '21.5', '-q', '1'])
  assert.equal(pub.code, 0, pub.stderr)
  const pub2 = await run(t, 'mosquitto_pub', node, ['-t', 'sensors/hall/temp', '-m', '19', '-q', '0'])
  assert.equal(pub2.code, 0, pub2.stderr)
  const got = await sub
  assert.equal(got.code, 0, got.stderr)
  assert.equal(got.stdout, 'sensors/kitchen/temp 21.5\nsensors/hall/temp 19\n')

  // An anonymous '#' subscriber: the service's inbox and device publishes come
  // first, the ordinary one last; with -C 1 it must print only the ordinary one.
  const sniffReady = subscribed(node, 'sniffer', '#')
  const sniff = run(t, 'mosquitto_sub', node, ['-i', 'sniffer', '-t', '#', '-C', '1', '-W', '5', '-v'])
  await sniffReady
  servicePublish(node, 'wb/u/bob/inbox', '{"t":"msg","body":"secret"}')
  servicePublish(node, 'wb/d/bob-phone', '{"t":"ack"}')
  servicePublish(node, 'public/hello', 'world')
  const sniffed = await sniff
  assert.equal(sniffed.code, 0, sniffed.stderr)
  assert.equal(sniffed.stdout, 'public/hello world\n')
})

test('a user device: mosquitto_sub gets its inbox, mosquitto_pub sends only as itself, wrong passwords are refused', { timeout: 20_000 }, async (t) => {
  const node = await startNode([], { users: USERS })
  t.after(() => node.close())
  const auth = ['-u', 'alice', '-P', 'alice-pw-1']
  const ready = subscribed(node, 'alice-dev', 'wb/u/alice/inbox')
  const sub = run(t, 'mosquitto_sub', node, [...auth, '-i', 'alice-dev', '-t', 'wb/u/alice/inbox', '-q', '1', '-C', '1', '-W', '5'])
  await ready
  const frame = '{"t":"msg","from":"bob","body":"hello alice","seq":1}'
  servicePublish(node, 'wb/u/alice/inbox', frame)
  const got = await sub
  assert.equal(got.code, 0, got.stderr)
  assert.deepEqual(JSON.parse(got.stdout) as unknown, JSON.parse(frame))

  const routed = await watch(t, node, 'wb/u/+/out/#') // the broker may append the sender's client id
  const spoof = await run(t, 'mosquitto_pub', node, [...auth, '-i', 'alice-pub', '-t', 'wb/u/bob/out', '-m', '{"t":"msg","body":"as bob"}', '-q', '1'])
  assert.equal(spoof.code, 0, 'a refused publish is still acknowledged, so the device does not retry forever')
  const own = await run(t, 'mosquitto_pub', node, [...auth, '-i', 'alice-pub', '-t', 'wb/u/alice/out', '-m', ' {"t":"msg","body":"as alice"}', '-q', '1'])
  assert.equal(own.code, 0, own.stderr)
  assert.deepEqual(routed.map((m) => m.topic.split('/').slice(0, 4).join('/')), ['wb/u/alice/out'])

  const wrong = await run(t, 'mosquitto_pub', node, ['-u', 'alice', '-P', 'nope', '-i', 'alice-x', '-t', 'wb/u/alice/out', '-m', '{}'])
  assert.notEqual(wrong.code, 0)
  assert.match(wrong.stderr, /not authori[sz]ed|bad user ?name or password/i)
  const otherId = await run(t, 'mosquitto_pub', node, [...auth, '-i', 'bob-phone', '-t', 'wb/u/alice/out', '-m', '{}'])
  assert.notEqual(otherId.code, 0, 'alice may not use one of bob\'s client ids')
  assert.match(otherId.stderr, /identifier rejected/i)
  const anon = await run(t, 'mosquitto_pub', node, ['-t', 'public/x', '-m', '{}'])
  assert.notEqual(anon.code, 0, 'anonymous is refused outside development mode')
})

test('mosquitto_sub -t \'$SYS/#\' prints nothing for a user and the live tree for an admin', { timeout: 20_000 }, async (t) => {
  const node = await startNode(['--sys-interval', '1'], { users: USERS })
  t.after(() => node.close())
  // Positive control: the admin gets $SYS values.
  const admin = await run(t, 'mosquitto_sub', node, ['-u', 'carol', '-P', 'carol-pw-1', '-i', 'carol-ops', '-t', '$SYS/broker/clients/connected', '-C', '1', '-W', '5'])
  assert.equal(admin.code, 0, admin.stderr)
  assert.match(admin.stdout, /^\d+\n$/)
  // A user: refused (SUBACK 0x80), nothing printed; mosquitto_sub gives up at once.
  const user = await run(t, 'mosquitto_sub', node, ['-u', 'alice', '-P', 'alice-pw-1', '-i', 'alice-ops', '-t', '$SYS/#', '-W', '2'])
  assert.equal(user.stdout, '')
  assert.match(user.stderr, /denied/i)

  // With an allowed filter too it stays subscribed: across a $SYS tick it
  // prints only its inbox message (the control), never a $SYS value.
  const ticks = await watch(t, node, '$SYS/broker/uptime')
  const ready = subscribed(node, 'alice-ops2', 'wb/u/alice/inbox')
  const both = run(t, 'mosquitto_sub', node, ['-u', 'alice', '-P', 'alice-pw-1', '-i', 'alice-ops2', '-t', '$SYS/#', '-t', 'wb/u/alice/inbox', '-C', '1', '-W', '5', '-v'])
  await ready
  const seen = ticks.length
  await until(() => ticks.length > seen, 3000) // a $SYS tick after the subscription
  servicePublish(node, 'wb/u/alice/inbox', '{"t":"msg"}')
  const out = await both
  assert.equal(out.code, 0, out.stderr)
  assert.equal(out.stdout, 'wb/u/alice/inbox {"t":"msg"}\n')
})
