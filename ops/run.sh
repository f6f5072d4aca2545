#!/usr/bin/env bash
# Set up and run the whole of berth on this machine, as root:
#
#   sudo ops/run.sh            # build, (re)start, print the API URL and a new admin token
#   sudo ops/run.sh --no-build # use the binary already built (or BERTH_BIN)
#
# 1. ops/setup.sh: PostgreSQL (+ database berth), MariaDB, RabbitMQ, nginx, bind9, php-fpm
# 2. /etc/berth/berth.toml (written once, mode 0600, with a fresh secret key)
# 3. the data root, and the system nginx and named told to include berth's vhosts and zones
# 4. cargo build --release -p berth; `berth serve all` in the background
#    (log /var/log/berth.log, pid /run/berth.pid; ops/stop.sh stops it)
# 5. an admin API token, and server_master registered through the API
#
# Re-running it is safe: it restarts berth with the new build, makes a new
# token, and updates server_master in place.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

build=1
for arg in "$@"; do
  case $arg in
    --no-build) build=0 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg (try --help)" ;;
  esac
done
is_root || die "ops/run.sh configures the system nginx and named: run it as root (sudo ops/run.sh)"
cd "$BERTH_REPO_ROOT"

CONFIG=${BERTH_CONFIG:-/etc/berth/berth.toml}
LOG_FILE=/var/log/berth.log
PID_FILE=/run/berth.pid
SERVER=server_master
BIN=${BERTH_BIN:-$BERTH_REPO_ROOT/target/release/berth}

# toml_get KEY: a `key = "value"` string from the config file, if there.
toml_get() {
  [ -r "$CONFIG" ] || return 0
  sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\\(.*\\)\"[[:space:]]*\$/\\1/p" "$CONFIG" | tail -n1
}

# ------------------------------------------------------------------ services
"$BERTH_OPS_DIR/setup.sh"

# ------------------------------------------------------------------ config
if [ -e "$CONFIG" ]; then
  ok "config $CONFIG exists (left as it is)"
else
  if have openssl; then
    key=$(openssl rand -hex 32)
  else
    key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  fi
  [[ $key =~ ^[0-9a-f]{64}$ ]] || die "could not make a secret key"
  install -d -m 755 "$(dirname "$CONFIG")"
  (
    umask 077
    cat >"$CONFIG" <<EOF
# berth configuration, written by ops/run.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ).
# Same keys as the BERTH_* environment variables, lower case without the
# prefix; an environment variable wins over this file. See README.md.
database_url = "postgres://postgres@127.0.0.1:5432/berth"
amqp_url = "amqp://guest:guest@127.0.0.1:5672/%2f"
listen = "127.0.0.1:8080"
data_root = "/var/lib/berth"
servers = "$SERVER"
nginx_conf = "/etc/nginx/nginx.conf"
named_conf = "/etc/bind/named.conf"
# Encrypts the secrets berth stores (database passwords). Keep it, and keep it
# secret: without it stored credentials cannot be read back.
secret_key = "$key"
EOF
  )
  unset key
  chmod 600 "$CONFIG"
  did "wrote $CONFIG (mode 0600, new secret key)"
fi

DATA_ROOT=${BERTH_DATA_ROOT:-$(toml_get data_root)}
DATA_ROOT=${DATA_ROOT:-/var/lib/berth}
LISTEN=${BERTH_LISTEN:-$(toml_get listen)}
LISTEN=${LISTEN:-127.0.0.1:8080}
case $LISTEN in
  0.0.0.0:*|\[::\]:*) API_URL="http://127.0.0.1:${LISTEN##*:}" ;;
  *) API_URL="http://$LISTEN" ;;
esac

SERVER_CONF=$DATA_ROOT/config/$SERVER
VHOST_DIR=$SERVER_CONF/nginx/vhost.d
ZONES_CONF=$SERVER_CONF/bind/zones.conf
install -d -m 755 "$DATA_ROOT" "$DATA_ROOT/config" "$SERVER_CONF" "$VHOST_DIR" "$(dirname "$ZONES_CONF")"
[ -e "$ZONES_CONF" ] || { install -m 644 /dev/null "$ZONES_CONF"; did "created empty $ZONES_CONF"; }
ok "data root $DATA_ROOT"

