#!/usr/bin/env bash
# Warbler's memory budget: splits a board's RAM between the OS, Redis, the
# message service (when it runs as its own process) and the broker, and
# derives the broker's V8 heap limit (--max-old-space-size) from its share.
#
#   memory-budget.sh [--ram-mb N] [--redis] [--bridge] [--monitoring] [--table]
#
# Without --ram-mb it reads MemTotal from /proc/meminfo. It prints shell
# assignments (KEY=VALUE, one a line) that install.sh sources, or with
# --table a markdown table for docs/operations.md.
#
# The rules (all in MB):
# - OS reserve: 1/8 of RAM, at least 384: kernel, page cache for SQLite,
#   sshd, journald; and TCP socket buffers, which the kernel allocates
#   outside the processes' heaps.
# - Redis (--redis): maxmemory = 1/8 of RAM, between 64 and 1024; its
#   systemd MemoryMax adds 25% for fragmentation and the AOF rewrite buffer.
# - Separate message service (--bridge): 256 (heap 160); SQLite's page cache
#   lives outside the V8 heap.
# - Monitoring on the same board (--monitoring: the compose stack's
#   Prometheus 384, Grafana 192, HAProxy 64, Redis exporter 32).
# - Broker: the rest, as its MemoryMax. Its heap is 60% of that, rounded
#   down to 64: the other 40% holds what V8 does not count in old space
#   (new space, code, Buffers for socket I/O, the embedded message
#   service's SQLite cache) and keeps the process from the cgroup OOM killer
#   before V8 has had a chance to collect.
# - MemoryHigh = 90% of MemoryMax: past it the kernel reclaims and slows
#   the process down before it is killed.
#
# Cluster mode: `--workers N` does not exist yet. When it lands, the
# broker's MemoryMax stays the budget of the whole service (all workers in
# one cgroup) and each worker's heap becomes BROKER_HEAP_MB / N.
set -euo pipefail

ram=""
redis=0
bridge=0
monitoring=0
table=0
while [ $# -gt 0 ]; do
  case "$1" in
    --ram-mb) ram="${2:-}"; shift 2 ;;
    --ram-mb=*) ram="${1#*=}"; shift ;;
    --redis) redis=1; shift ;;
    --bridge) bridge=1; shift ;;
    --monitoring) monitoring=1; shift ;;
    --table) table=1; shift ;;
    -h|--help) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "memory-budget.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

if [ -z "$ram" ]; then
  kb=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
  ram=$((kb / 1024))
fi
case "$ram" in
  ''|*[!0-9]*) echo "memory-budget.sh: --ram-mb needs a whole number of MB" >&2; exit 2 ;;
esac
if [ "$ram" -lt 1000 ]; then
  echo "memory-budget.sh: ${ram} MB is below the 1 GB Warbler needs with the OS" >&2
  exit 1
fi

clamp () { local v=$1 lo=$2 hi=$3; [ "$v" -lt "$lo" ] && v=$lo; [ "$v" -gt "$hi" ] && v=$hi; echo "$v"; }

os=$(clamp $((ram / 8)) 384 1024)
redis_max=0
redis_cg=0
if [ "$redis" = 1 ]; then
  redis_max=$(clamp $((ram / 8)) 64 1024)
  redis_cg=$((redis_max * 5 / 4))
fi
bridge_cg=0
bridge_heap=0
if [ "$bridge" = 1 ]; then bridge_cg=256; bridge_heap=160; fi
mon=0
if [ "$monitoring" = 1 ]; then mon=$((384 + 192 + 64 + 32)); fi

broker=$((ram - os - redis_cg - bridge_cg - mon))
if [ "$broker" -lt 256 ]; then
  echo "memory-budget.sh: only ${broker} MB left for the broker on ${ram} MB; run less beside it (--redis, --bridge, --monitoring) or use a bigger board" >&2
  exit 1
fi
heap=$((broker * 60 / 100 / 64 * 64))
high=$((broker * 90 / 100))

if [ "$table" = 1 ]; then
  echo "| part | MB |"
  echo "|---|---|"
  echo "| RAM | $ram |"
  echo "| OS reserve (kernel, page cache, socket buffers) | $os |"
  [ "$redis" = 1 ] && echo "| Redis (maxmemory $redis_max + 25%) | $redis_cg |"
  [ "$bridge" = 1 ] && echo "| message service, separate (heap $bridge_heap) | $bridge_cg |"
  [ "$monitoring" = 1 ] && echo "| Prometheus, Grafana, HAProxy, Redis exporter | $mon |"
  echo "| broker MemoryMax | $broker |"
  echo "| broker MemoryHigh | $high |"
  echo "| broker heap (--max-old-space-size) | $heap |"
  exit 0
fi

cat <<EOF
RAM_MB=$ram
OS_RESERVE_MB=$os
REDIS_MAXMEMORY_MB=$redis_max
REDIS_MEMORY_MAX_MB=$redis_cg
BRIDGE_MEMORY_MAX_MB=$bridge_cg
BRIDGE_HEAP_MB=$bridge_heap
MONITORING_MB=$mon
BROKER_MEMORY_MAX_MB=$broker
BROKER_MEMORY_HIGH_MB=$high
BROKER_HEAP_MB=$heap
EOF
