# shellcheck shell=bash
# Shared helpers for berth's ops scripts. Source it; do not run it.
#
#   . "$(dirname "$0")/lib.sh"
#
# Every ensure_* function is idempotent: it checks first, acts only when
# something is missing, and says what it did. They work on a machine with or
# without systemd (containers, CI VMs), as root, or as a user with sudo when a
# change is needed.

BERTH_OPS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BERTH_REPO_ROOT=$(cd "$BERTH_OPS_DIR/.." && pwd)
export BERTH_OPS_DIR BERTH_REPO_ROOT

# Daemons and admin tools live in sbin; non-root users often lack it in PATH.
case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" ;; esac
export PATH

# ---------------------------------------------------------------- logging
if [ -t 2 ]; then
  _c_dim=$'\e[2m' _c_ok=$'\e[32m' _c_warn=$'\e[33m' _c_err=$'\e[31m' _c_off=$'\e[0m'
else
  _c_dim='' _c_ok='' _c_warn='' _c_err='' _c_off=''
fi
log()  { printf '%s[berth]%s %s\n' "$_c_dim" "$_c_off" "$*" >&2; }
ok()   { printf '%s[berth]%s %sok%s   %s\n' "$_c_dim" "$_c_off" "$_c_ok" "$_c_off" "$*" >&2; }
did()  { printf '%s[berth]%s %sdid%s  %s\n' "$_c_dim" "$_c_off" "$_c_ok" "$_c_off" "$*" >&2; }
warn() { printf '%s[berth]%s %swarn%s %s\n' "$_c_dim" "$_c_off" "$_c_warn" "$_c_off" "$*" >&2; }
die()  { printf '%s[berth]%s %serror%s %s\n' "$_c_dim" "$_c_off" "$_c_err" "$_c_off" "$*" >&2; exit 1; }

# ---------------------------------------------------------------- basics
have() { command -v "$1" >/dev/null 2>&1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a command as root: directly when we are root, else through sudo.
as_root() {
  if is_root; then
    "$@"
  elif have sudo; then
    sudo -n "$@" || die "needs root for: $* (run with sudo, or make sudo passwordless)"
  else
    die "needs root for: $*"
  fi
}

# Run a command as another system user (postgres, rabbitmq, bind...).
as_user() {
  local user=$1; shift
  if [ "$(id -un)" = "$user" ]; then
    "$@"
  else
    as_root runuser -u "$user" -- "$@"
  fi
}

have_systemd() { [ -d /run/systemd/system ]; }

# tcp_open HOST PORT: true when something accepts TCP connections there.
tcp_open() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" >/dev/null 2>&1
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every half second.
wait_for() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      warn "timed out after ${secs}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
}

# http_status URL [curl args...]: prints the HTTP status code (000 when down).
http_status() {
  local url=$1; shift
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$url" 2>/dev/null || true
}

# ---------------------------------------------------------------- packages
pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

_berth_apt_updated=0

