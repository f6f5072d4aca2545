#!/usr/bin/env bash
# Install and start everything berth needs on this Debian 12 machine:
# PostgreSQL (+ database `berth`), MariaDB, RabbitMQ (+ management plugin),
# and the tools the workers and tests drive (nginx, bind9, php-fpm).
#
# Idempotent: it checks first and only changes what is missing, so running it
# again on a ready machine takes a second or two and touches nothing.
# The system nginx and named are installed but not started here (the tests
# start their own on loopback ports); ops/run.sh configures and starts them.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PACKAGES=(
  postgresql
  mariadb-server mariadb-client
  rabbitmq-server
  nginx
  bind9 bind9-utils bind9-dnsutils
  php-fpm php-cli php-mysql
  curl ca-certificates openssl
)

log "setting up berth's services on $(hostname) ($(. /etc/os-release && echo "$PRETTY_NAME"))"
ensure_packages "${PACKAGES[@]}"
ensure_postgres
ensure_database berth
ensure_mariadb
ensure_rabbitmq

for tool in nginx named named-checkconf named-checkzone rndc dig php php-fpm8.2; do
  have "$tool" || warn "$tool not found in PATH"
done
ok "setup complete"
