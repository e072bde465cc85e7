#!/usr/bin/env bash
# Install Warbler as a systemd service on Raspberry Pi OS or Debian (bookworm
# or later; arm64, amd64). Run from a checkout of the repository:
#
#   sudo deploy/pi/install.sh [options]
#
# Options:
#   --dry-run            print every step and change nothing
#   --with-redis         install Redis on this board (maxmemory from the memory
#                        budget, volatile-lru, AOF) and start Warbler with it
#   --separate-bridge    run the message service as its own unit
#                        (warbler-bridge.service; the broker gets --bridge off)
#   --node MODE          how to get Node.js >= 20.17 if the installed one is
#                        older or missing: auto (default: Debian's nodejs when
#                        its version is enough, as on trixie; NodeSource's
#                        node_20.x repository otherwise, as on bookworm, whose
#                        nodejs is 18), debian, nodesource, or none (fail)
#   --ram-mb N           size the memory budget for N MB instead of this board
#   --root DIR           place the files under DIR instead of / and skip every
#                        system step (packages, user, services, sysctl): for
#                        building an image, or for tests
#   --no-build           do not install npm packages nor build the app
#   -h, --help
#
# Re-running is safe: the app is rebuilt beside the running one and swapped
# in, units, wrapper, sysctl and budget are rewritten, and the config files
# (/etc/warbler/warbler.json, warbler.env, bridge-password, metrics-token)
# are created once and never overwritten.
set -euo pipefail

MIN_NODE=20.17.0
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)

dry_run=0
with_redis=0
separate_bridge=0
node_mode=auto
ram_mb=""
root=/
build=1

usage () { sed -n '2,29p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die () { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1; shift ;;
    --with-redis) with_redis=1; shift ;;
    --separate-bridge) separate_bridge=1; shift ;;
    --node) node_mode="${2:-}"; shift 2 ;;
    --node=*) node_mode="${1#*=}"; shift ;;
    --ram-mb) ram_mb="${2:-}"; shift 2 ;;
    --ram-mb=*) ram_mb="${1#*=}"; shift ;;
    --root) root="${2:-}"; shift 2 ;;
    --root=*) root="${1#*=}"; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option $1" ;;
  esac
done
case "$node_mode" in auto|debian|nodesource|none) ;; *) die "--node must be auto, debian, nodesource or none" ;; esac
[ -n "$root" ] || die "--root needs a directory"

# Where files go: $P/etc/..., $P/opt/... ("" for the real root).
if [ "$root" = / ]; then
  P=""
  system=1
else
  [ -d "$root" ] || die "--root $root is not a directory"
  P=$(cd "$root" && pwd)
  system=0
fi

APP=/opt/warbler
DATA=/var/lib/warbler
BACKUPS=/var/backups/warbler
ETC=/etc/warbler
UNITS=/etc/systemd/system
# What the app needs to build and run; the Dockerfile copies the same list.
APP_SOURCES=(package.json package-lock.json tsconfig.json shared broker bridge server cli bench sdk/package.json sdk/tsconfig.json sdk/src docs)

step () { printf '\n== %s\n' "$*"; }
note () { printf '   %s\n' "$*"; }
# Run a command that changes the system, or print it in a dry run.
run () {
  if [ "$dry_run" = 1 ]; then printf '   + %s\n' "$*"; else "$@"; fi
}
# A system step: skipped (and said so) with --root.
sys () {
  if [ "$system" = 0 ]; then printf '   skipped (--root): %s\n' "$*"; return 0; fi
  run "$@"
}
# put SRC DEST MODE [OWNER]: install a file (always rewritten).
put () {
  local srcf=$1 dest=$P$2 mode=$3 owner=${4:-}
  if [ "$dry_run" = 1 ]; then printf '   + install %s -> %s (%s%s)\n' "${srcf#"$src"/}" "$dest" "$mode" "${owner:+ $owner}"; return 0; fi
  install -D -m "$mode" "$srcf" "$dest"
  if [ -n "$owner" ] && [ "$system" = 1 ]; then chown "$owner" "$dest"; fi
}
# put_once SRC DEST MODE [OWNER]: install a file only if there is none yet.
put_once () {
  if [ -e "$P$2" ]; then note "kept $P$2 (exists)"; return 0; fi
  put "$@"
}
# put_text DEST MODE [OWNER] < TEXT: write generated text (always rewritten).
put_text () {
  local tmp
  tmp=$(mktemp)
  cat > "$tmp"
  if [ "$dry_run" = 1 ]; then
    printf '   + write %s (%s):\n' "$P$1" "$2"
    if [ "${SECRET:-0}" = 1 ]; then echo '       | (a secret, not shown)'; else sed 's/^/       | /' "$tmp"; fi
  else
    put "$tmp" "$@"
  fi
  rm -f "$tmp"
}
# mkdir_owned DIR MODE [OWNER]
mkdir_owned () {
  local dir=$P$1 mode=$2 owner=${3:-}
  run install -d -m "$mode" "$dir"
  if [ -n "$owner" ] && [ "$system" = 1 ]; then run chown "$owner" "$dir"; fi
}