# ensure_packages [-q] PKG...: apt-get install what is not installed yet. When
# all are installed this is a handful of dpkg-query calls and no network
# (-q: say nothing in that case). apt's output goes to a log shown on failure.
#
# Without systemd (containers, CI sandboxes) a policy-rc.d that answers 101
# is put in place for the install, so the packages' postinst scripts do not
# try to start daemons; the ensure_* functions below start what berth needs.
ensure_packages() {
  local quiet=0 missing=() p
  if [ "${1:-}" = -q ]; then quiet=1; shift; fi
  for p in "$@"; do
    pkg_installed "$p" || missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    [ "$quiet" -eq 1 ] || ok "packages present: $*"
    return 0
  fi
  have apt-get || die "missing packages (${missing[*]}) and no apt-get to install them"
  log "installing: ${missing[*]}"
  local policy_added=0
  if ! have_systemd && [ ! -e /usr/sbin/policy-rc.d ]; then
    as_root sh -c 'printf "#!/bin/sh\n# added by berth ops/lib.sh during apt-get install\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    policy_added=1
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  local rc=0 aptlog
  aptlog=$(mktemp "${TMPDIR:-/tmp}/berth-apt.XXXXXX")
  if [ "$_berth_apt_updated" -eq 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$aptlog" 2>&1 || rc=$?
    _berth_apt_updated=1
  fi
  if [ "$rc" -eq 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
      --no-install-recommends -o Dpkg::Options::=--force-confdef \
      -o Dpkg::Options::=--force-confold "${missing[@]}" >>"$aptlog" 2>&1 || rc=$?
  fi
  if [ "$policy_added" -eq 1 ]; then
    as_root rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
  if [ "$rc" -ne 0 ]; then
    tail -n 40 "$aptlog" >&2
    die "apt-get failed (status $rc) installing: ${missing[*]} (full log: $aptlog)"
  fi
  rm -f "$aptlog"
  did "installed: ${missing[*]}"
}

# ---------------------------------------------------------------- PostgreSQL
BERTH_PG_HOST=${BERTH_PG_HOST:-127.0.0.1}
BERTH_PG_PORT=${BERTH_PG_PORT:-5432}

# shellcheck disable=SC2012 # version directory names are plain
_pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n1; }

_pg_tcp_login() {
  psql -X -w -Atq -h "$BERTH_PG_HOST" -p "$BERTH_PG_PORT" -U postgres -d postgres \
    -c 'select 1' >/dev/null 2>&1
}

# ensure_postgres: a PostgreSQL that accepts `postgres` without a password on
# 127.0.0.1 (what the tests and the default BERTH_DATABASE_URL use). On a
# fresh Debian the loopback rule is scram-sha-256; a `trust` rule for
# 127.0.0.1/32 is added in front (set BERTH_SETUP_LOCAL_TRUST=0 to refuse).
ensure_postgres() {
  ensure_packages -q postgresql
  if pg_isready -q -h "$BERTH_PG_HOST" -p "$BERTH_PG_PORT"; then
    ok "postgresql is accepting connections on $BERTH_PG_HOST:$BERTH_PG_PORT"
  else
    local v
    v=$(_pg_version)
    [ -n "$v" ] || die "postgresql installed but no /etc/postgresql/<version>"
    if [ ! -d "/etc/postgresql/$v/main" ]; then
      as_root pg_createcluster "$v" main >/dev/null
      did "created cluster $v/main"
    fi
    if have_systemd; then
      as_root systemctl start "postgresql@$v-main"
    else
      as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start
    fi
    wait_for 60 "postgresql" pg_isready -q -h "$BERTH_PG_HOST" -p "$BERTH_PG_PORT" \
      || die "postgresql $v/main did not start (see /var/log/postgresql/)"
    did "started postgresql $v/main"
  fi

  if _pg_tcp_login; then
    ok "postgres can log in over TCP without a password"
    return 0
  fi
  [ "${BERTH_SETUP_LOCAL_TRUST:-1}" != 0 ] \
    || die "postgres cannot log in on $BERTH_PG_HOST without a password (BERTH_SETUP_LOCAL_TRUST=0)"
  local hba
  hba=$(as_user postgres psql -X -Atq -c 'show hba_file') || die "cannot ask postgresql for its hba_file"
  if ! as_root grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    as_root sed -i '0,/^[[:space:]]*\(local\|host\)/s//# added by berth ops: loopback trust for development and tests\nhost all all 127.0.0.1\/32 trust\n&/' "$hba"
  fi
  as_user postgres psql -X -Atq -c 'select pg_reload_conf()' >/dev/null
  wait_for 10 "postgres login over TCP" _pg_tcp_login \
    || die "still cannot log in as postgres on $BERTH_PG_HOST; check $hba"
  did "allowed passwordless postgres login on 127.0.0.1 ($hba)"
}

# ensure_postgres_socket_peer: no `trust` on PostgreSQL's unix socket. The socket is open
# to every local user (the site uids too, which the firewall cannot stop there): `local`
# lines that trust are made `peer` (only the OS user of the role's name gets in, as on a
# fresh Debian). The tests and berth use TCP.
ensure_postgres_socket_peer() {
  local hba
  hba=$(as_user postgres psql -X -Atq -c 'show hba_file') || die "cannot ask postgresql for its hba_file"
  if ! as_root grep -Eq '^[[:space:]]*local[[:space:]]+.*[[:space:]]trust([[:space:]]|$)' "$hba"; then
    ok "postgresql's unix socket does not trust (peer or password: $hba)"
    return 0
  fi
  as_root sed -i -E 's/^([[:space:]]*local[[:space:]]+.*[[:space:]])trust([[:space:]]|$)/\1peer\2/' "$hba"
  as_user postgres psql -X -Atq -c 'select pg_reload_conf()' >/dev/null \
    || die "could not reload postgresql after changing $hba"
  did "postgresql's unix socket: trust made peer ($hba): a site's uid cannot log in through it"
}

# ensure_database NAME: create the PostgreSQL database NAME when missing.
ensure_database() {
  local name=$1
  [[ $name =~ ^[a-z_][a-z0-9_]*$ ]] || die "bad database name: $name"
  local exists
  exists=$(psql -X -w -Atq -h "$BERTH_PG_HOST" -p "$BERTH_PG_PORT" -U postgres -d postgres \
    -c "select 1 from pg_database where datname = '$name'") || die "cannot query postgresql"
  if [ "$exists" = 1 ]; then
    ok "database $name exists"
  else
    psql -X -w -q -h "$BERTH_PG_HOST" -p "$BERTH_PG_PORT" -U postgres -d postgres \
      -c "create database \"$name\"" || die "cannot create database $name"
    did "created database $name"
  fi
}

# ---------------------------------------------------------------- MariaDB
BERTH_MYSQL_HOST=${BERTH_MYSQL_HOST:-127.0.0.1}
BERTH_MYSQL_PORT=${BERTH_MYSQL_PORT:-3306}

_mariadb_alive() {
  mariadb-admin --no-defaults --protocol=tcp -h "$BERTH_MYSQL_HOST" -P "$BERTH_MYSQL_PORT" \
    --connect-timeout=2 ping >/dev/null 2>&1
}

_mariadb_root_socket_login() {
  as_root mariadb --no-defaults -u root --connect-timeout=2 -e 'select 1' >/dev/null 2>&1
}

# ensure_mariadb: a running MariaDB on 127.0.0.1:3306 that root (the OS user) administers
# through the unix socket, as a fresh Debian has it. Nothing here opens a passwordless TCP
# login: the tests make their own account (ensure_mariadb_test_account, from ops/test.sh)
# and ops/run.sh gives berth its own admin account with a generated password.
ensure_mariadb() {
  ensure_packages -q mariadb-server mariadb-client
  if _mariadb_alive; then
    ok "mariadb is answering on $BERTH_MYSQL_HOST:$BERTH_MYSQL_PORT"
  else
    if have_systemd; then
      as_root systemctl start mariadb
    else
      as_root install -d -o mysql -g mysql -m 755 /run/mysqld
      if [ ! -d /var/lib/mysql/mysql ]; then
        as_root mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
        did "initialised /var/lib/mysql"
      fi
      as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    fi
    wait_for 60 "mariadb" _mariadb_alive || die "mariadb did not start (see /var/log/mysql/)"
    did "started mariadb"
  fi
  _mariadb_root_socket_login \
    || die "root cannot log in to mariadb through the unix socket (mariadb -u root as OS root)"
  ok "mariadb root logs in through the unix socket"
}

# ensure_mariadb_root_socket_only: root logs in only through the unix socket as OS root,
# and no other root or anonymous account is left: a site's PHP (any uid) could otherwise
# be MariaDB's root over TCP or the socket, and read every site's database. Some images
# ship root@localhost with an empty password and root@127.0.0.1; both are closed here.
ensure_mariadb_root_socket_only() {
  local plugin account
  plugin=$(as_root mariadb --no-defaults -u root -N -B -e \
    "SELECT IFNULL(JSON_VALUE(priv, '$.plugin'), '') FROM mysql.global_priv WHERE user = 'root' AND host = 'localhost'")
  if [ "$plugin" != unix_socket ]; then
    as_root mariadb --no-defaults -u root -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket" \
      || die "could not make MariaDB's root@localhost log in through the unix socket only"
    did "MariaDB root@localhost: unix socket only (was: ${plugin:-a password})"
  fi
  as_root mariadb --no-defaults -u root -N -B -e \
    "SELECT CONCAT(QUOTE(user), '@', QUOTE(host)) FROM mysql.user WHERE (user = 'root' AND host <> 'localhost') OR user = ''" \
    | while IFS= read -r account; do
      as_root mariadb --no-defaults -u root -e "DROP USER $account" || die "could not drop MariaDB account $account"
      did "dropped MariaDB account $account (root only through the unix socket)"
    done
  ok "mariadb root only through the unix socket as OS root"
}

# ensure_mariadb_test_account USER PASSWORD: a MariaDB account for the test suite only,
# USER@127.0.0.1 and USER@localhost with PASSWORD and every privilege WITH GRANT OPTION,
# made by OS root through the unix socket. The password is a fixed, known test password:
# never run the tests on a machine that hosts real sites.
ensure_mariadb_test_account() {
  local user=$1 pass=$2
  [[ $user =~ ^[a-z_][a-z0-9_]{0,31}$ ]] || die "bad mariadb test user: $user"
  [[ $pass != *"'"* && $pass != *"\\"* ]] || die "the mariadb test password may not hold ' or \\"
  if MYSQL_PWD=$pass mariadb --no-defaults --protocol=tcp -h "$BERTH_MYSQL_HOST" -P "$BERTH_MYSQL_PORT" \
      --connect-timeout=2 -u "$user" -e 'select 1' >/dev/null 2>&1 \
    && as_root mariadb --no-defaults -u root -N -e \
      "select count(*) from mysql.user where user = '$user' and host in ('127.0.0.1', 'localhost') and Grant_priv = 'Y'" \
      2>/dev/null | grep -qx 2; then
    ok "mariadb test account $user@127.0.0.1 and @localhost"
    return 0
  fi
  as_root mariadb --no-defaults -u root <<SQL || die "could not create the mariadb test account $user"
CREATE USER IF NOT EXISTS '$user'@'127.0.0.1' IDENTIFIED BY '$pass';
CREATE USER IF NOT EXISTS '$user'@'localhost' IDENTIFIED BY '$pass';
ALTER USER '$user'@'127.0.0.1' IDENTIFIED BY '$pass';
ALTER USER '$user'@'localhost' IDENTIFIED BY '$pass';
GRANT ALL PRIVILEGES ON *.* TO '$user'@'127.0.0.1' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO '$user'@'localhost' WITH GRANT OPTION;
SQL
  MYSQL_PWD=$pass mariadb --no-defaults --protocol=tcp -h "$BERTH_MYSQL_HOST" -P "$BERTH_MYSQL_PORT" \
    --connect-timeout=2 -u "$user" -e 'select 1' >/dev/null 2>&1 \
    || die "the mariadb test account $user still cannot log in over TCP"
  did "created the mariadb test account $user@127.0.0.1 and @localhost (tests only)"
}

# ---------------------------------------------------------------- RabbitMQ
BERTH_AMQP_HOST=${BERTH_AMQP_HOST:-127.0.0.1}
BERTH_AMQP_PORT=${BERTH_AMQP_PORT:-5672}
BERTH_RABBIT_MGMT=${BERTH_RABBIT_MGMT:-http://127.0.0.1:15672}

_rabbit_up() { tcp_open "$BERTH_AMQP_HOST" "$BERTH_AMQP_PORT"; }
# _rabbit_amqp_answers: the broker answers AMQP's protocol header with a frame (a broker can
# accept TCP connections and still hand none of them to AMQP, e.g. with its vhost
# supervisor stuck).
_rabbit_amqp_answers() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 10 bash -c 'exec 3<>"/dev/tcp/$1/$2"; printf "AMQP\x00\x00\x09\x01" >&3; head -c 1 <&3' _ \
    "$BERTH_AMQP_HOST" "$BERTH_AMQP_PORT" 2>/dev/null | od -An -tx1 | grep -q 01
}
_rabbit_mgmt_up() {
  [ "$(http_status "$BERTH_RABBIT_MGMT/api/overview" -u guest:guest)" = 200 ]
}

_rabbit_start() {
  if have_systemd; then
    as_root systemctl start rabbitmq-server
  else
    as_root install -d -o rabbitmq -g rabbitmq /var/log/rabbitmq
    # As its systemd unit does (LimitNOFILE=65536): with the shell's 1024 the broker's file
    # handle cache is small for the tests' many vhosts, queues and connections.
    # shellcheck disable=SC2016 # expanded by the inner sh
    as_root sh -c 'ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec rabbitmq-server -detached' >/dev/null 2>&1 || true
  fi
  wait_for 120 "rabbitmq on port $BERTH_AMQP_PORT" _rabbit_up \
    || die "rabbitmq did not start (see /var/log/rabbitmq/)"
}

# _rabbit_restart: stops the broker that listens on the AMQP port (politely, then by force)
# and starts it again.
_rabbit_restart() {
  if have_systemd; then
    as_root systemctl restart rabbitmq-server
  else
    local pid
    pid=$(ss -ltnpH "sport = :$BERTH_AMQP_PORT" 2>/dev/null | grep -o 'beam[^,]*,pid=[0-9]*' | grep -o '[0-9]*$' | head -n1)
    timeout 30 rabbitmqctl stop >/dev/null 2>&1 || true
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      as_root kill "$pid" 2>/dev/null || true
      wait_for 30 "rabbitmq (pid $pid) to stop" bash -c "! kill -0 $pid 2>/dev/null" \
        || as_root kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  _rabbit_start
}

# _rabbit_vhost_starts: a new vhost is made and running within 20 s, then deleted. RabbitMQ
# 3.10 was seen here with its vhost supervisor stuck after a vhost deletion: AMQP and the
# management API answer, but every vhost made after stays `stopped` and every connection to
# it times out (each test makes one, so the whole suite would fail).
_rabbit_vhost_starts() {
  local probe=berth_setup_probe state=
  curl -s -m 20 -o /dev/null -u guest:guest -X PUT "$BERTH_RABBIT_MGMT/api/vhosts/$probe" || return 1
  for _ in $(seq 1 40); do
    state=$(curl -s -m 5 -u guest:guest "$BERTH_RABBIT_MGMT/api/vhosts/$probe" | grep -o '"cluster_state":{[^}]*}')
    case $state in *'"running"'*) break ;; esac
    sleep 0.5
  done
  curl -s -m 20 -o /dev/null -u guest:guest -X DELETE "$BERTH_RABBIT_MGMT/api/vhosts/$probe" || return 1
  case $state in *'"running"'*) return 0 ;; *) return 1 ;; esac
}

