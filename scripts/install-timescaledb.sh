#!/usr/bin/env bash
# Installs the TimescaleDB extension into the machine's PostgreSQL 15 when it is missing.
#
# Debian ships TimescaleDB only as source (suite trixie). We build it against
# postgresql-server-dev-15 with the flags of Debian's own debian/rules (Apache
# edition, no telemetry), then preload the library and restart PostgreSQL.
# Idempotent: a second run checks two files and exits in well under a second.
set -euo pipefail

PG_MAJOR="${WINDPARK_PG_MAJOR:-15}"
PG_CONFIG="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"
CONF_DIR="/etc/postgresql/${PG_MAJOR}/main/conf.d"
PRELOAD_CONF="${CONF_DIR}/60-windpark-timescaledb.conf"
BUILD_ROOT="${WINDPARK_BUILD_DIR:-/var/cache/windpark/timescaledb-build}"
SRC_LIST="/etc/apt/sources.list.d/windpark-trixie-src.sources"

log() { printf '[timescaledb] %s\n' "$*"; }

extension_installed() {
  [ -x "$PG_CONFIG" ] && [ -f "$("$PG_CONFIG" --sharedir)/extension/timescaledb.control" ]
}

preload_configured() {
  [ -f "$PRELOAD_CONF" ]
}

pg_restart() {
  log "restarting PostgreSQL ${PG_MAJOR}"
  pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" main restart
}

if extension_installed && preload_configured; then
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "TimescaleDB is not installed and this script needs root to build it." >&2
  echo "Run: sudo $0" >&2
  exit 1
fi

if ! extension_installed; then
  # Reuse the URI of the machine's own Debian source (never name a mirror here).
  uri=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1=="deb" && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^(https?|mirror\+|file):/) {print $i; exit}}' /etc/apt/sources.list)
  fi
  if [ -z "$uri" ]; then
    echo "Cannot find the machine's Debian source URI in /etc/apt/sources.list(.d)." >&2
    exit 1
  fi
  if [ ! -f "$SRC_LIST" ]; then
    log "adding deb-src for trixie from ${uri}"
    cat > "$SRC_LIST" <<SRC
Types: deb-src
URIs: ${uri}
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  log "apt-get update"
  apt-get update -qq
  log "installing build dependencies"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "postgresql-server-dev-${PG_MAJOR}" cmake build-essential dpkg-dev libssl-dev >/dev/null
  rm -rf "$BUILD_ROOT"
  mkdir -p "$BUILD_ROOT"
  cd "$BUILD_ROOT"
  log "fetching the timescaledb source package"
  apt-get source -qq timescaledb >/dev/null
  src=$(find "$BUILD_ROOT" -maxdepth 1 -mindepth 1 -type d -name 'timescaledb-*' | head -n 1)
  [ -n "$src" ] || { echo "apt-get source produced no timescaledb-* folder" >&2; exit 1; }
  log "building $(basename "$src")"
  # The flags of Debian's debian/rules: Apache edition, telemetry off.
  cmake -S "$src" -B "$src/build" \
    -DPG_CONFIG="$PG_CONFIG" \
    -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
    -DAPACHE_ONLY=1 -DUSE_TELEMETRY=OFF -DSEND_TELEMETRY_DEFAULT=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  make -C "$src/build" -j"$(nproc)" >/dev/null
  make -C "$src/build" install >/dev/null
  log "installed $(ls "$("$PG_CONFIG" --sharedir)"/extension/timescaledb--*.sql | grep -v -- '--.*--' | tail -n 1 | xargs basename)"
fi

if ! preload_configured; then
  mkdir -p "$CONF_DIR"
  cat > "$PRELOAD_CONF" <<CONF
# Written by windpark's scripts/install-timescaledb.sh
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
CONF
  chown postgres:postgres "$PRELOAD_CONF" 2>/dev/null || true
  pg_restart
fi
log "ready"
