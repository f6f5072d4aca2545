#!/usr/bin/env bash
# The test command (what CI runs through .ci/run):
#
#   ops/test.sh                 # set up services, build the binaries, run every test
#   ops/test.sh -E 'test(e2e)'  # extra arguments go to cargo nextest run (or cargo test)
#
# 1. ops/setup.sh   installs/starts PostgreSQL, MariaDB, RabbitMQ (+ management),
#                   nginx, bind9, php-fpm, the site firewall; idempotent, about a second
#                   when all is there (BERTH_SKIP_SETUP=1 skips it); then the tests' own
#                   MariaDB account berth_test (fixed test password, every privilege),
#                   made by OS root through the unix socket
# 2. cargo build --workspace --bins   the end-to-end tests spawn target/debug/berth
# 3. tests/fixtures/platforms/prove.sh   the fixture codebases' drush and index.php, for
#    real (as root; a few seconds)
# 4. cargo nextest run --workspace --no-fail-fast   (cargo test when nextest is missing)
# 5. with no extra arguments, the short forms of the reliability runs (docs/reliability.md):
#    berth-chaos --tasks 80 --kills 6 (about 2 minutes; private PostgreSQL, MariaDB and
#    RabbitMQ crashed and restarted once each) and ops/schemathesis.sh --max-time 60
#    (BERTH_SKIP_CHAOS=1 / BERTH_SKIP_SCHEMATHESIS=1 skip them)
#
# Exits with the status of the test run. Each test makes its own world from the
# BERTH_TEST_* URLs below (its own PostgreSQL database, RabbitMQ vhost, MariaDB
# names, nginx and named on free loopback ports), so tests run side by side.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$BERTH_REPO_ROOT"

export BERTH_TEST_DATABASE_URL=${BERTH_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export BERTH_TEST_AMQP_URL=${BERTH_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672}
export BERTH_TEST_RABBITMQ_MANAGEMENT=${BERTH_TEST_RABBITMQ_MANAGEMENT:-http://guest:guest@127.0.0.1:15672}
# The tests' own MariaDB account (made below through the unix socket; a fixed test
# password: do not run the tests on a machine that hosts real sites). The servers the tests
# register take their admin user and password from this URL.
BERTH_TEST_MYSQL_USER=berth_test
BERTH_TEST_MYSQL_PASS=berth-test-password
export BERTH_TEST_MYSQL_URL=${BERTH_TEST_MYSQL_URL:-mysql://$BERTH_TEST_MYSQL_USER:$BERTH_TEST_MYSQL_PASS@127.0.0.1:3306}
# Site uids may reach the MariaDB servers the test harness starts (berth-chaos), which
# listen on ports 13306-13399 (tests/servers), besides the system's.
export BERTH_SITE_DB_PORTS=${BERTH_SITE_DB_PORTS:-3306,13306:13399}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-auto}

if [ "${BERTH_SKIP_SETUP:-0}" != 1 ]; then
  "$BERTH_OPS_DIR/setup.sh"
  case $BERTH_TEST_MYSQL_URL in
    "mysql://$BERTH_TEST_MYSQL_USER:$BERTH_TEST_MYSQL_PASS@127.0.0.1:3306"|"mysql://$BERTH_TEST_MYSQL_USER:$BERTH_TEST_MYSQL_PASS@127.0.0.1:3306/")
      ensure_mariadb_test_account "$BERTH_TEST_MYSQL_USER" "$BERTH_TEST_MYSQL_PASS" ;;
    *) ok "BERTH_TEST_MYSQL_URL is set: using that MariaDB account" ;;
  esac
fi

have cargo || { [ -x "$HOME/.cargo/bin/cargo" ] && PATH="$HOME/.cargo/bin:$PATH"; } || die "cargo not found"

log "cargo build --workspace --bins"
cargo build --workspace --bins

status=0
# The fixture codebases' own check (their drush and index.php against the real MariaDB,
# php-fpm and nginx; a few seconds), first: a broken fixture fails many end-to-end tests.
# It makes its throwaway MariaDB account as OS root, through the unix socket.
if [ "$(id -u)" -eq 0 ]; then
  log "fixture check: tests/fixtures/platforms/prove.sh"
  sh tests/fixtures/platforms/prove.sh || status=$?
else
  warn "not root: the fixture check (tests/fixtures/platforms/prove.sh) is not run"
fi
if cargo nextest --version >/dev/null 2>&1; then
  log "cargo nextest run --workspace --no-fail-fast $*"
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  warn "cargo-nextest not installed: falling back to cargo test"
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi
if [ "$status" -eq 0 ] && [ $# -eq 0 ] && [ "${BERTH_SKIP_CHAOS:-0}" != 1 ]; then
  log "chaos run, short form: target/debug/berth-chaos --tasks 80 --kills 6 --seed 1"
  target/debug/berth-chaos --tasks 80 --kills 6 --seed 1 || status=$?
fi
if [ "$status" -eq 0 ] && [ $# -eq 0 ] && [ "${BERTH_SKIP_SCHEMATHESIS:-0}" != 1 ]; then
  log "schemathesis, short form: ops/schemathesis.sh --max-examples 10 --max-time 60"
  "$BERTH_OPS_DIR/schemathesis.sh" --max-examples 10 --max-time 60 || status=$?
fi
if [ "$status" -eq 0 ]; then ok "tests passed"; else warn "tests failed (status $status)"; fi
exit "$status"