# ensure_rabbitmq: a running RabbitMQ on 5672 with the management plugin
# answering on 15672 (the tests create a vhost per test through it).
ensure_rabbitmq() {
  ensure_packages -q rabbitmq-server
  if _rabbit_up; then
    ok "rabbitmq is accepting connections on $BERTH_AMQP_HOST:$BERTH_AMQP_PORT"
  else
    # The Erlang node is named after the short host name; when that does not
    # resolve the node cannot start, so name it rabbit@localhost instead.
    if ! getent hosts "$(hostname -s)" >/dev/null 2>&1 \
      && ! grep -qs '^NODENAME=' /etc/rabbitmq/rabbitmq-env.conf; then
      as_root sh -c 'echo "NODENAME=rabbit@localhost" >> /etc/rabbitmq/rabbitmq-env.conf'
      did "set NODENAME=rabbit@localhost (host name $(hostname -s) does not resolve)"
    fi
    _rabbit_start
    did "started rabbitmq"
  fi

  _rabbit_amqp_answers \
    || warn "rabbitmq accepts TCP on $BERTH_AMQP_HOST:$BERTH_AMQP_PORT but does not answer the AMQP handshake within 10s: berth and the tests cannot connect (a stuck broker: see /var/log/rabbitmq/, restart it)"
  if _rabbit_mgmt_up; then
    ok "rabbitmq management API answers on $BERTH_RABBIT_MGMT"
  else
    as_root rabbitmq-plugins -q enable rabbitmq_management >/dev/null \
      || die "could not enable rabbitmq_management"
    wait_for 90 "rabbitmq management API" _rabbit_mgmt_up \
      || die "rabbitmq management API does not answer on $BERTH_RABBIT_MGMT"
    did "enabled rabbitmq_management ($BERTH_RABBIT_MGMT)"
  fi
  if ! _rabbit_vhost_starts; then
    warn "rabbitmq does not start a new vhost within 20 s (its vhost supervisor is stuck): restarting it"
    _rabbit_restart
    wait_for 90 "rabbitmq management API" _rabbit_mgmt_up \
      || die "rabbitmq management API does not answer on $BERTH_RABBIT_MGMT after a restart"
    _rabbit_vhost_starts || die "rabbitmq still does not start a new vhost after a restart (see /var/log/rabbitmq/)"
    did "restarted rabbitmq: new vhosts start again"
  else
    ok "rabbitmq starts a new vhost"
  fi
}