# ------------------------------------------------------------------ nginx
nginx_snippet=$(sed "s#/var/lib/berth#$DATA_ROOT#g" "$BERTH_OPS_DIR/nginx/berth.conf")
if [ "$(cat /etc/nginx/conf.d/berth.conf 2>/dev/null)" != "$nginx_snippet" ]; then
  printf '%s\n' "$nginx_snippet" >/etc/nginx/conf.d/berth.conf
  did "wrote /etc/nginx/conf.d/berth.conf (includes $VHOST_DIR/*.conf)"
fi
nginx -t -q 2>/dev/null || { nginx -t; die "the system nginx configuration does not pass nginx -t"; }
nginx_pid=$(cat /run/nginx.pid 2>/dev/null || true)
if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
  nginx -s reload 2>/dev/null || { nginx -s reload; die "nginx -s reload failed"; }
  ok "nginx running (pid $nginx_pid), reloaded"
else
  nginx
  did "started nginx"
fi

# ------------------------------------------------------------------ bind
bind_snippet=$(sed "s#/var/lib/berth#$DATA_ROOT#g" "$BERTH_OPS_DIR/bind/named.conf.berth")
if ! grep -qF "include \"$ZONES_CONF\";" /etc/bind/named.conf.local; then
  printf '\n%s\n' "$bind_snippet" >>/etc/bind/named.conf.local
  did "added include \"$ZONES_CONF\" to /etc/bind/named.conf.local"
fi
if [ ! -e /etc/bind/rndc.key ]; then
  rndc-confgen -a >/dev/null 2>&1
  chown root:bind /etc/bind/rndc.key && chmod 640 /etc/bind/rndc.key
  did "created /etc/bind/rndc.key"
fi
named-checkconf /etc/bind/named.conf || die "named-checkconf /etc/bind/named.conf failed"
if rndc status >/dev/null 2>&1; then
  rndc reconfig >/dev/null
  ok "named running, reconfigured"
else
  install -d -o bind -g bind -m 775 /run/named
  named_user=bind
  if ! runuser -u bind -- test -r "$ZONES_CONF"; then
    named_user=root
    warn "user bind cannot read $ZONES_CONF: running named as root"
  fi
  named -u "$named_user"
  wait_for 15 "rndc status" rndc status || die "named started but rndc does not reach it (see syslog / named -g)"
  did "started named (-u $named_user); rndc reaches it"
fi

