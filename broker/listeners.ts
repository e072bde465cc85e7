/**
 * The MQTT listeners, each on by config: TCP, TLS, WebSocket and secure
 * WebSocket. Every connection goes through the guard (guard.ts) and then to
 * aedes. Port 0 binds a free port; `bound` reports the real one. Only the
 * configured listeners exist: a port of -1 turns one off, and the TLS pair
 * (mqtts, wss) exists only with tlsCert and tlsKey. With `proxyProtocol` the
 * plain pair (mqtt, ws) takes a PROXY protocol header first on every
 * connection (proxy-protocol.ts); a connection without one is closed and
 * reported to `refused`.
 */
import { readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import tls from 'node:tls'
import { createWebSocketStream, WebSocketServer } from 'ws'
import { type Config, ConfigError } from '../shared/config.js'
import { readProxyHeader } from './proxy-protocol.js'
import { EXIT, StartError } from '../shared/start-error.js'

export type ListenerName = 'mqtt' | 'mqtts' | 'ws' | 'wss'

export interface Listener {
  name: ListenerName
  server: net.Server
  close: () => Promise<void>
}

type Handle = (conn: Duplex, req?: http.IncomingMessage) => void
/** A connection closed before MQTT: its peer address and why. */
export type Refused = (peer: string, reason: string) => void

/** A server that reads each connection's PROXY protocol header, then hands the socket to `next`. */
function proxiedServer (refused: Refused, next: (socket: net.Socket) => void): net.Server {
  return net.createServer((socket) => {
    const peer = socket.remoteAddress ?? 'unknown'
    readProxyHeader(socket).then(() => { next(socket) }, (err: unknown) => {
      refused(peer, (err as Error).message)
      socket.destroy()
    })
  })
}

function streamServer (name: ListenerName, server: net.Server): Listener {
  return { name, server, close: () => closeServer(server) }
}

/** `front`: the server that listens, when it is not `server` itself (a PROXY protocol reader in front of it). */
function wsListener (name: ListenerName, server: http.Server, maxPacket: number, handle: Handle, front?: net.Server): Listener {
  const wss = new WebSocketServer({ server, maxPayload: maxPacket + 5, perMessageDeflate: false })
  // ws re-emits the HTTP server's errors (a port in use) on itself, where no
  // listener would crash the process; listen() reports them from the server.
  wss.on('error', () => {})
  wss.on('connection', (socket, req) => {
    const stream = createWebSocketStream(socket)
    stream.on('error', () => { socket.terminate() })
    handle(stream, req)
  })
  return {
    name,
    server: front ?? server,
    close: async () => {
      for (const c of wss.clients) c.terminate()
      await new Promise<void>((resolve) => wss.close(() => resolve()))
      if (front !== undefined) {
        // The HTTP server listens on nothing of its own: close what it holds, then the front.
        server.closeAllConnections()
        await closeServer(front)
      } else {
        await closeServer(server)
      }
    }
  }
}

/** Create (not yet bound) listeners for the configured ports. */
export function createListeners (cfg: Config, handle: Handle, refused: Refused = () => {}): Listener[] {
  const out: Listener[] = []
  const onSocket = (conn: net.Socket): void => {
    conn.setNoDelay(true)
    handle(conn)
  }
  if (cfg.mqttPort !== -1) out.push(streamServer('mqtt', cfg.proxyProtocol ? proxiedServer(refused, onSocket) : net.createServer(onSocket)))
  if (cfg.wsPort !== -1) {
    const server = http.createServer()
    // The HTTP server takes each socket once its header is read; it listens on no port of its own.
    const front = cfg.proxyProtocol ? proxiedServer(refused, (socket) => { server.emit('connection', socket) }) : undefined
    out.push(wsListener('ws', server, cfg.maxPacket, handle, front))
  }
  if (cfg.tls) {
    const creds = { cert: readFileSync(cfg.tlsCert), key: readFileSync(cfg.tlsKey) }
    try {
      // Fail at start, naming the setting, rather than on the first handshake.
      tls.createSecureContext(creds)
    } catch (err) {
      throw new ConfigError('tlsCert', `${cfg.tlsCert} and ${cfg.tlsKey} are not a usable PEM certificate and key: ${(err as Error).message}`)
    }
    if (cfg.mqttsPort !== -1) out.push(streamServer('mqtts', tls.createServer(creds, onSocket)))
    if (cfg.wssPort !== -1) out.push(wsListener('wss', https.createServer(creds), cfg.maxPacket, handle))
  }
  return out
}

export function portOf (l: Listener, cfg: Config): number {
  return { mqtt: cfg.mqttPort, mqtts: cfg.mqttsPort, ws: cfg.wsPort, wss: cfg.wssPort }[l.name]
}

const FLAG: Record<ListenerName | 'http', string> = { mqtt: '--mqtt-port', mqtts: '--mqtts-port', ws: '--ws-port', wss: '--wss-port', http: '--http-port' }

/** What an operator reads when a listener cannot bind: which one, where, why, and the setting that moves it. */
function listenError (err: Error, name: ListenerName | 'http', port: number, host: string): Error {
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`
  const flag = FLAG[name]
  switch ((err as NodeJS.ErrnoException).code) {
    case 'EADDRINUSE':
      return new StartError(`cannot listen for ${name} on ${where}: the port is in use (is another Warbler or Mosquitto running?); stop it, or choose another port with ${flag} (-1 turns this listener off)`, EXIT.listen)
    case 'EACCES':
      return new StartError(`cannot listen for ${name} on ${where}: this user may not bind that port (ports below 1024 need privileges); choose another with ${flag}`, EXIT.listen)
    case 'EADDRNOTAVAIL':
      return new StartError(`cannot listen for ${name} on ${where}: no network interface has the address ${host}; change ${name === 'http' ? '--http-host' : '--host'}`, EXIT.listen)
    default:
      return new StartError(`cannot listen for ${name} on ${where}: ${err.message}`, EXIT.listen)
  }
}

export function listen (server: net.Server, port: number, host: string, name?: ListenerName | 'http'): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(name === undefined ? err : listenError(err, name, port, host))
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      resolve((server.address() as net.AddressInfo).port)
    })
  })
}

export function closeServer (server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve()
    server.close(() => resolve())
    ;(server as { closeAllConnections?: () => void }).closeAllConnections?.()
  })
}