# ---------------------------------------------------------------- site firewall
# Every site's PHP and drush run under the site's own uid, from this range (no passwd entry).
BERTH_SITE_UIDS=${BERTH_SITE_UIDS:-200000-999999}
# The loopback TCP ports a site may reach: MariaDB's, and the web's. Anything else on this
# machine (PostgreSQL, RabbitMQ and its management API, Erlang's ports, Redis, NATS,
# berth's API, named's control channel...) is refused to the site uids.
# BERTH_SITE_DB_PORTS (default: BERTH_MYSQL_PORT) and BERTH_SITE_WEB_PORTS (default 80,443)
# are read when ensure_site_firewall runs, so that a script may set them after sourcing this.
_BERTH_FW_CHAIN=BERTH-SITES

# _site_fw_rules: the chain's rules as `iptables -S` prints them (one per line, no -A prefix
# differences between v4 and v6 but the REJECT type).
_site_fw_rules() {
  local v=$1 reject db_ports=${BERTH_SITE_DB_PORTS:-$BERTH_MYSQL_PORT} web_ports=${BERTH_SITE_WEB_PORTS:-80,443}
  if [ "$v" = 4 ]; then reject=icmp-port-unreachable; else reject=icmp6-port-unreachable; fi
  printf -- '-A %s -p tcp -m multiport --dports %s -j RETURN\n' "$_BERTH_FW_CHAIN" "$db_ports,$web_ports"
  printf -- '-A %s -p tcp -j REJECT --reject-with tcp-reset\n' "$_BERTH_FW_CHAIN"
  printf -- '-A %s -j REJECT --reject-with %s\n' "$_BERTH_FW_CHAIN" "$reject"
}

