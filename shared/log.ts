/**
 * Structured logs, one JSON object a line, on stderr (stdout carries only the
 * `warbler ready` line). Callers never pass secrets: fields are explicit.
 */
export type Level = 'error' | 'warn' | 'info' | 'debug'
const order: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3 }

export interface Logger {
  error: (msg: string, fields?: Record<string, unknown>) => void
  warn: (msg: string, fields?: Record<string, unknown>) => void
  info: (msg: string, fields?: Record<string, unknown>) => void
  debug: (msg: string, fields?: Record<string, unknown>) => void
}

export function createLogger (level: Level, write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const max = order[level]
  const emit = (lvl: Level) => (msg: string, fields?: Record<string, unknown>) => {
    if (order[lvl] > max) return
    write(JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...fields }) + '\n')
  }
  return { error: emit('error'), warn: emit('warn'), info: emit('info'), debug: emit('debug') }
}
