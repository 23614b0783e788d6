#!/usr/bin/env bash
# Machine-level set-up for windpark on a Debian machine (the python-svc kind):
# PostgreSQL 15 with TimescaleDB, and windpark's own TLS-only RabbitMQ node
# (scripts/broker.sh) with its certificates and admin identity.
# Idempotent and quick when everything is already there; never asks a question.
# Installs and starts what is missing when run as root; otherwise says what to do.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PG_MAJOR="${WINDPARK_PG_MAJOR:-15}"
log() { printf '[setup-machine] %s\n' "$*"; }
is_root() { [ "$(id -u)" = 0 ]; }
need_root() {
  echo "windpark: $1 — run 'sudo make setup-machine' (or install it yourself: $2)" >&2
  exit 1
}
apt_install() {
  if [ ! -f /var/lib/apt/periodic/windpark-updated ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]; then
    apt-get update -qq
    mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/windpark-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 1; done
  echo "windpark: nothing listens on 127.0.0.1:$1 after 60 s" >&2; return 1
}

# PostgreSQL ------------------------------------------------------------------------------
if [ ! -x "/usr/lib/postgresql/${PG_MAJOR}/bin/postgres" ]; then
  is_root || need_root "PostgreSQL ${PG_MAJOR} is not installed" "apt-get install postgresql-${PG_MAJOR}"
  log "installing PostgreSQL ${PG_MAJOR}"
  apt_install "postgresql-${PG_MAJOR}"
fi
if ! port_open 5432; then
  is_root || need_root "PostgreSQL is not running on 127.0.0.1:5432" "pg_ctlcluster ${PG_MAJOR} main start"
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$PG_MAJOR" main start
  wait_port 5432
fi

# TimescaleDB (built from Debian's source package) -----------------------------------------
bash "$here/install-timescaledb.sh"
wait_port 5432

# RabbitMQ --------------------------------------------------------------------------------
# windpark runs its own node (windpark@localhost: AMQPS 5671, MQTTS 8883, TLS only) beside
# the machine's broker on 5672, which it leaves alone. The package gives the binaries.
if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
  is_root || need_root "RabbitMQ is not installed" "apt-get install rabbitmq-server"
  log "installing RabbitMQ"
  apt_install rabbitmq-server
fi
if ! command -v openssl >/dev/null 2>&1 || ! command -v curl >/dev/null 2>&1; then
  is_root || need_root "openssl and curl are needed for the broker's TLS" "apt-get install openssl curl"
  apt_install openssl curl ca-certificates
fi
# TLS material (var/tls), the admin secret (var/secrets/broker), the node itself.
bash "$here/broker.sh" start
log "machine ready"
