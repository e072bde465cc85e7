#!/usr/bin/env bash
# Run the test suites of the aedes packages Warbler pins, against those exact
# versions: aedes (its unit tests), aedes-persistence (its abstract suite, over
# its in-memory persistence) and aedes-persistence-redis (the same abstract
# suite and its own tests, over a real redis-server started here on a free
# port). Not part of `npm test`: it needs the packages' sources with their
# devDependencies installed, which are not in this repository.
#   bash test/interop/run-aedes-suites.sh DIR...
# Each DIR is a source tree of one of the three packages (a git checkout of the
# release's tag, or the published tarball unpacked: `npm pack aedes@VERSION`;
# the published packages carry their tests) after `npm install` in it. The
# version in DIR/package.json must be the one in Warbler's package.json.
# aedes-persistence-redis' cluster test needs a six-node Redis Cluster on ports
# 6378 to 6384 and is not run.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: run-aedes-suites.sh DIR..." >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
pinned() { node -e 'const p=require(process.argv[1]); console.log(p.dependencies[process.argv[2]] ?? "")' "$root/package.json" "$1"; }
status=0
for dir in "$@"; do
  [ -f "$dir/package.json" ] || { echo "run-aedes-suites.sh: $dir has no package.json" >&2; exit 2; }
  dir=$(cd "$dir" && pwd)
  name=$(node -p 'require(process.argv[1]).name' "$dir/package.json")
  version=$(node -p 'require(process.argv[1]).version' "$dir/package.json")
  want=$(pinned "$name")
  if [ "$version" != "$want" ]; then
    echo "run-aedes-suites.sh: $dir is $name $version, Warbler pins ${want:-no $name}" >&2; exit 2
  fi
  [ -d "$dir/node_modules" ] || { echo "run-aedes-suites.sh: run npm install in $dir first" >&2; exit 2; }
  echo "== $name $version"
  case "$name" in
    aedes)
      # Its own script also runs eslint and markdownlint; only the tests here.
      (cd "$dir" && node --test --test-timeout=180000 test/*.js test/*.cjs) || status=1 ;;
    aedes-persistence)
      (cd "$dir" && node --test test/*.js) || status=1 ;;
    aedes-persistence-redis)
      # Its tests connect to Redis' default address; a preload points every
      # ioredis copy in it at a redis-server of its own on a free port.
      port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
      work=$(mktemp -d)
      redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
      rpid=$!
      for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
      {
        echo "const port = $port"
        find "$dir/node_modules" -path '*/ioredis/built/redis/RedisOptions.js' -printf 'require(%p).DEFAULT_REDIS_OPTIONS.port = port\n' | sed "s/require(\(.*\))\./require('\1')./"
      } >"$work/port.cjs"
      tests=$(cd "$dir" && ls test/*.js | grep -v '^test/cluster\.js$')
      # shellcheck disable=SC2086
      (cd "$dir" && NODE_OPTIONS="--require $work/port.cjs" node --test --test-timeout=180000 --test-concurrency=1 $tests) || status=1
      kill "$rpid"; wait "$rpid" 2>/dev/null || true; rm -rf "$work" ;;
    *) echo "run-aedes-suites.sh: $name is not one of aedes, aedes-persistence, aedes-persistence-redis" >&2; exit 2 ;;
  esac
done
exit "$status"
