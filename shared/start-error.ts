/**
 * Failures an operator can act on, each with its own exit code so that a
 * script or a service manager can tell them apart. The CLI prints the
 * message alone (one line, no stack trace) and exits with the code;
 * docs/operations.md lists the codes, and a test keeps the two in step.
 */
export const EXIT = {
  /** Stopped cleanly (also after SIGTERM or SIGINT). */
  ok: 0,
  /** The command failed; the message says why. A stack trace means a bug. */
  failed: 1,
  /** A bad command line, setting or config file. */
  usage: 2,
  /** Another Warbler process holds the data dir. */
  dataDirInUse: 3,
  /** A listener cannot bind its address and port. */
  listen: 4,
  /** The data dir or its database cannot be used. */
  dataDir: 5,
  /** Start-up did not finish within its bound. */
  startTimeout: 6,
  /** The compiled code is older than the sources beside it. */
  staleBuild: 7
} as const

export type ExitCode = (typeof EXIT)[keyof typeof EXIT]

export class StartError extends Error {
  override name = 'StartError'
  constructor (message: string, readonly exitCode: ExitCode = EXIT.failed) {
    super(message)
  }
}
