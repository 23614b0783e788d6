#!/usr/bin/env bash
# Machine-level set-up for windpark on a Debian machine (the python-svc kind):
# PostgreSQL 15 with TimescaleDB, RabbitMQ, and the broker vhosts windpark uses.
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
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  is_root || need_root "RabbitMQ is not installed" "apt-get install rabbitmq-server"
  log "installing RabbitMQ"
  apt_install rabbitmq-server
fi
if ! port_open 5672; then
  is_root || need_root "RabbitMQ is not running on 127.0.0.1:5672" "rabbitmq-server -detached"
  log "starting RabbitMQ"
  rabbitmq-server -detached
  wait_port 5672
fi
# The test suite gets its own vhost so that it never touches a running `make run`.
if is_root && command -v rabbitmqctl >/dev/null 2>&1; then
  if ! rabbitmqctl -q list_vhosts 2>/dev/null | grep -qx 'windpark-test'; then
    log "creating RabbitMQ vhost windpark-test"
    rabbitmqctl -q add_vhost windpark-test >/dev/null
    rabbitmqctl -q set_permissions -p windpark-test guest '.*' '.*' '.*' >/dev/null
  fi
fi
log "machine ready"
