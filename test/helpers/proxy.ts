/**
 * A TCP proxy on 127.0.0.1 that a test controls, between a client and a
 * broker, to make links fail the ways real networks do:
 * - `drop()`: close every connection at once (a Wi-Fi switch, a NAT reset);
 * - `block()` / `unblock()`: refuse new connections (the server is unreachable);
 * - `stall()` / `resume()`: stop moving bytes without closing anything (a dead
 *   link: only keepalives can notice it); new connections wait too;
 * - `retarget(port)`: send new connections to another upstream port (a broker
 *   restarted on a new port).
 * Nothing is forwarded after `close()`, which ends every socket it holds.
 */
import net from 'node:net'

interface Pair { client: net.Socket, upstream: net.Socket | null, dead: boolean }

export class TcpProxy {
  private readonly pairs = new Set<Pair>()
  private stalled = false
  private blocked = false
  /** Connections accepted so far (for assertions that clients came back). */
  accepted = 0

  private constructor (private readonly server: net.Server, readonly port: number, private upstreamPort: number) {}

  static async start (upstreamPort: number): Promise<TcpProxy> {
    const server = net.createServer()
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => resolve())
    })
    const proxy = new TcpProxy(server, (server.address() as net.AddressInfo).port, upstreamPort)
    server.on('connection', (socket) => proxy.accept(socket))
    return proxy
  }

  get url (): string { return `mqtt://127.0.0.1:${this.port}` }
  get upstream (): number { return this.upstreamPort }
  /** Connections currently held (client side open). */
  get open (): number { return [...this.pairs].filter((p) => !p.dead).length }

  private accept (client: net.Socket): void {
    this.accepted++
    client.setNoDelay(true)
    if (this.blocked) { client.destroy(); return }
    const pair: Pair = { client, upstream: null, dead: false }
    this.pairs.add(pair)
    client.on('error', () => this.kill(pair))
    client.on('close', () => this.kill(pair))
    if (this.stalled) { client.pause(); return } // connected upstream on resume()
    this.connectUpstream(pair)
  }

  private connectUpstream (pair: Pair): void {
    const up = net.connect(this.upstreamPort, '127.0.0.1')
    up.setNoDelay(true)
    pair.upstream = up
    up.on('error', () => this.kill(pair))
    up.on('close', () => this.kill(pair))
    this.forward(pair.client, up)
    this.forward(up, pair.client)
    if (this.stalled) { pair.client.pause(); up.pause() }
  }

  private forward (from: net.Socket, to: net.Socket): void {
    from.on('data', (d: Buffer) => {
      if (to.destroyed) return
      if (!to.write(d)) {
        from.pause()
        to.once('drain', () => { if (!this.stalled) from.resume() })
      }
    })
    from.on('end', () => { if (!to.destroyed) to.end() })
    from.resume()
  }

  /** One side went away: the other goes too, unless the link is stalled (a dead link carries no FIN either). */
  private kill (pair: Pair): void {
    if (pair.dead) return
    pair.dead = true
    if (this.stalled) return // torn down on resume() or drop()
    this.destroy(pair)
  }

  private destroy (pair: Pair): void {
    pair.dead = true
    pair.client.destroy()
    pair.upstream?.destroy()
    this.pairs.delete(pair)
  }

  /** Close every connection now (both sides see the close). */
  drop (): void {
    for (const p of [...this.pairs]) this.destroy(p)
  }

  /** Drop everything and refuse new connections (closed at once after accept) until unblock(). */
  block (): void {
    this.blocked = true
    this.drop()
  }

  unblock (): void { this.blocked = false }

  /** Stop forwarding, on open connections and new ones, without closing anything. */
  stall (): void {
    this.stalled = true
    for (const p of this.pairs) { p.client.pause(); p.upstream?.pause() }
  }

  /** Forward again; connections that ended meanwhile are closed on both sides. */
  resume (): void {
    this.stalled = false
    for (const p of [...this.pairs]) {
      if (p.dead) { this.destroy(p); continue }
      if (p.upstream === null) { this.connectUpstream(p); continue }
      p.client.resume()
      p.upstream.resume()
    }
  }

  /** New connections go to this upstream port from now on. */
  retarget (upstreamPort: number): void { this.upstreamPort = upstreamPort }

  async close (): Promise<void> {
    this.blocked = true
    this.stalled = false
    this.drop()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}
