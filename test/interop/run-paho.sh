#!/usr/bin/env bash
# Run Eclipse Paho's interoperability client tests against
# `warbler start --dev` (and, with --mosquitto, against Mosquitto too): the
# MQTT 3.1.1 suite (client_test.py), or with --v5 the MQTT 5 one
# (client_test5.py; Warbler then runs with --topic-alias-maximum 10, as the
# suite uses topic aliases, and --max-keep-alive 60: its test_server_keep_alive
# asks 120 s and expects a Server Keep Alive of 60, while its test_keepalive
# needs the 5 s it asks for).
#   bash test/interop/run-paho.sh PATH/TO/paho.mqtt.testing/interoperability [--v5] [--mosquitto]
# The paho suite is not vendored: clone eclipse/paho.mqtt.testing yourself.
set -euo pipefail
interop=${1:?usage: run-paho.sh PAHO_INTEROP_DIR [--v5] [--mosquitto]}
shift
suite=3
mosquitto=no
for arg in "$@"; do
  case "$arg" in
    --v5) suite=5 ;;
    --mosquitto) mosquitto=yes ;;
    *) echo "run-paho.sh: unknown argument $arg (expected --v5 or --mosquitto)" >&2; exit 2 ;;
  esac
done
extra=()
if [ "$suite" = 5 ]; then extra=(--topic-alias-maximum 10 --max-keep-alive 60); fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
data=$(mktemp -d)
out=$(mktemp)
node "$root/dist/cli/warbler.js" start --dev --mqtt-port 0 --ws-port -1 --http-port -1 --data-dir "$data" "${extra[@]}" >"$out" 2>/dev/null &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$data" "$out"; }
trap cleanup EXIT
for _ in $(seq 100); do grep -q '^warbler ready' "$out" && break; sleep 0.1; done
port=$(sed -n 's/^warbler ready .*"mqtt":\([0-9]*\).*/\1/p' "$out")
echo "== warbler on port $port"
python3 "$here/paho.py" "$interop" 127.0.0.1 "$port" '$SYS/#' "$suite" || true
if [ "$mosquitto" = yes ]; then
  mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  conf=$(mktemp)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$mport" >"$conf"
  mosquitto -c "$conf" >/dev/null 2>&1 &
  mpid=$!
  sleep 0.5
  echo "== mosquitto on port $mport"
  python3 "$here/paho.py" "$interop" 127.0.0.1 "$mport" '$SYS/#' "$suite" || true
  kill "$mpid"; wait "$mpid" 2>/dev/null || true; rm -f "$conf"
fi
