#!/usr/bin/env bash
# Run Eclipse Paho's interoperability client tests against
# `warbler start --dev` (and, with --mosquitto, against Mosquitto too): the
# MQTT 3.1.1 suite (client_test.py), or with --v5 the MQTT 5 one
# (client_test5.py; Warbler then runs with --topic-alias-maximum 10, as the
# suite uses topic aliases, --max-keep-alive 60: its test_server_keep_alive
# asks 120 s and expects a Server Keep Alive of 60, while its test_keepalive
# needs the 5 s it asks for, and --refusal-detail unspecified: its
# test_subscribe_failure takes only SUBACK 0x80, and its client's parser takes
# no properties on a PUBACK, which test_dollar_topics gets for its refused
# publish). With --each, every test of the suite runs on its
# own (a python process each, ended after 120 s), so one test that hangs or
# leaves state behind does not decide the others; a line per test and a count.
#   bash test/interop/run-paho.sh PATH/TO/paho.mqtt.testing/interoperability [--v5] [--each] [--mosquitto]
# The paho suite is not vendored: clone eclipse/paho.mqtt.testing yourself.
set -euo pipefail
interop=${1:?usage: run-paho.sh PAHO_INTEROP_DIR [--v5] [--each] [--mosquitto]}
shift
suite=3
mosquitto=no
each=no
for arg in "$@"; do
  case "$arg" in
    --v5) suite=5 ;;
    --each) each=yes ;;
    --mosquitto) mosquitto=yes ;;
    *) echo "run-paho.sh: unknown argument $arg (expected --v5, --each or --mosquitto)" >&2; exit 2 ;;
  esac
done
extra=()
if [ "$suite" = 5 ]; then extra=(--topic-alias-maximum 10 --max-keep-alive 60 --refusal-detail unspecified); fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
data=$(mktemp -d)
out=$(mktemp)
node "$root/dist/cli/warbler.js" start --dev --mqtt-port 0 --ws-port -1 --http-port -1 --data-dir "$data" "${extra[@]}" >"$out" 2>/dev/null &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data" "$out"; }
trap cleanup EXIT
# run_suite PORT: the whole suite in one process, or with --each every test alone.
run_suite() {
  if [ "$each" = no ]; then
    python3 "$here/paho.py" "$interop" 127.0.0.1 "$1" '$SYS/#' "$suite" || true
    return
  fi
  local passed=0 total=0 name
  for name in $(python3 "$here/paho.py" "$interop" 127.0.0.1 "$1" '$SYS/#' "$suite" list); do
    total=$((total + 1))
    if timeout 120 python3 "$here/paho.py" "$interop" 127.0.0.1 "$1" '$SYS/#' "$suite" "$name" >/dev/null 2>&1; then
      passed=$((passed + 1)); echo "pass $name"
    else
      echo "FAIL $name"
    fi
  done
  echo "paho interoperability, each test on its own: $passed of $total passed"
}
for _ in $(seq 100); do grep -q '^warbler ready' "$out" && break; sleep 0.1; done
port=$(sed -n 's/^warbler ready .*"mqtt":\([0-9]*\).*/\1/p' "$out")
echo "== warbler on port $port"
run_suite "$port"
if [ "$mosquitto" = yes ]; then
  mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  conf=$(mktemp)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$mport" >"$conf"
  mosquitto -c "$conf" >/dev/null 2>&1 &
  mpid=$!
  sleep 0.5
  echo "== mosquitto on port $mport"
  run_suite "$mport"
  kill "$mpid"; wait "$mpid" 2>/dev/null || true; rm -f "$conf"
fi
