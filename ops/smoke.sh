#!/usr/bin/env bash
# The newcomer's smoke test (what .ci/run runs after the test suite), as root:
#
#   ops/smoke.sh                                    # with target/debug/berth
#   BERTH_BIN=target/release/berth ops/smoke.sh
#
# 1. ops/run.sh --no-build with BERTH_BIN (default target/debug/berth): the whole
#    system set up and berth started, as README.md's quick start does it
# 2. README.md's "Your first site" commands, exactly as written there (each command
#    below is checked to be in README.md verbatim before it runs): the export line
#    ops/run.sh printed, a platform on the example codebase, a site on it, waiting
#    for their tasks as the README says
# 3. the site from the system nginx with its Host header: its page must show the
#    site's name read from the site's own database
# 4. from the site's own uid (its PHP's and drush's), probes of the control plane:
#    PostgreSQL, RabbitMQ, berth's API (IPv4 and IPv6), MariaDB's root and berth's
#    admin without a password, berth's configuration; none may get through
# 5. ops/stop.sh (also when something failed)
#
# Safe to run again on the same machine: a site left by an earlier run is disabled
# and deleted first (a failed one forgotten), so that the README's commands install
# it again; with BERTH_SMOKE_REUSE=1 it is kept (the README's POSTs then answer 409,
# and a verify task runs on the site instead). The platform is kept (409). Exits 0 when the site serves; otherwise prints
# SMOKE FAILED and what failed, with the task's log and berth's log.
# shellcheck disable=SC2016 # the README's commands are single-quoted on purpose: eval runs them
# shellcheck disable=SC2015 # `A && B || fail`: fail exits
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BERTH_REPO_ROOT"