# _site_fw_apply CMD V: makes CMD's (iptables or ip6tables) BERTH-SITES chain hold exactly
# the rules above, and OUTPUT jump to it first for loopback traffic of the site uids.
# Prints "same" or "changed"; fails when CMD cannot be used.
_site_fw_apply() {
  local cmd=$1 v=$2 want have_rules rule changed=0
  want=$(_site_fw_rules "$v")
  as_root "$cmd" -w -S OUTPUT >/dev/null 2>&1 || return 1
  if ! as_root "$cmd" -w -S "$_BERTH_FW_CHAIN" >/dev/null 2>&1; then
    as_root "$cmd" -w -N "$_BERTH_FW_CHAIN" || return 1
    changed=1
  fi
  have_rules=$(as_root "$cmd" -w -S "$_BERTH_FW_CHAIN" | grep -v "^-N ")
  if [ "$have_rules" != "$want" ]; then
    as_root "$cmd" -w -F "$_BERTH_FW_CHAIN" || return 1
    while IFS= read -r rule; do
      # shellcheck disable=SC2086 # the rule is a list of words
      as_root "$cmd" -w ${rule} || return 1
    done <<<"$want"
    changed=1
  fi
  local jump=(OUTPUT -o lo -m owner --uid-owner "$BERTH_SITE_UIDS" -m comment --comment "berth: site uids reach only the db and web ports on this machine" -j "$_BERTH_FW_CHAIN")
  if ! as_root "$cmd" -w -C "${jump[@]}" 2>/dev/null; then
    as_root "$cmd" -w -I "${jump[@]:0:1}" 1 "${jump[@]:1}" || return 1
    changed=1
  fi
  if [ "$changed" -eq 1 ]; then echo changed; else echo same; fi
}

