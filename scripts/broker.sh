#!/usr/bin/env bash
# windpark's own RabbitMQ node: `scripts/broker.sh start|stop|restart|status`.
#
# A second node, windpark@localhost, beside the machine's own broker (rabbit@localhost on
# 5672, which this script never touches). It shares the machine's epmd and Erlang cookie
# and runs as the `rabbitmq` user; its database, logs and configuration live in
# WINDPARK_BROKER_HOME (default /var/lib/windpark-broker).
#
# Profiles (WINDPARK_BROKER_PROFILE):
#   secure (default)  AMQPS 127.0.0.1:5671, MQTTS 127.0.0.1:8883, management HTTPS
#                     127.0.0.1:15671; no plain listener at all. TLS 1.2 and 1.3 only.
#   dev               the same, plus plain AMQP 127.0.0.1:5673 and MQTT 127.0.0.1:1884 for
#                     local debugging tools that cannot speak TLS. Never 5672/1883: those
#                     belong to the machine's broker and to Mosquitto.
# Switching profile restarts the node (start notices the configuration changed).
#
# Identities: the node is created with one user, windpark-admin (administrator), whose
# password is var/secrets/broker/windpark-admin; `guest` never exists. Everything else
# (service and turbine users, permissions) is `windpark setup`'s job, over the
# management API. See docs/security.md.
#
# Idempotent: `start` on a running node with unchanged configuration and certificates
# checks and returns in well under a second.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"

NODE="windpark@localhost"
PROFILE="${WINDPARK_BROKER_PROFILE:-secure}"
BROKER_HOME="${WINDPARK_BROKER_HOME:-/var/lib/windpark-broker}"
# Client-side material, where the services look for it (windpark/settings.py):
# var/tls/ca.crt and var/secrets/broker/<user> in the checkout.
TLS_DIR="${WINDPARK_TLS_DIR:-$root/var/tls}"
TLS_PRIVATE_DIR="${WINDPARK_TLS_PRIVATE_DIR:-$TLS_DIR/private}"
SECRETS_DIR="${WINDPARK_BROKER_SECRETS_DIR:-$root/var/secrets/broker}"
# A machine has one windpark node, hence one CA and one set of identities: var/tls and
# var/secrets of every checkout are links to this folder, so that two checkouts (a clean
# clone beside a working copy) never fight over the node's certificate and passwords.
STATE_DIR="${WINDPARK_STATE_DIR:-/var/lib/windpark}"
ADMIN_USER="windpark-admin"
VHOSTS=(windpark windpark-test)
AMQPS_PORT=5671
MQTTS_PORT=8883
MGMT_PORT=15671
DEV_AMQP_PORT=5673
DEV_MQTT_PORT=1884
# The machine's node uses 25672; the CLI tools use 35672-35682.
DIST_PORT=25673
RMQ_BIN=/usr/lib/rabbitmq/bin
RMQ_USER=rabbitmq
# The machine's node reads this cookie too: one cookie lets the same CLI reach both nodes.
RMQ_HOME=/var/lib/rabbitmq
PID_FILE="$BROKER_HOME/windpark.pid"
ENV_FILE="$BROKER_HOME/rabbitmq-env.conf"
CONF_FILE="$BROKER_HOME/rabbitmq.conf"

log() { printf '[broker] %s\n' "$*"; }
die() { printf 'windpark broker: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

case "$PROFILE" in
  secure | dev) ;;
  *) die "WINDPARK_BROKER_PROFILE must be 'secure' or 'dev', not '$PROFILE'" ;;
esac

# rabbitmqctl against our node only, as the rabbitmq user (its cookie), with our env file
# so the machine's /etc/rabbitmq/rabbitmq-env.conf (NODENAME=rabbit@localhost) is not read.
# Every Erlang VM (the node, each rabbitmqctl) looks modules up in its working directory
# first: started from a checkout the rabbitmq user cannot read (a home directory), each
# lookup prints an `erl_prim_loader ... eacces` line. So they start from its own home.
ctl() {
  (cd "$RMQ_HOME" && runuser -u "$RMQ_USER" -- env HOME="$RMQ_HOME" \
    RABBITMQ_CONF_ENV_FILE="$ENV_FILE" "$RMQ_BIN/rabbitmqctl" -q -n "$NODE" "$@")
}

node_pid() {
  local pid
  [ -s "$PID_FILE" ] || return 1
  pid="$(cat "$PID_FILE")"
  kill -0 "$pid" 2>/dev/null || return 1
  printf '%s' "$pid"
}

running() {
  # The pid file is readable by root and rabbitmq only; others can only see the port.
  if is_root; then node_pid >/dev/null && port_open "$AMQPS_PORT"; else port_open "$AMQPS_PORT"; fi
}