is_root || die "ops/smoke.sh runs ops/run.sh, which configures the system: run it as root"
export BERTH_BIN=${BERTH_BIN:-target/debug/berth}
case $BERTH_BIN in /*) ;; *) BERTH_BIN=$BERTH_REPO_ROOT/$BERTH_BIN ;; esac
[ -x "$BERTH_BIN" ] || die "no berth binary at $BERTH_BIN (cargo build -p berth, or set BERTH_BIN)"
README=$BERTH_REPO_ROOT/README.md
SITE=www.example.com
PLATFORM=platform_d10
WAIT=${BERTH_SMOKE_WAIT:-180}

work=$(mktemp -d "${TMPDIR:-/tmp}/berth-smoke.XXXXXX")
started=0
finish() {
  local rc=$?
  if [ "$started" -eq 1 ]; then "$BERTH_OPS_DIR/stop.sh" || rc=1; fi
  rm -rf "$work"
  if [ "$rc" -eq 0 ]; then ok "smoke: passed"; fi
  exit "$rc"
}
trap finish EXIT

fail() {
  printf '\n%s[berth]%s %sSMOKE FAILED%s %s\n' "$_c_dim" "$_c_off" "$_c_err" "$_c_off" "$*" >&2
  if [ -n "${task_to_show:-}" ]; then
    printf '\n--- log of task %s\n' "$task_to_show" >&2
    "$BERTH_BIN" tasks log "$task_to_show" >&2 2>&1 || true
  fi
  if [ -r /var/log/berth.log ]; then
    printf '\n--- last lines of /var/log/berth.log\n' >&2
    tail -n 30 /var/log/berth.log >&2 || true
  fi
  exit 1
}

# readme CMD: runs CMD (shell code) after checking README.md holds it verbatim; its
# output goes to $work/out (and to the terminal).
readme() {
  local cmd=$1
  [[ $(<"$README") == *"$cmd"* ]] \
    || fail "README.md no longer holds this command verbatim (update ops/smoke.sh with it):
$cmd"
  printf '%s[smoke]%s $ %s\n' "$_c_dim" "$_c_off" "$cmd" >&2
  eval "$cmd" >"$work/out" 2>&1 || { cat "$work/out" >&2; fail "the README's command failed: $cmd"; }
  cat "$work/out" >&2
  echo >&2
}

# json_str KEY FILE: the first "KEY":"value" string in FILE.
json_str() { { grep -o "\"$1\": *\"[^\"]*\"" "$2" || true; } | head -n1 | sed 's/.*: *"\(.*\)"/\1/'; }
# problem FILE: true when FILE is an application/problem+json answer (a numeric status).
problem() { grep -q '"status":[45][0-9][0-9]' "$1"; }

# ------------------------------------------------------------------ 1. ops/run.sh
log "smoke: ops/run.sh --no-build (BERTH_BIN=$BERTH_BIN)"
started=1
"$BERTH_OPS_DIR/run.sh" --no-build >"$work/run.out" 2>"$work/run.err" || {
  cat "$work/run.err" "$work/run.out" >&2
  fail "ops/run.sh --no-build failed (its output above)"
}
cat "$work/run.err" "$work/run.out" >&2
export_line=$(grep -E '^  export BERTH_API_URL=[^ ]+ BERTH_TOKEN=[^ ]+$' "$work/run.out" | head -n1) \
  || fail "ops/run.sh printed no 'export BERTH_API_URL=... BERTH_TOKEN=...' line"
# What the README tells the newcomer to do with it: run it.
eval "$export_line"
[ -n "${BERTH_TOKEN:-}" ] || fail "no token in ops/run.sh's export line"

# ------------------------------------------------------------------ an earlier run's site
# Not the README's: what this machine holds already decides what the README's POSTs answer.
site_status() {
  "$BERTH_BIN" sites show "$SITE" --json >"$work/site.json" 2>/dev/null || { echo none; return; }
  json_str status "$work/site.json"
}
# follow TASK_ID WHAT: follows a task to its end; fails the smoke unless it succeeded.
follow() {
  "$BERTH_BIN" tasks log "$1" --follow >"$work/follow.log" 2>&1 \
    || { cat "$work/follow.log" >&2; task_to_show=$1; fail "$2 (task $1) did not succeed"; }
}
# An earlier run's site is deleted (disable, then delete: the README's own tasks), so that
# the README's commands install it afresh; BERTH_SMOKE_REUSE=1 keeps it and verifies it.
before=$(site_status)
if [ "$before" = installing ]; then
  log "smoke: $SITE is still installing from an earlier run: waiting for that"
  deadline=$((SECONDS + WAIT))
  while [ "$(site_status)" = installing ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 2; done
  before=$(site_status)
fi
case $before in
  none|deleted) log "smoke: no site $SITE yet (or a deleted one): the README's commands create it" ;;
  failed)
    log "smoke: $SITE failed in an earlier run: forgetting it (DELETE /api/v1/sites/$SITE, as the README says)"
    curl -sS -o /dev/null -X DELETE -H "Authorization: Bearer $BERTH_TOKEN" "$BERTH_API_URL/api/v1/sites/$SITE" || true
    before=$(site_status) ;;
  enabled|disabled)
    if [ "${BERTH_SMOKE_REUSE:-0}" = 1 ]; then
      log "smoke: $SITE is $before from an earlier run: reusing it (BERTH_SMOKE_REUSE=1)"
      if [ "$before" = disabled ]; then
        follow "$("$BERTH_BIN" tasks create enable "$SITE")" "enabling the earlier run's $SITE"
      fi
    else
      log "smoke: $SITE is $before from an earlier run: deleting it (disable, delete) to install it afresh"
      if [ "$before" = enabled ]; then
        follow "$("$BERTH_BIN" tasks create disable "$SITE")" "disabling the earlier run's $SITE"
      fi
      follow "$("$BERTH_BIN" tasks create delete "$SITE")" "deleting the earlier run's $SITE"
    fi
    before=$(site_status) ;;
  *) fail "the earlier run's $SITE is '$before'" ;;
esac
log "smoke: $SITE before the README's commands: $before"

# ------------------------------------------------------------------ 2. the README
readme 'auth=(-H "Authorization: Bearer $BERTH_TOKEN" -H '"'"'Content-Type: application/json'"'"')'

readme 'curl -sS "${auth[@]}" -X POST "$BERTH_API_URL/api/v1/platforms" \
  -d '"'"'{"name":"platform_d10","root":"/var/aegir/platforms/drupal-10.3.1"}'"'"''
if problem "$work/out"; then
  # Refused because an earlier run made it (409 for the name, or 422 for the root)?
  "$BERTH_BIN" platforms show "$PLATFORM" --json >"$work/platform.json" 2>/dev/null \
    && [ "$(json_str root "$work/platform.json")" = /var/aegir/platforms/drupal-10.3.1 ] \
    || fail "creating the platform was refused (answer above)"
  log "smoke: $PLATFORM exists from an earlier run (refused: $(grep -o '"status":[0-9]*' "$work/out"))"
else
  task_to_show=$(json_str task "$work/out")
fi

deadline=$((SECONDS + WAIT))
while :; do
  readme 'curl -sS "${auth[@]}" "$BERTH_API_URL/api/v1/platforms/platform_d10"   # again until "status":"verified"'
  status=$(json_str status "$work/out")
  [ "$status" = verified ] && break
  [ "$status" = failed ] && fail "the platform's verify failed (status failed)"
  [ "$SECONDS" -lt "$deadline" ] || fail "the platform is still '$status' after ${WAIT}s"
  sleep 2
done
task_to_show=

readme 'curl -sS "${auth[@]}" -X POST "$BERTH_API_URL/api/v1/sites" \
  -d '"'"'{"uri":"www.example.com","platform":"platform_d10","profile":"standard","language":"de",
       "aliases":["example.com"],"redirection":true,"client_email":"owner@example.com"}'"'"''
if problem "$work/out"; then
  grep -q '"status":409' "$work/out" && [ "$before" = enabled ] \
    || fail "creating the site was refused (answer above)"
  log "smoke: $SITE is kept from an earlier run (409): a verify task on it instead"
  verify=$("$BERTH_BIN" tasks create verify "$SITE") || fail "could not queue a verify of $SITE"
  task_to_show=$verify
  "$BERTH_BIN" tasks log "$verify" --follow >"$work/verify.log" 2>&1 \
    || { cat "$work/verify.log" >&2; fail "the verify of the earlier run's $SITE did not succeed"; }
else
  task_to_show=$(json_str task "$work/out")
fi

deadline=$((SECONDS + WAIT))
while :; do
  readme 'curl -sS "${auth[@]}" "$BERTH_API_URL/api/v1/sites/www.example.com"    # again until "status":"enabled"'
  status=$(json_str status "$work/out")
  [ "$status" = enabled ] && break
  [ "$status" = failed ] && fail "the site's install failed (status failed; its install was taken back)"
  [ "$SECONDS" -lt "$deadline" ] || fail "the site is still '$status' after ${WAIT}s"
  sleep 2
done
if [ -n "${task_to_show:-}" ]; then
  "$BERTH_BIN" tasks log "$task_to_show" --follow >"$work/task.log" 2>&1 \
    || { cat "$work/task.log" >&2; fail "the site's task $task_to_show did not end in success"; }
  ok "smoke: task $task_to_show ended in success"
fi

# ------------------------------------------------------------------ 3. the site
readme "curl -sS -H 'Host: www.example.com' http://127.0.0.1/   # the site's page: its name, read from its database"
grep -q "<h1>$SITE</h1>" "$work/out" && grep -q 'Served from database' "$work/out" \
  || fail "the system nginx did not serve the installed site's page for Host: $SITE (answer above)"
code=$(http_status http://127.0.0.1/ -H "Host: $SITE")
[ "$code" = 200 ] || fail "http://127.0.0.1/ with Host: $SITE answered $code"
ok "smoke: http://127.0.0.1/ with Host: $SITE shows the installed site (200, its name from its database)"

# ------------------------------------------------------------------ 4. the control plane
# Not the README's: what the site's own uid (its PHP's and drush's) can reach on the system
# ops/run.sh set up. Each probe must be refused; MariaDB's port must be open (its own db).
site_dir=/var/aegir/platforms/drupal-10.3.1/sites/$SITE
uid=$(stat -c %u "$site_dir/private" 2>/dev/null || true)
[[ $uid =~ ^[0-9]+$ ]] && [ "$uid" -ge 200000 ] && [ "$uid" -le 999999 ] \
  || fail "the site's private directory $site_dir/private is not owned by a site uid (200000-999999): '$uid'"
as_site() { setpriv --reuid="$uid" --regid="$uid" --clear-groups -- "$@"; }
tcp() { as_site timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }
api_port=${BERTH_API_URL##*:}; api_port=${api_port%%/*}
probes=0 through=()
probe() { # probe WHAT COMMAND...: the command must fail
  probes=$((probes + 1))
  if "${@:2}" >/dev/null 2>&1; then through+=("$1"); fi
}
for target in "5432 PostgreSQL" "5672 RabbitMQ" "15672 RabbitMQ management" "$api_port berth's API" \
  "4369 Erlang's epmd" "25672 RabbitMQ's Erlang distribution" "953 named's control channel"; do
  port=${target%% *}
  for addr in 127.0.0.1 ::1; do probe "tcp $addr:$port (${target#* })" tcp "$addr" "$port"; done
done
probe "PostgreSQL's unix socket as postgres" as_site psql -X -w -h /var/run/postgresql -U postgres -d postgres -c 'select 1'
probe "PostgreSQL's unix socket as berth" as_site psql -X -w -h /var/run/postgresql -U berth -d berth -c 'select 1'
probe "MariaDB root over its unix socket, no password" as_site mariadb --no-defaults -u root -e 'select 1'
probe "MariaDB root over TCP, no password" as_site mariadb --no-defaults --protocol=tcp -h 127.0.0.1 -u root -e 'select 1'
probe "MariaDB berth_admin over TCP, no password" as_site mariadb --no-defaults --protocol=tcp -h 127.0.0.1 -u berth_admin -e 'select 1'
probe "reading /etc/berth/berth.toml" as_site cat /etc/berth/berth.toml
probe "reading /etc/berth/mariadb-admin.cnf" as_site cat /etc/berth/mariadb-admin.cnf
probe "reading /var/log/berth.log" as_site cat /var/log/berth.log
tcp 127.0.0.1 3306 || fail "the site's uid $uid cannot reach MariaDB on 127.0.0.1:3306 (its own database)"
if [ "${#through[@]}" -gt 0 ]; then
  fail "from the site's uid $uid, ${#through[@]} of $probes probes of the control plane got through: $(printf '%s; ' "${through[@]}")"
fi
ok "smoke: from the site's uid $uid, $probes probes of the control plane, 0 got through (PostgreSQL, RabbitMQ, berth's API, MariaDB root and admin, berth's configuration)"

# Not a README command, and not fatal: the site's records in the system named.
if have dig; then
  answer=$(dig +short +time=2 +tries=1 @127.0.0.1 "$SITE" A 2>/dev/null | head -n1 || true)
  if [ -n "$answer" ]; then ok "smoke: named answers $SITE A $answer"
  else warn "smoke: named on 127.0.0.1 does not answer for $SITE (the install task succeeded, so its records were written)"; fi
fi
