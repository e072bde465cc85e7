/**
 * CONNECT: preConnect installs the connection's slow-consumer watch
 * (guard.ts) before any packet goes out; authenticate checks the login
 * (auth.ts) and attaches the session every later hook reads.
 */
import type { AedesOptions } from 'aedes'
import { authenticateError, clientOfConnection } from '../aedes-internals.js'
import { AuthRefused } from '../auth.js'
import { watchWrites, type WriteWatchOptions } from '../guard.js'
import { markClose, noteTakeover } from '../login-log.js'
import { connackReason, isMqtt5, refuseConnect } from '../reason-codes.js'
import { applyConnectCaps } from './connect-caps.js'
import { setSession } from '../session.js'
import type { ConnectionStates } from './connection-state.js'
import type { HookDeps } from './deps.js'

type ConnectHooks = Required<Pick<AedesOptions, 'preConnect' | 'authenticate'>>

export function createConnectHooks (d: HookDeps, states: ConnectionStates): ConnectHooks {
  const { cfg, auth, stats, log } = d
  /** Shared by every connection's watch: nothing is made per connection but the watch itself. */
  const watchOptions: WriteWatchOptions = {
    limit: cfg.slowConsumerBytes,
    drainTimeoutMs: cfg.drainTimeout * 1000,
    onSlow: (conn, buffered) => {
      stats.refuse('slow_consumer')
      const client = clientOfConnection(conn)
      markClose(client, 'slow consumer')
      log.info('slow consumer disconnected', { clientId: client?.id, buffered, reason: 'not drained in time' })
      conn.destroy()
    }
  }

  return {
    preConnect (client, packet, done) {
      auth.noteConnect(client, packet)
      if (packet.protocolVersion === 5) applyConnectCaps(cfg, stats, client, packet)
      states.of(client).watch = watchWrites(client.conn, watchOptions)
      done(null, true)
    },

    authenticate (client, username, password, done) {
      auth.authenticate(client, username, password).then((session) => {
        setSession(client, session)
        noteTakeover(d.broker(), client)
        stats.connectionsTotal++
        done(null, true)
      }, (err: unknown) => {
        if (err instanceof AuthRefused) {
          stats.refuse(err.reason)
          const answer = authenticateError(err.message, err.returnCode)
          // MQTT 5: the precise reason code and the reason string, which
          // aedes' CONNACK (mapped from the 3.1.1 code) would not carry.
          if (isMqtt5(client)) refuseConnect(client, connackReason(err.reason, err.why), err.message, () => { done(answer, false) })
          else done(answer, false)
          return
        }
        log.error('authentication error', { error: String(err) })
        done(authenticateError('server unavailable', 3), false)
      })
    }
  }
}