link_machine_state() {
  # Only for the default layout: explicit WINDPARK_TLS_DIR / WINDPARK_BROKER_SECRETS_DIR win.
  [ -z "${WINDPARK_TLS_DIR:-}${WINDPARK_TLS_PRIVATE_DIR:-}${WINDPARK_BROKER_SECRETS_DIR:-}" ] || return 0
  install -d -m 0755 "$STATE_DIR"
  install -d -m 0700 "$root/var"
  local name link target
  for name in tls secrets; do
    link="$root/var/$name"
    target="$STATE_DIR/$name"
    [ -L "$link" ] && [ "$(readlink "$link")" = "$target" ] && continue
    if [ -d "$link" ] && [ ! -L "$link" ]; then
      if [ -e "$target" ]; then
        # The machine's material wins; this checkout's own is kept aside, not deleted.
        log "var/$name: using the machine's ($target); this checkout's moved to var/$name.local"
        rm -rf "$link.local"
        mv "$link" "$link.local"
      else
        mv "$link" "$target"
      fi
    fi
    if [ "$name" = secrets ]; then install -d -m 0700 "$target"; else install -d -m 0755 "$target"; fi
    ln -sfn "$target" "$link"
  done
}

admin_password() { cat "$SECRETS_DIR/$ADMIN_USER"; }

ensure_admin_secret() {
  umask 077
  mkdir -p "$SECRETS_DIR"
  chmod 0700 "$SECRETS_DIR"
  if [ ! -s "$SECRETS_DIR/$ADMIN_USER" ]; then
    log "generating the $ADMIN_USER password in $SECRETS_DIR"
    # 32 random bytes, URL-safe base64 without padding: no quoting trouble anywhere.
    openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n' >"$SECRETS_DIR/$ADMIN_USER"
  fi
}

write_if_changed() {
  # $1 target, stdin content; returns 0 when the file changed.
  local target="$1" tmp
  tmp="$(mktemp "$BROKER_HOME/.new.XXXXXX")"
  cat >"$tmp"
  if [ -f "$target" ] && cmp -s "$tmp" "$target"; then
    rm -f "$tmp"
    return 1
  fi
  chown "$RMQ_USER:$RMQ_USER" "$tmp"
  chmod 0600 "$tmp"
  mv "$tmp" "$target"
  return 0
}

render_env() {
  cat <<EOF
# Generated by scripts/broker.sh: windpark's own node, not the machine's.
RABBITMQ_NODENAME=$NODE
RABBITMQ_DIST_PORT=$DIST_PORT
RABBITMQ_CONFIG_FILE=$CONF_FILE
RABBITMQ_ENABLED_PLUGINS_FILE=$BROKER_HOME/enabled_plugins
RABBITMQ_MNESIA_BASE=$BROKER_HOME/mnesia
RABBITMQ_LOG_BASE=$BROKER_HOME/log
RABBITMQ_PID_FILE=$PID_FILE
ERL_EPMD_ADDRESS=127.0.0.1
RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOF
}

render_conf() {
  local tls="$BROKER_HOME/tls"
  cat <<EOF
# Generated by scripts/broker.sh (profile: $PROFILE). Edit the script, not this file.
listeners.ssl.1 = 127.0.0.1:$AMQPS_PORT
mqtt.listeners.ssl.1 = 127.0.0.1:$MQTTS_PORT
EOF
  if [ "$PROFILE" = dev ]; then
    cat <<EOF
# dev profile: plain listeners for local tools, on loopback and on ports of their own.
listeners.tcp.1 = 127.0.0.1:$DEV_AMQP_PORT
mqtt.listeners.tcp.1 = 127.0.0.1:$DEV_MQTT_PORT
EOF
  else
    cat <<EOF
# No plain listener at all (RabbitMQ would otherwise open 5672 and 1883).
listeners.tcp = none
mqtt.listeners.tcp = none
EOF
  fi
  cat <<EOF

ssl_options.cacertfile = $tls/ca.crt
ssl_options.certfile = $tls/server.crt
ssl_options.keyfile = $tls/server.key
# Clients authenticate with their password inside TLS; they present no certificate.
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
ssl_options.versions.1 = tlsv1.3
ssl_options.versions.2 = tlsv1.2
ssl_options.honor_cipher_order = true
ssl_options.honor_ecc_order = true
# TLS 1.3 suites, then TLS 1.2 with forward secrecy and AEAD only.
ssl_options.ciphers.1 = TLS_AES_256_GCM_SHA384
ssl_options.ciphers.2 = TLS_AES_128_GCM_SHA256
ssl_options.ciphers.3 = TLS_CHACHA20_POLY1305_SHA256
ssl_options.ciphers.4 = ECDHE-ECDSA-AES256-GCM-SHA384
ssl_options.ciphers.5 = ECDHE-ECDSA-AES128-GCM-SHA256
ssl_options.ciphers.6 = ECDHE-ECDSA-CHACHA20-POLY1305

management.ssl.ip = 127.0.0.1
management.ssl.port = $MGMT_PORT
management.ssl.cacertfile = $tls/ca.crt
management.ssl.certfile = $tls/server.crt
management.ssl.keyfile = $tls/server.key
management.ssl.versions.1 = tlsv1.3
management.ssl.versions.2 = tlsv1.2
management.ssl.honor_cipher_order = true
management.ssl.ciphers.1 = TLS_AES_256_GCM_SHA384
management.ssl.ciphers.2 = TLS_AES_128_GCM_SHA256
management.ssl.ciphers.3 = TLS_CHACHA20_POLY1305_SHA256
management.ssl.ciphers.4 = ECDHE-ECDSA-AES256-GCM-SHA384
management.ssl.ciphers.5 = ECDHE-ECDSA-AES128-GCM-SHA256
management.ssl.ciphers.6 = ECDHE-ECDSA-CHACHA20-POLY1305

# MQTT lands on the same exchange as AMQP; "/" in a topic becomes "." in the routing key.
mqtt.vhost = ${VHOSTS[0]}
mqtt.exchange = telemetry
mqtt.allow_anonymous = false

# Created on first boot instead of guest, which therefore never exists.
default_vhost = ${VHOSTS[0]}
default_user = $ADMIN_USER
default_pass = $(admin_password)
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
loopback_users.guest = true

log.console = false
log.file.level = info
EOF
}

