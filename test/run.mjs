#!/usr/bin/env node
// The test command (`npm test` runs it after compiling): checks that the
// system programs the tests use are installed, failing at once with the
// apt-get line if not, then runs node's test runner over the compiled tests.
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const needed = [
  ['redis-server', 'redis-server'],
  ['mosquitto', 'mosquitto'],
  ['mosquitto_pub', 'mosquitto-clients'],
  ['mosquitto_sub', 'mosquitto-clients'],
  ['openssl', 'openssl'],
  ['chromium', 'chromium'],
  // test/deploy: the deploy files checked by the real tools
  ['promtool', 'prometheus'],
  ['prometheus', 'prometheus'],
  ['prometheus-redis-exporter', 'prometheus-redis-exporter'],
  ['haproxy', 'haproxy'],
  ['systemd-analyze', 'systemd'],
  ['docker-compose', 'docker-compose'],
  ['shellcheck', 'shellcheck'],
  // test/cluster: nodes in network namespaces (ip netns, veth) behind haproxy
  ['ip', 'iproute2']
]
const missing = needed.filter(([bin]) => spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0)
if (missing.length > 0) {
  const pkgs = [...new Set(missing.map(([, pkg]) => pkg))].join(' ')
  console.error(`Missing programs the tests need: ${missing.map(([b]) => b).join(', ')}.`)
  console.error(`Install them with: sudo apt-get update && sudo apt-get install -y ${pkgs}`)
  process.exit(1)
}

function find (dir) {
  const out = []
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name)
    if (statSync(p).isDirectory()) out.push(...find(p))
    else if (name.endsWith('.test.js')) out.push(p)
  }
  return out
}

// `npm test -- test/acl` runs only the compiled tests whose path contains one of the arguments.
const filters = process.argv.slice(2)
// Only compiled tests whose source is still there: dist/ keeps the output of a
// test file that was renamed or deleted until it is cleaned.
const sourceOf = (f) => path.join(root, path.relative(path.join(root, 'dist'), f)).replace(/\.js$/, '.ts')
let files = find(path.join(root, 'dist', 'test')).filter((f) => existsSync(sourceOf(f))).sort()
if (filters.length > 0) files = files.filter((f) => filters.some((x) => f.includes(x.replace(/\.ts$/, ''))))
if (files.length === 0) {
  console.error('no test files found (is the build up to date?)')
  process.exit(1)
}
const concurrency = process.env.WARBLER_TEST_CONCURRENCY ?? '2'
const r = spawnSync(process.execPath, ['--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...files], { stdio: 'inherit', cwd: root })
process.exit(r.status ?? 1)