version_ge () { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }
node_version () { command -v node >/dev/null 2>&1 && node --version 2>/dev/null | sed 's/^v//'; }

# ---------------------------------------------------------------------------
step "Checks"
if ! grep -qs '"name": "warbler"' "$src/package.json"; then die "run me from a Warbler checkout ($src has no Warbler package.json)"; fi
if [ "$system" = 1 ] && [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then die "run as root (sudo), or with --dry-run"; fi
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  . /etc/os-release
  note "system: ${PRETTY_NAME:-unknown}"
  case " ${ID:-} ${ID_LIKE:-} " in *" debian "*) ;; *) note "warning: not a Debian system; apt steps may fail" ;; esac
fi
arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
case "$arch" in
  arm64|aarch64|amd64|x86_64) note "architecture: $arch" ;;
  *) note "warning: architecture $arch is untested (Node.js 20 builds exist for arm64 and amd64)" ;;
esac
[ "$dry_run" = 1 ] && note "dry run: nothing will be changed"
[ "$system" = 0 ] && note "files only, under $P (--root): packages, user, services and sysctl are skipped"

# ---------------------------------------------------------------------------
step "Memory budget"
budget_args=()
[ -n "$ram_mb" ] && budget_args+=(--ram-mb "$ram_mb")
[ "$with_redis" = 1 ] && budget_args+=(--redis)
[ "$separate_bridge" = 1 ] && budget_args+=(--bridge)
budget=$("$here/memory-budget.sh" "${budget_args[@]}")
eval "$budget"
# shellcheck disable=SC2153 # RAM_MB and the others come from the eval above
note "RAM ${RAM_MB} MB: broker MemoryMax ${BROKER_MEMORY_MAX_MB} MB, heap ${BROKER_HEAP_MB} MB; Redis maxmemory ${REDIS_MAXMEMORY_MB} MB; OS ${OS_RESERVE_MB} MB"

# ---------------------------------------------------------------------------
step "Packages"
pkgs=(ca-certificates curl gnupg build-essential python3 sqlite3)
[ "$with_redis" = 1 ] && pkgs+=(redis-server)
sys env DEBIAN_FRONTEND=noninteractive apt-get update -q
sys env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}"

# ---------------------------------------------------------------------------
step "Node.js >= $MIN_NODE"
have=$(node_version || true)
if [ -n "$have" ] && version_ge "$have" "$MIN_NODE"; then
  note "node $have at $(command -v node): enough"
elif [ "$system" = 0 ]; then
  note "node ${have:-missing}: not enough, but --root installs no packages"
else
  mode=$node_mode
  if [ "$mode" = auto ]; then
    cand=$(apt-cache policy nodejs 2>/dev/null | awk '/Candidate:/ { print $2 }' | sed 's/^[0-9]*://; s/[~+-].*//')
    if [ -n "$cand" ] && [ "$cand" != "(none)" ] && version_ge "$cand" "$MIN_NODE"; then mode=debian; else mode=nodesource; fi
    note "node ${have:-missing}; Debian offers nodejs ${cand:-none}: using $mode"
  fi
  case "$mode" in
    none) die "node ${have:-missing} is older than $MIN_NODE and --node none was given" ;;
    debian) sys env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm ;;
    nodesource)
      # NodeSource's signed repository for Node.js 20 (the same for every
      # Debian release: "nodistro"); its nodejs package includes npm.
      sys install -d -m 0755 /etc/apt/keyrings
      sys sh -c 'curl -fsSL https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key | gpg --dearmor --yes -o /etc/apt/keyrings/nodesource.gpg'
      sys sh -c 'echo "deb [signed-by=/etc/apt/keyrings/nodesource.gpg] https://deb.nodesource.com/node_20.x nodistro main" > /etc/apt/sources.list.d/nodesource.list'
      sys env DEBIAN_FRONTEND=noninteractive apt-get update -q
      sys env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs
      ;;
  esac
  if [ "$dry_run" = 0 ]; then
    have=$(node_version || true)
    { [ -n "$have" ] && version_ge "$have" "$MIN_NODE"; } || die "node ${have:-missing} after the install; Warbler needs >= $MIN_NODE"
    note "node $have"
  fi
