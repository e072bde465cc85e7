/**
 * Headless Chromium for tests, driven over the DevTools protocol (CDP) with
 * the `ws` client we already depend on: no browser download, no puppeteer.
 *
 * - `launchChromium()`: Debian's /usr/bin/chromium (or $CHROMIUM) in a new
 *   temp profile, on a DevTools port the browser picks itself (port 0, read
 *   from its stderr). `close()` stops it by its PID (its process group: the
 *   renderers are its children) and removes the profile.
 * - `browser.newPage(url)`: a tab in its own browser context (own storage,
 *   IndexedDB included, like a separate browser profile), loaded.
 * - `page.eval(js)`: evaluates an expression in the page, awaits a promise it
 *   returns, and hands back its JSON value; a thrown error becomes a rejection
 *   with the page's message and stack.
 * Every wait is bounded.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import WebSocket from 'ws'

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium'

/** Flags known to work headless as root in a container, without any network of its own. */
const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-default-apps', '--disable-extensions', '--mute-audio', '--no-default-browser-check',
  '--remote-debugging-address=127.0.0.1', '--remote-debugging-port=0'
]

// DevTools protocol answers and events are read field by field, per method.
/* eslint-disable @typescript-eslint/no-explicit-any */
interface Pending { resolve: (v: any) => void, reject: (e: Error) => void, timer: ReturnType<typeof setTimeout>, method: string }
type Listener = (params: any, sessionId: string | undefined) => void
/* eslint-enable @typescript-eslint/no-explicit-any */

/** One DevTools WebSocket: commands with ids and timeouts, events by method. */
class Cdp {
  private id = 0
  private readonly pending = new Map<number, Pending>()
  private readonly listeners = new Map<string, Set<Listener>>()

  constructor (private readonly ws: WebSocket, private readonly timeoutMs: number) {
    ws.on('message', (data) => {
      const msg = JSON.parse((data as Buffer).toString()) as { id?: number, result?: unknown, error?: { message: string }, method?: string, params?: unknown, sessionId?: string }
      if (msg.id !== undefined) {
        const p = this.pending.get(msg.id)
        if (p === undefined) return
        this.pending.delete(msg.id)
        clearTimeout(p.timer)
        if (msg.error !== undefined) p.reject(new Error(`${p.method}: ${msg.error.message}`))
        else p.resolve(msg.result)
      } else if (msg.method !== undefined) {
        for (const fn of [...(this.listeners.get(msg.method) ?? [])]) fn(msg.params, msg.sessionId)
      }
    })
    ws.on('close', () => {
      for (const [, p] of this.pending) { clearTimeout(p.timer); p.reject(new Error(`${p.method}: DevTools connection closed`)) }
      this.pending.clear()
    })
  }

  static async open (url: string, timeoutMs: number): Promise<Cdp> {
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 })
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { ws.terminate(); reject(new Error(`no DevTools connection within ${timeoutMs} ms`)) }, timeoutMs)
      ws.once('open', () => { clearTimeout(timer); resolve() })
      ws.once('error', (e) => { clearTimeout(timer); reject(e) })
    })
    return new Cdp(ws, timeoutMs)
  }

  /** A command; its answer is what the caller says the method returns. */
  send<R = unknown> (method: string, params: object = {}, sessionId?: string, timeoutMs = this.timeoutMs): Promise<R> {
    const id = ++this.id
    return new Promise<R>((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error(`${method}: no answer within ${timeoutMs} ms`)) }, timeoutMs)
      this.pending.set(id, { resolve, reject, timer, method })
      this.ws.send(JSON.stringify(sessionId === undefined ? { id, method, params } : { id, method, params, sessionId }))
    })
  }

  on (method: string, fn: Listener): () => void {
    let set = this.listeners.get(method)
    if (set === undefined) { set = new Set(); this.listeners.set(method, set) }
    set.add(fn)
    return () => { set.delete(fn) }
  }

  close (): void { this.ws.close() }
}

export interface WsFrame { opcode: number, data: Buffer }

export class Page {
  /** console.* lines and uncaught errors of the page, for failure messages. */
  readonly log: string[] = []
  /** WebSocket frames the page sent (binary ones decoded), once `recordWebSocketFrames()` is on. */
  readonly sentFrames: WsFrame[] = []

  constructor (private readonly cdp: Cdp, readonly sessionId: string, readonly targetId: string, private readonly timeoutMs: number) {
    cdp.on('Runtime.consoleAPICalled', (p: { type: string, args: Array<{ value?: unknown, description?: string }> }, s) => {
      if (s === sessionId) this.log.push(`console.${p.type}: ${p.args.map((a) => a.value !== undefined ? (typeof a.value === 'string' ? a.value : JSON.stringify(a.value)) : a.description ?? '').join(' ')}`)
    })
    cdp.on('Runtime.exceptionThrown', (p: { exceptionDetails: { text: string, exception?: { description?: string } } }, s) => {
      if (s === sessionId) this.log.push(`uncaught: ${p.exceptionDetails.exception?.description ?? p.exceptionDetails.text}`)
    })
    // alert() and confirm() would block the page (and every eval) until answered: log and accept them.
    cdp.on('Page.javascriptDialogOpening', (p: { type: string, message: string }, s) => {
      if (s !== sessionId) return
      this.log.push(`${p.type}: ${p.message}`)
      void cdp.send('Page.handleJavaScriptDialog', { accept: true }, sessionId).catch(() => {})
    })
    cdp.on('Network.webSocketFrameSent', (p: { response: { opcode: number, payloadData: string } }, s) => {
      if (s !== sessionId) return
      const { opcode, payloadData } = p.response
      this.sentFrames.push({ opcode, data: opcode === 2 ? Buffer.from(payloadData, 'base64') : Buffer.from(payloadData) })
    })
  }