install_tls() {
  # The broker reads copies owned by its own user: the checkout may not be readable by it.
  # Returns 0 when a file changed.
  local changed=1 name src
  bash "$here/tls.sh" >&2
  install -d -o "$RMQ_USER" -g "$RMQ_USER" -m 0700 "$BROKER_HOME/tls"
  for name in ca.crt server.crt server.key; do
    if [ "$name" = server.key ]; then src="$TLS_PRIVATE_DIR/$name"; else src="$TLS_DIR/$name"; fi
    if ! cmp -s "$src" "$BROKER_HOME/tls/$name"; then
      install -o "$RMQ_USER" -g "$RMQ_USER" -m 0600 "$src" "$BROKER_HOME/tls/$name"
      changed=0
    fi
  done
  return $changed
}

# JSON for import_definitions: the admin user (with RabbitMQ's salted SHA-256 hash, so the
# password never appears on a command line) and the vhosts windpark uses.
admin_definitions() {
  local salt digest hash vhost sep=""
  salt="$(mktemp)"
  digest="$(mktemp)"
  openssl rand 4 >"$salt"
  { cat "$salt"; admin_password; } | openssl dgst -sha256 -binary >"$digest"
  hash="$(cat "$salt" "$digest" | base64 -w0)"
  rm -f "$salt" "$digest"
  printf '{"users":[{"name":"%s","password_hash":"%s",' "$ADMIN_USER" "$hash"
  printf '"hashing_algorithm":"rabbit_password_hashing_sha256","tags":["administrator"]}],'
  printf '"vhosts":['
  for vhost in "${VHOSTS[@]}"; do printf '%s{"name":"%s"}' "$sep" "$vhost"; sep=","; done
  printf '],"permissions":['
  sep=""
  for vhost in "${VHOSTS[@]}"; do
    printf '%s{"user":"%s","vhost":"%s","configure":".*","write":".*","read":".*"}' \
      "$sep" "$ADMIN_USER" "$vhost"
    sep=","
  done
  printf ']}\n'
}

admin_api_ok() {
  # The admin can log in and every vhost exists. curl reads the credentials from stdin.
  # disable_stats: existence is all this asks, and 3.10's statistics database was seen
  # to crash on a vhost (badkey in vhost_stats, a 500) while the vhost itself was fine.
  local vhost
  for vhost in "${VHOSTS[@]}"; do
    printf 'user = "%s:%s"\n' "$ADMIN_USER" "$(admin_password)" \
      | curl -sf -o /dev/null -K - --cacert "$TLS_DIR/ca.crt" \
        "https://localhost:$MGMT_PORT/api/vhosts/$vhost?disable_stats=true" || return 1
  done
}

bootstrap_identities() {
  if admin_api_ok; then return 0; fi
  log "importing the $ADMIN_USER user and the vhosts ${VHOSTS[*]}"
  admin_definitions | ctl import_definitions --format json >/dev/null
  if ctl list_users --no-table-headers 2>/dev/null | awk '{print $1}' | grep -qx guest; then
    log "deleting the guest user"
    ctl delete_user guest >/dev/null
  fi
  admin_api_ok || die "the management API refuses $ADMIN_USER after the import"
}