# ------------------------------------------------------------------ php-fpm
# shellcheck disable=SC2012 # /usr/sbin/php-fpmX.Y names are plain
fpm=$(ls /usr/sbin/php-fpm* 2>/dev/null | sort -V | tail -n1 || true)
if [ -n "$fpm" ]; then
  fpm_v=${fpm#/usr/sbin/php-fpm}
  fpm_pid=$(cat "/run/php/php$fpm_v-fpm.pid" 2>/dev/null || true)
  if [ -n "$fpm_pid" ] && kill -0 "$fpm_pid" 2>/dev/null; then
    ok "php-fpm $fpm_v running (pid $fpm_pid)"
  else
    install -d -m 755 /run/php
    "$fpm" --daemonize --fpm-config "/etc/php/$fpm_v/fpm/php-fpm.conf"
    did "started php-fpm $fpm_v (/run/php/php$fpm_v-fpm.sock)"
  fi
fi

# ------------------------------------------------------------------ build
if [ "$build" -eq 1 ] && [ -z "${BERTH_BIN:-}" ]; then
  log "building: cargo build --release -p berth"
  if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    # Build as the user who ran sudo: their toolchain, their target/ files.
    # shellcheck disable=SC2016 # $1 is for the inner shell
    runuser -u "$SUDO_USER" -- bash -lc 'cd "$1" && cargo build --release -p berth' _ "$BERTH_REPO_ROOT"
  else
    cargo=$(command -v cargo || echo "$HOME/.cargo/bin/cargo")
    [ -x "$cargo" ] || die "cargo not found (install the Rust toolchain, or pass --no-build with BERTH_BIN)"
    "$cargo" build --release -p berth
  fi
fi
[ -x "$BIN" ] || die "no berth binary at $BIN (build it, or set BERTH_BIN)"

# ------------------------------------------------------------------ start
"$BERTH_OPS_DIR/stop.sh"
if [ "$(http_status "$API_URL/readyz")" != 000 ]; then
  die "something else already answers on $API_URL (another berth not started by ops/run.sh?)"
fi
log "starting: $BIN serve all (log $LOG_FILE)"
touch "$LOG_FILE" && chmod 640 "$LOG_FILE"
printf '\n==== %s ops/run.sh: %s serve all\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$BIN" >>"$LOG_FILE"
# The php-fpm found above serves the sites, unless the configuration names another.
php_fpm_env=()
if [ -n "${fpm_v:-}" ] && [ -z "${BERTH_PHP_FPM:-}" ] && [ -z "$(toml_get php_fpm)" ]; then
  php_fpm_env=(BERTH_PHP_FPM="unix:/run/php/php$fpm_v-fpm.sock")
fi
env "${php_fpm_env[@]}" BERTH_CONFIG="$CONFIG" RUST_LOG="${RUST_LOG:-info}" \
  nohup setsid "$BIN" serve all </dev/null >>"$LOG_FILE" 2>&1 &
berth_pid=$!
echo "$berth_pid" >"$PID_FILE"

deadline=$((SECONDS + 60))
until [ "$(http_status "$API_URL/readyz")" = 200 ]; do
  if ! kill -0 "$berth_pid" 2>/dev/null; then
    tail -n 40 "$LOG_FILE" >&2
    rm -f "$PID_FILE"
    die "berth exited during start-up (log above, full log $LOG_FILE)"
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    tail -n 40 "$LOG_FILE" >&2
    die "berth did not become ready on $API_URL/readyz within 60s (log above; still running as pid $berth_pid, stop it with ops/stop.sh)"
  fi
  sleep 0.5
done
did "berth is ready on $API_URL (pid $berth_pid)"

# ------------------------------------------------------------------ token
token=$(BERTH_CONFIG=$CONFIG "$BIN" token create --name "admin-$(date +%Y%m%d-%H%M%S)" | sed '/^[[:space:]]*$/d' | tail -n1) \
  || die "berth token create failed"
[ -n "$token" ] || die "berth token create printed no token"
did "created an admin token"

# ------------------------------------------------------------------ server_master
host=$(hostname -f 2>/dev/null | tr '[:upper:]' '[:lower:]' || true)
[[ $host =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$ ]] || host=localhost
services='{"http":{"type":"nginx","port":80},"db":{"type":"mariadb","host":"127.0.0.1","port":3306,"admin_user":"root","admin_password":""},"dns":{"type":"bind","port":53}}'
body=$(mktemp)
trap 'rm -f "$body"' EXIT
code=$(curl -sS -o "$body" -w '%{http_code}' -X POST "$API_URL/api/v1/servers" \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -H "Idempotency-Key: ops-run-$SERVER-$(date +%s)-$$" \
  --data "{\"name\":\"$SERVER\",\"host\":\"$host\",\"services\":$services}") || code=000
case $code in
  201)
    did "registered $SERVER (host $host) $(grep -o '"verify_task":[^,}]*' "$body" || true)" ;;
  409)
    code=$(curl -sS -o "$body" -w '%{http_code}' -X PATCH "$API_URL/api/v1/servers/$SERVER" \
      -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
      --data "{\"host\":\"$host\",\"services\":$services}") || code=000
    [ "${code:0:1}" = 2 ] || { cat "$body" >&2; echo >&2; die "PATCH /api/v1/servers/$SERVER answered $code"; }
    did "updated $SERVER (host $host) $(grep -o '"verify_task":[^,}]*' "$body" || true)" ;;
  *)
    cat "$body" >&2; echo >&2
    die "POST /api/v1/servers answered $code" ;;
esac

# ------------------------------------------------------------------ done
cli=$BIN
case $cli in "$BERTH_REPO_ROOT"/*) cli=${cli#"$BERTH_REPO_ROOT"/} ;; esac
cat <<EOF

berth is running (pid $berth_pid; log $LOG_FILE; stop with ops/stop.sh).

  API        $API_URL/api/v1   (OpenAPI: $API_URL/api/v1/openapi.json)
  metrics    $API_URL/metrics
  RabbitMQ   http://127.0.0.1:15672 (guest/guest, from this machine)
  token      $token

Try:
  export BERTH_API_URL=$API_URL BERTH_TOKEN=$token
  $cli servers list
  $cli tasks list
  $cli @$SERVER provision-verify
  curl -H "Authorization: Bearer \$BERTH_TOKEN" $API_URL/api/v1/servers
EOF