fi
node_bin=$(command -v node || echo /usr/bin/node)

# ---------------------------------------------------------------------------
step "User and directories"
if [ "$system" = 1 ] && id -u warbler >/dev/null 2>&1; then
  note "user warbler exists"
else
  sys useradd --system --user-group --home-dir "$DATA" --no-create-home --shell /usr/sbin/nologin warbler
fi
mkdir_owned "$DATA" 0700 warbler:warbler
mkdir_owned "$BACKUPS" 0700 warbler:warbler
mkdir_owned "$ETC" 0750 root:warbler

# ---------------------------------------------------------------------------
step "Application in $APP"
if [ "$build" = 0 ]; then
  note "skipped (--no-build)"
else
  stage=$P$APP.new
  run rm -rf "$stage"
  run install -d -m 0755 "$stage"
  for s in "${APP_SOURCES[@]}"; do
    [ "$(dirname "$s")" = . ] || run install -d -m 0755 "$stage/$(dirname "$s")"
    run cp -R "$src/$s" "$stage/$s"
  done
  # Dev dependencies too: the build needs TypeScript. npm ci runs the
  # package's prepare script, which is the build (tsc). sqlite3 is compiled
  # here (build-essential, python3) against the installed Node's headers,
  # not downloaded as a prebuilt binary.
  npm_env=(env npm_config_build_from_source=true npm_config_update_notifier=false)
  [ -f /usr/include/node/common.gypi ] && npm_env+=(npm_config_nodedir=/usr)
  run sh -c "cd '$stage' && ${npm_env[*]} npm ci --no-audit --no-fund"
  run test -f "$stage/dist/cli/warbler.js"
  # Then drop what only the build needed.
  run sh -c "cd '$stage' && npm prune --omit=dev --no-audit --no-fund"
  run "$node_bin" "$stage/dist/cli/warbler.js" start --help
  run chmod -R go-w "$stage"
  # Swap: the previous build stays as $APP.old until the next install.
  run rm -rf "$P$APP.old"
  if [ -e "$P$APP" ]; then run mv "$P$APP" "$P$APP.old"; fi
  run mv "$stage" "$P$APP"
fi

# ---------------------------------------------------------------------------
step "Commands"
put_text /usr/local/bin/warbler 0755 <<EOF
#!/bin/sh
# The warbler command, written by deploy/pi/install.sh. Run it as the
# warbler user: sudo -u warbler warbler user add alice
export WARBLER_DATA_DIR="\${WARBLER_DATA_DIR:-$DATA}"
export WARBLER_CONFIG="\${WARBLER_CONFIG:-$ETC/warbler.json}"
exec $node_bin $APP/dist/cli/warbler.js "\$@"
EOF
put "$here/warbler-backup.sh" /usr/local/bin/warbler-backup 0755

# ---------------------------------------------------------------------------
step "Configuration in $ETC"
put_once "$here/warbler.json" "$ETC/warbler.json" 0640 root:warbler
put_once "$here/warbler.env" "$ETC/warbler.env" 0640 root:warbler
# The token /metrics asks for (warbler.service hands it over as a credential);
# a Prometheus that scrapes this board needs a copy. 32 random bytes as hex.
if [ -e "$P$ETC/metrics-token" ]; then
  note "kept $P$ETC/metrics-token (exists)"
else
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' | SECRET=1 put_text "$ETC/metrics-token" 0600 root:root
fi
if [ "$separate_bridge" = 1 ]; then
  if [ -e "$P$ETC/bridge-password" ]; then
    note "kept $P$ETC/bridge-password (exists)"
  else
    # 24 random bytes as 48 hex digits; never printed, not even in a dry run.
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' | SECRET=1 put_text "$ETC/bridge-password" 0600 root:root
  fi
fi

# ---------------------------------------------------------------------------
step "systemd units"
for u in warbler.service warbler-bridge.service warbler-backup.service warbler-backup.timer; do
  put "$here/systemd/$u" "$UNITS/$u" 0644