  /** Load `url` and wait for its load event. */
  async goto (url: string): Promise<void> {
    const loaded = new Promise<void>((resolve) => {
      const off = this.cdp.on('Page.loadEventFired', (_p, s) => { if (s === this.sessionId) { off(); resolve() } })
    })
    const nav = await this.cdp.send<{ errorText?: string }>('Page.navigate', { url }, this.sessionId)
    if (nav.errorText !== undefined) throw new Error(`cannot load ${url}: ${nav.errorText}`)
    await bounded(loaded, this.timeoutMs, `load of ${url}`)
  }

  /** Record the WebSocket frames the page sends from now on (in `sentFrames`). */
  async recordWebSocketFrames (): Promise<void> {
    await this.cdp.send('Network.enable', {}, this.sessionId)
  }

  /**
   * Evaluate `expression` in the page (an async IIFE is fine) and return its
   * value as JSON; rejects with the page's error, or after `timeoutMs`.
   */
  async eval<T = unknown> (expression: string, timeoutMs = this.timeoutMs): Promise<T> {
    const r = await this.cdp.send<{ result: { value?: T }, exceptionDetails?: { text: string, exception?: { description?: string } } }>(
      'Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true, timeout: timeoutMs }, this.sessionId, timeoutMs + 1000)
    if (r.exceptionDetails !== undefined) {
      throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}\npage log:\n${this.log.join('\n')}`)
    }
    return r.result.value as T
  }

  /** Poll `predicate` (a page expression, awaited if a promise) every 50 ms until it is truthy; rejects after `timeoutMs`. */
  async waitFor (predicate: string, timeoutMs = this.timeoutMs, what = predicate): Promise<void> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      if (await this.eval<boolean>(`(async () => Boolean(await (${predicate})))()`)) return
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\npage log:\n${this.log.join('\n')}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  /** A PNG of what the tab shows (for looking at a failure). */
  async screenshot (): Promise<Buffer> {
    const { data } = await this.cdp.send<{ data: string }>('Page.captureScreenshot', { format: 'png' }, this.sessionId)
    return Buffer.from(data, 'base64')
  }

  async close (): Promise<void> {
    await this.cdp.send('Target.closeTarget', { targetId: this.targetId }).catch(() => {})
  }
}

export interface Browser {
  pid: number
  /** Chromium's version line, e.g. `Chrome/131.0.6778.85`. */
  version: string
  /** A new tab in a new browser context (its own cookies and storage), at `url`. */
  newPage: (url: string) => Promise<Page>
  /** Stop the browser by its PID (SIGTERM, then SIGKILL after 5 s) and remove its profile. Idempotent. */
  close: () => Promise<void>
}

function bounded<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms) })
  ])
}

/** Signal the browser's process group (it leads it: spawned detached); false once it is gone. */
function signal (child: ChildProcess, sig: NodeJS.Signals): boolean {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return false
  try { process.kill(-child.pid, sig); return true } catch { return false }
}

export async function launchChromium (opts: { timeoutMs?: number } = {}): Promise<Browser> {
  const timeoutMs = opts.timeoutMs ?? 15_000
  const profile = mkdtempSync(path.join(os.tmpdir(), 'warbler-chromium-'))
  const child = spawn(CHROMIUM, [...FLAGS, `--user-data-dir=${profile}`, 'about:blank'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true // its own process group, so close() reaches the renderers too
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  let stderr = ''
  const endpoint = new Promise<string>((resolve, reject) => {
    child.once('error', reject)
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString()
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(stderr)
      if (m !== null) resolve(m[1] as string)
    })
    void exited.then(() => reject(new Error(`chromium exited before DevTools was up:\n${stderr.slice(-2000)}`)))
  })
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    if (signal(child, 'SIGTERM')) {
      const timer = setTimeout(() => { signal(child, 'SIGKILL') }, 5000)
      await exited
      clearTimeout(timer)
    }
    rmSync(profile, { recursive: true, force: true })
  }
  let cdp: Cdp
  try {
    cdp = await Cdp.open(await bounded(endpoint, timeoutMs, 'chromium DevTools endpoint'), timeoutMs)
  } catch (err) {
    await close()
    throw err
  }
  const { product } = await cdp.send<{ product: string }>('Browser.getVersion')
  return {
    pid: child.pid ?? -1,
    version: product,
    close: async () => { cdp.close(); await close() },
    newPage: async (url) => {
      const { browserContextId } = await cdp.send<{ browserContextId: string }>('Target.createBrowserContext')
      const { targetId } = await cdp.send<{ targetId: string }>('Target.createTarget', { url: 'about:blank', browserContextId })
      const { sessionId } = await cdp.send<{ sessionId: string }>('Target.attachToTarget', { targetId, flatten: true })
      const page = new Page(cdp, sessionId, targetId, timeoutMs)
      await cdp.send('Page.enable', {}, sessionId)
      await cdp.send('Runtime.enable', {}, sessionId)
      await page.goto(url)
      return page
    }
  }
}
