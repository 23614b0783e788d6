#!/usr/bin/env bash
# TLS material for windpark's broker: a local CA and a server certificate signed by it.
#
#   scripts/tls.sh                 # var/tls/{ca.crt,server.crt} and var/tls/private/{ca.key,server.key}
#   scripts/tls.sh --rotate        # a new server key and certificate from the same CA
#   scripts/tls.sh --rotate-ca     # a new CA too (every client must then get the new ca.crt)
#
# Environment (all optional; compose's `tls` service sets them):
#   WINDPARK_TLS_DIR          public certificates (default <repo>/var/tls)
#   WINDPARK_TLS_PRIVATE_DIR  private keys, mode 0700 (default <repo>/var/tls/private)
#   WINDPARK_TLS_HOSTS        extra DNS names for the server certificate, space separated
#                             (compose: "rabbitmq"); localhost and 127.0.0.1 are always in
#   WINDPARK_TLS_KEY_OWNER    user[:group] that must own server.key (the broker's user)
#
# Idempotent: when the certificates exist, are valid for another 30 days, chain to the CA
# and name every host asked for, nothing changes (a run takes ~50 ms). Otherwise what is
# missing or expiring is made again. Private keys never leave the private folder; var/ is
# git-ignored.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
TLS_DIR="${WINDPARK_TLS_DIR:-$root/var/tls}"
PRIVATE_DIR="${WINDPARK_TLS_PRIVATE_DIR:-$TLS_DIR/private}"
EXTRA_HOSTS="${WINDPARK_TLS_HOSTS:-}"
KEY_OWNER="${WINDPARK_TLS_KEY_OWNER:-}"
CA_DAYS=3650
# 397 days: the longest validity browsers and most TLS libraries still accept for a leaf.
SERVER_DAYS=397
RENEW_BEFORE_S=$((30 * 24 * 3600))

log() { printf '[tls] %s\n' "$*"; }

rotate_server=0
rotate_ca=0
for arg in "$@"; do
  case "$arg" in
    --rotate) rotate_server=1 ;;
    --rotate-ca) rotate_server=1; rotate_ca=1 ;;
    *) echo "usage: $0 [--rotate|--rotate-ca]" >&2; exit 2 ;;
  esac
done

ca_crt="$TLS_DIR/ca.crt"
ca_key="$PRIVATE_DIR/ca.key"
server_crt="$TLS_DIR/server.crt"
server_key="$PRIVATE_DIR/server.key"

umask 077
mkdir -p "$TLS_DIR" "$PRIVATE_DIR"
chmod 0755 "$TLS_DIR"
chmod 0700 "$PRIVATE_DIR"

still_valid() { openssl x509 -in "$1" -noout -checkend "$RENEW_BEFORE_S" >/dev/null 2>&1; }

san_list() {
  local san="DNS:localhost,IP:127.0.0.1,IP:::1" host
  for host in $EXTRA_HOSTS; do san="$san,DNS:$host"; done
  printf '%s' "$san"
}

server_names_ok() {
  local host
  for host in localhost 127.0.0.1 $EXTRA_HOSTS; do
    if [[ "$host" =~ ^[0-9.]+$ ]]; then
      openssl x509 -in "$server_crt" -noout -checkip "$host" | grep -q 'does match' || return 1
    else
      openssl x509 -in "$server_crt" -noout -checkhost "$host" | grep -q 'does match' || return 1
    fi
  done
}

make_ca() {
  log "creating a local CA in $TLS_DIR (key in $PRIVATE_DIR)"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$ca_key" 2>/dev/null
  openssl req -x509 -new -key "$ca_key" -sha256 -days "$CA_DAYS" \
    -subj "/O=windpark/CN=windpark local CA $(date -u +%Y%m%dT%H%M%SZ)" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out "$ca_crt.new"
  chmod 0644 "$ca_crt.new"
  mv "$ca_crt.new" "$ca_crt"
}

make_server() {
  log "issuing the broker's server certificate for $(san_list)"
  local csr ext
  csr="$(mktemp)"
  ext="$(mktemp)"
  trap 'rm -f "$csr" "$ext"' RETURN
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$server_key.new" 2>/dev/null
  openssl req -new -key "$server_key.new" -subj "/O=windpark/CN=localhost" -out "$csr"
  cat >"$ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$(san_list)
authorityKeyIdentifier=keyid
subjectKeyIdentifier=hash
EOF
  openssl x509 -req -in "$csr" -CA "$ca_crt" -CAkey "$ca_key" -CAcreateserial \
    -CAserial "$PRIVATE_DIR/ca.srl" -sha256 -days "$SERVER_DAYS" -extfile "$ext" \
    -out "$server_crt.new" 2>/dev/null
  chmod 0644 "$server_crt.new"
  chmod 0600 "$server_key.new"
  # Key first, then certificate: a broker reading in between sees the old pair fail to
  # match for a moment at worst, never a certificate without its key.
  mv "$server_key.new" "$server_key"
  mv "$server_crt.new" "$server_crt"
}

if [ "$rotate_ca" = 1 ] || [ ! -s "$ca_key" ] || [ ! -s "$ca_crt" ] || ! still_valid "$ca_crt"; then
  make_ca
  rotate_server=1
fi

if [ "$rotate_server" = 1 ] || [ ! -s "$server_key" ] || [ ! -s "$server_crt" ] \
  || ! still_valid "$server_crt" \
  || ! openssl verify -CAfile "$ca_crt" "$server_crt" >/dev/null 2>&1 \
  || ! server_names_ok; then
  make_server
fi

if [ -n "$KEY_OWNER" ]; then
  chown "$KEY_OWNER" "$server_key"
fi
