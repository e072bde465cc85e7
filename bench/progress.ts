/**
 * The live progress line of `warbler bench` on stderr, and the number format
 * its fields use.
 */

/** A whole number with thousands separators ('-' when not finite). */
export const fmt0 = (n: number): string => Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-'

/** The live line on stderr: rewritten in place on a terminal, a plain line every few seconds otherwise. */
export class Progress {
  private lastPlain = 0
  private shown = false
  readonly tty = process.stderr.isTTY === true
  constructor (private readonly head: string) {}

  update (phase: string, elapsedS: number, fields: string): void {
    const line = `${this.head}  ${phase}  ${elapsedS.toFixed(1)}s  ${fields}`
    if (this.tty) {
      process.stderr.write(`\r${line.slice(0, (process.stderr.columns ?? 120) - 1)}\x1b[K`)
      this.shown = true
    } else if (Date.now() - this.lastPlain >= 3000) {
      process.stderr.write(line + '\n')
      this.lastPlain = Date.now()
    }
  }

  /** A line that stays (ends the live line first). */
  say (text: string): void {
    if (this.tty && this.shown) process.stderr.write('\r\x1b[K')
    this.shown = false
    process.stderr.write(`${this.head}  ${text}\n`)
  }
}
