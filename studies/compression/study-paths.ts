/** Where the study finds the repository from its compiled file (dist/studies/compression/). */
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..')
export const DOC = path.join(ROOT, 'docs', 'benchmarks.md')
