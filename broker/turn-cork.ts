/**
 * One socket write per connection per event-loop turn. aedes writes each
 * packet on its own (mqtt-packet corks a packet's pieces until the next
 * tick only), and under load a client's packets of one turn (its PUBACK, the
 * batch frames of a commit on its feeds, the acks on its device feed) come
 * from different callbacks and promise continuations: each was a system call
 * of its own, and a wake-up of the reader on the other side. Corked at the
 * turn's first write and uncorked in the turn's check phase (setImmediate),
 * they leave as one writev. A connection destroyed meanwhile is uncorked
 * first, so a last packet (a refusal's CONNACK, a DISCONNECT) still leaves;
 * end() uncorks by itself.
 */
import type net from 'node:net'

export function corkPerTurn (conn: net.Socket): void {
  let corked = false
  const flush = (): void => {
    if (!corked) return
    corked = false
    conn.uncork()
  }
  const write = conn.write.bind(conn) as (...args: unknown[]) => boolean
  conn.write = (...args: unknown[]): boolean => {
    if (!corked && !conn.destroyed) {
      corked = true
      conn.cork()
      setImmediate(flush)
    }
    return write(...args)
  }
  const destroy = conn.destroy.bind(conn)
  conn.destroy = (err?: Error): net.Socket => {
    flush()
    return destroy(err)
  }
}