wait_for_management() {
  local _
  for _ in $(seq 1 100); do
    port_open "$MGMT_PORT" && return 0
    sleep 0.1
  done
  die "management API not listening on 127.0.0.1:$MGMT_PORT; see $BROKER_HOME/log"
}

start_node() {
  log "starting RabbitMQ node $NODE (profile $PROFILE)"
  : >"$BROKER_HOME/log/startup.log"
  chown "$RMQ_USER:$RMQ_USER" "$BROKER_HOME/log/startup.log"
  # setsid: the node must outlive this script and the terminal's Ctrl-C. cd: see ctl().
  (cd "$RMQ_HOME" && exec setsid runuser -u "$RMQ_USER" -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    HOME="$RMQ_HOME" LANG=C.UTF-8 RABBITMQ_CONF_ENV_FILE="$ENV_FILE" "$RMQ_BIN/rabbitmq-server") \
    >>"$BROKER_HOME/log/startup.log" 2>&1 </dev/null &
  if ! ctl wait --timeout 60 "$PID_FILE" >/dev/null; then
    tail -n 30 "$BROKER_HOME/log/startup.log" >&2 || true
    die "the node did not start; see $BROKER_HOME/log"
  fi
  wait_for_management
}

stop_node() {
  if node_pid >/dev/null; then
    log "stopping $NODE"
    ctl stop "$PID_FILE" >/dev/null
  fi
  rm -f "$PID_FILE"
}

cmd_start() {
  is_root || {
    running && { log "$NODE is running"; exit 0; }
    die "$NODE is not running; start it as root: sudo scripts/broker.sh start"
  }
  command -v "$RMQ_BIN/rabbitmq-server" >/dev/null || die "RabbitMQ is not installed"
  # epmd: the machine's node runs one; if it does not, our node starts it (loopback only).
  install -d -o "$RMQ_USER" -g "$RMQ_USER" -m 0750 "$BROKER_HOME" "$BROKER_HOME/log"
  if [ ! -s "$RMQ_HOME/.erlang.cookie" ]; then
    # Made now, not by whichever of the node and the CLI boots first (they would differ).
    install -d -o "$RMQ_USER" -g "$RMQ_USER" -m 0755 "$RMQ_HOME"
    (umask 077 && openssl rand -hex 20 | tr -d '\n' >"$RMQ_HOME/.erlang.cookie")
    chown "$RMQ_USER:$RMQ_USER" "$RMQ_HOME/.erlang.cookie"
    chmod 0400 "$RMQ_HOME/.erlang.cookie"
  fi
  link_machine_state
  ensure_admin_secret
  local conf_changed=1 tls_changed=1
  render_env | write_if_changed "$ENV_FILE" && conf_changed=0
  render_conf | write_if_changed "$CONF_FILE" && conf_changed=0
  printf '[rabbitmq_management,rabbitmq_mqtt].\n' \
    | write_if_changed "$BROKER_HOME/enabled_plugins" && conf_changed=0
  install_tls && tls_changed=0
  if running; then
    if [ "$conf_changed" = 0 ]; then
      log "configuration changed: restarting $NODE"
      stop_node
      start_node
    elif [ "$tls_changed" = 0 ]; then
      # New connections pick up the rotated files; open ones keep their session.
      log "certificates changed: reloading them"
      ctl eval 'ssl:clear_pem_cache().' >/dev/null
    fi
  else
    stop_node # a stale pid file
    start_node
  fi
  bootstrap_identities
  log "$NODE ready (profile $PROFILE): amqps://localhost:$AMQPS_PORT mqtts://localhost:$MQTTS_PORT"
}

cmd_status() {
  local pid=""
  if ! is_root && port_open "$AMQPS_PORT"; then
    echo "$NODE running"
    return 0
  fi
  if pid="$(node_pid)"; then
    local profile
    profile="$(sed -n 's/^# Generated by scripts\/broker.sh (profile: \(.*\))\..*/\1/p' "$CONF_FILE")"
    echo "$NODE running (pid $pid, profile ${profile:-?})"
    local port
    for port in "$AMQPS_PORT" "$MQTTS_PORT" "$MGMT_PORT" "$DEV_AMQP_PORT" "$DEV_MQTT_PORT"; do
      if port_open "$port"; then echo "  listening on 127.0.0.1:$port"; fi
    done
    return 0
  fi
  echo "$NODE stopped"
  return 3
}

case "${1:-}" in
  start) cmd_start ;;
  stop)
    is_root || die "stop it as root: sudo scripts/broker.sh stop"
    stop_node
    ;;
  restart)
    is_root || die "restart it as root: sudo scripts/broker.sh restart"
    stop_node
    cmd_start
    ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 start|stop|restart|status" >&2
    exit 2
    ;;
esac
