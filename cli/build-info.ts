/**
 * Which sources the compiled code in dist/ was built from, so that the CLI
 * never runs old code silently: `npm run build` (and so `npm ci`, through
 * `prepare`) records a digest of every source file in dist/build-info.json,
 * and each `warbler` command compares it with the sources beside it before
 * it does anything. A checkout changed since the build (a `git pull`, an
 * edit) gets one line naming what changed and the command that rebuilds.
 *
 * Content digests, not modification times: a checkout that changes a file's
 * time but not its text (switching branches and back) is not stale, and one
 * that restores an older text with a newer time is.
 *
 * Run as a script (`node dist/cli/build-info.js`), it writes the record.
 */
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { EXIT, StartError } from '../shared/start-error.js'

/** The product's sources (tsconfig.json compiles these and test/, web/build.mjs web/src; tests do not change what the CLI runs). */
const SOURCE_DIRS = ['shared', 'broker', 'bridge', 'server', 'cli', 'bench', 'sdk/src', 'web/src']
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const RECORD = path.join(ROOT, 'dist', 'build-info.json')

interface BuildInfo { files: Record<string, string> }

function sourceFiles (dir: string, rel: string, out: string[]): void {
  let names: string[]
  try { names = readdirSync(dir) } catch { return }
  for (const name of names) {
    const p = path.join(dir, name)
    const r = `${rel}/${name}`
    if (statSync(p).isDirectory()) sourceFiles(p, r, out)
    else if (name.endsWith('.ts')) out.push(r)
  }
}

/** Digest of each source file, by its path from the repository root. */
export function digestSources (root = ROOT): Record<string, string> {
  const files: string[] = []
  for (const d of SOURCE_DIRS) sourceFiles(path.join(root, d), d, files)
  const out: Record<string, string> = {}
  for (const f of files.sort()) out[f] = createHash('sha256').update(readFileSync(path.join(root, f))).digest('hex').slice(0, 16)
  return out
}

/**
 * Throw a StartError (exit code 7) when the sources beside dist/ differ from
 * those it was built from. Without sources (an install of the compiled code
 * alone) there is nothing to compare.
 */
export function checkBuild (root = ROOT): void {
  if (!existsSync(path.join(root, 'broker')) || !existsSync(path.join(root, 'tsconfig.json'))) return
  let built: BuildInfo
  try {
    built = JSON.parse(readFileSync(path.join(root, 'dist', 'build-info.json'), 'utf8')) as BuildInfo
  } catch {
    throw new StartError('dist/ has no record of the sources it was built from; run `npm run build`', EXIT.staleBuild)
  }
  const now = digestSources(root)
  const changed = Object.keys(now).filter((f) => built.files[f] !== now[f])
  const removed = Object.keys(built.files).filter((f) => !(f in now))
  const all = [...changed, ...removed]
  if (all.length > 0) {
    const some = all.slice(0, 3).join(', ') + (all.length > 3 ? ` and ${all.length - 3} more` : '')
    throw new StartError(`the compiled code in dist/ is older than the sources (changed since the last build: ${some}); run \`npm run build\``, EXIT.staleBuild)
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const info: BuildInfo = { files: digestSources() }
  writeFileSync(RECORD, JSON.stringify(info) + '\n')
}