# ensure_site_firewall: processes of the site uids (BERTH_SITE_UIDS) may reach, on this
# machine (any local address: it all goes through lo), only TCP ports BERTH_SITE_DB_PORTS
# and BERTH_SITE_WEB_PORTS; everything else is refused (IPv4 and IPv6). Idempotent; the
# rules do not survive a reboot: ops/setup.sh (and so ops/run.sh) puts them back. When
# iptables cannot be used (no kernel support, no CAP_NET_ADMIN) it warns and goes on:
# then nothing keeps a site's PHP away from PostgreSQL, RabbitMQ and berth's API.
ensure_site_firewall() {
  if [ "${BERTH_SITE_FIREWALL:-1}" = 0 ]; then
    warn "BERTH_SITE_FIREWALL=0: no firewall for the site uids $BERTH_SITE_UIDS (their PHP can reach every local service)"
    return 0
  fi
  [[ $BERTH_SITE_UIDS =~ ^[0-9]+-[0-9]+$ ]] || die "bad BERTH_SITE_UIDS: $BERTH_SITE_UIDS (want FIRST-LAST)"
  local ports=${BERTH_SITE_DB_PORTS:-$BERTH_MYSQL_PORT},${BERTH_SITE_WEB_PORTS:-80,443}
  [[ $ports =~ ^[0-9]+(:[0-9]+)?(,[0-9]+(:[0-9]+)?)*$ ]] \
    || die "bad BERTH_SITE_DB_PORTS/BERTH_SITE_WEB_PORTS: $ports"
  ensure_packages -q iptables
  local v cmd r what="site uids $BERTH_SITE_UIDS reach only tcp ports $ports on this machine"
  for v in 4 6; do
    if [ "$v" = 4 ]; then cmd=iptables; else cmd=ip6tables; fi
    if ! have "$cmd"; then
      warn "SITES ARE NOT FIREWALLED ($cmd not found): a site's PHP can reach PostgreSQL, RabbitMQ and berth's API over IPv$v"
      continue
    fi
    if r=$(_site_fw_apply "$cmd" "$v" 2>/dev/null); then
      if [ "$r" = changed ]; then did "$cmd: $what"; else ok "$cmd: $what"; fi
    else
      warn "SITES ARE NOT FIREWALLED over IPv$v: $cmd cannot be used here ($(as_root "$cmd" -w -S OUTPUT 2>&1 | tail -n1)); a site's PHP can reach PostgreSQL, RabbitMQ and berth's API"
    fi
  done
}