done
# The board's budget and the options chosen, over the units' defaults.
{
  echo "# Written by deploy/pi/install.sh from memory-budget.sh; rewritten on every run."
  echo "[Service]"
  echo "MemoryMax=${BROKER_MEMORY_MAX_MB}M"
  echo "MemoryHigh=${BROKER_MEMORY_HIGH_MB}M"
  echo "Environment=NODE_OPTIONS=--max-old-space-size=${BROKER_HEAP_MB}"
  if [ "$with_redis" = 1 ]; then echo "Environment=WARBLER_REDIS=redis://127.0.0.1:6379/0"; fi
  if [ "$separate_bridge" = 1 ]; then echo "Environment=WARBLER_BRIDGE=off"; fi
} | put_text "$UNITS/warbler.service.d/10-install.conf" 0644
if [ "$separate_bridge" = 1 ]; then
  {
    echo "# Written by deploy/pi/install.sh from memory-budget.sh; rewritten on every run."
    echo "[Service]"
    echo "MemoryMax=${BRIDGE_MEMORY_MAX_MB}M"
    echo "Environment=NODE_OPTIONS=--max-old-space-size=${BRIDGE_HEAP_MB}"
    if [ "$with_redis" = 1 ]; then echo "Environment=WARBLER_REDIS=redis://127.0.0.1:6379/0"; fi
  } | put_text "$UNITS/warbler-bridge.service.d/10-install.conf" 0644
fi

# ---------------------------------------------------------------------------
step "Kernel and limits"
put "$here/99-warbler.conf" /etc/sysctl.d/99-warbler.conf 0644
put "$here/limits.conf" /etc/security/limits.d/warbler.conf 0644
sys systemctl restart systemd-sysctl.service

# ---------------------------------------------------------------------------
if [ "$with_redis" = 1 ]; then
  step "Redis"
  sed "s/@MAXMEMORY@/${REDIS_MAXMEMORY_MB}/" "$here/redis-warbler.conf" | put_text /etc/redis/warbler.conf 0640 redis:redis
  if [ "$system" = 1 ] && grep -qxF 'include /etc/redis/warbler.conf' /etc/redis/redis.conf 2>/dev/null; then
    note "/etc/redis/redis.conf includes warbler.conf already"
  else
    sys sh -c 'echo "include /etc/redis/warbler.conf" >> /etc/redis/redis.conf'
  fi
  printf '# Written by deploy/pi/install.sh\n[Service]\nMemoryMax=%sM\n' "$REDIS_MEMORY_MAX_MB" \
    | put_text /etc/systemd/system/redis-server.service.d/10-warbler.conf 0644
fi

# ---------------------------------------------------------------------------
step "Services"
sys systemctl daemon-reload
if [ "$with_redis" = 1 ]; then
  sys systemctl enable redis-server.service
  sys systemctl restart redis-server.service
fi
sys systemctl enable warbler.service warbler-backup.timer
# restart: picks up a new build and new settings; starts it if stopped. The
# first start creates the user admin (password in $DATA/initial-admin-password).
sys systemctl restart warbler.service
sys systemctl start warbler-backup.timer
if [ "$separate_bridge" = 1 ]; then
  # The service user, once the first start has made the admin (a user made
  # before it would stop the first start from making one).
  if [ "$system" = 1 ] && [ "$dry_run" = 0 ]; then
    for _ in $(seq 1 30); do
      runuser -u warbler -- /usr/local/bin/warbler user list 2>/dev/null | grep -q . && break
      sleep 1
    done
    if runuser -u warbler -- /usr/local/bin/warbler user list | grep -qw bridge; then
      runuser -u warbler -- /usr/local/bin/warbler user passwd bridge --password-stdin < "$ETC/bridge-password" >/dev/null
    else
      runuser -u warbler -- /usr/local/bin/warbler user add bridge --service --password-stdin < "$ETC/bridge-password" >/dev/null
    fi
  else
    sys runuser -u warbler -- /usr/local/bin/warbler user add bridge --service --password-stdin
  fi
  sys systemctl enable warbler-bridge.service
  sys systemctl restart warbler-bridge.service
else
  sys systemctl disable --now warbler-bridge.service
fi

step "Done"
note "status:   systemctl status warbler; journalctl -u warbler -f"
note "admin:    sudo cat $DATA/initial-admin-password (first install), then"
note "          sudo -u warbler warbler user passwd admin && sudo rm $DATA/initial-admin-password"
note "health:   curl -s http://127.0.0.1:8080/readyz; metrics on /metrics"
note "backups:  $BACKUPS, daily (systemctl list-timers warbler-backup.timer)"