# ---------------------------------------------------------------- test servers (moto_server, aiosmtpd)
# ensure_test_venv NAME VENV REQS DIST: a Python server the tests start on loopback, pinned in
# REQS (`DIST==version`) and installed from PyPI into its own venv VENV. Only the tests need
# it: without PyPI (a machine with no network) berth itself still runs, so a failure warns.
ensure_test_venv() {
  local name=$1 venv=$2 reqs=$3 dist=$4 want
  want=$(sed -n "s/^${dist//[/\\[}==//p" "$reqs")
  [ -n "$want" ] || die "no pinned $dist in $reqs"
  local pkg=${dist%%[*}
  if [ -x "$venv/bin/python" ] && [ "$("$venv/bin/python" -c \
      "import importlib.metadata as m; print(m.version('$pkg'))" 2>/dev/null)" = "$want" ]; then
    ok "$name $want in $venv"
    return 0
  fi
  if ! { [ -x "$venv/bin/python" ] || as_root python3 -m venv "$venv"; } \
    || ! as_root "$venv/bin/pip" install -q --disable-pip-version-check -r "$reqs"; then
    warn "could not install $dist==$want from PyPI into $venv: the tests that run $name need it"
    return 0
  fi
  did "installed $name $want into $venv"
}

# ensure_moto: moto_server, the S3-compatible server the off-site backup tests start on
# loopback (tests/servers/src/moto.rs), pinned in tests/moto/requirements.txt, in its own
# venv BERTH_MOTO_VENV (/opt/berth/moto).
BERTH_MOTO_VENV=${BERTH_MOTO_VENV:-/opt/berth/moto}
ensure_moto() {
  ensure_test_venv moto_server "$BERTH_MOTO_VENV" "$BERTH_REPO_ROOT/tests/moto/requirements.txt" 'moto[server]'
}

# ensure_aiosmtpd: the SMTP server the welcome-mail tests start on loopback
# (tests/servers/src/smtp.rs), pinned in tests/smtp/requirements.txt, in its own venv
# BERTH_SMTP_VENV (/opt/berth/smtp).
BERTH_SMTP_VENV=${BERTH_SMTP_VENV:-/opt/berth/smtp}
ensure_aiosmtpd() {
  ensure_test_venv aiosmtpd "$BERTH_SMTP_VENV" "$BERTH_REPO_ROOT/tests/smtp/requirements.txt" aiosmtpd
}
