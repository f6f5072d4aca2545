#!/usr/bin/env bash
# Install and start everything berth needs on this Debian 12 machine:
# PostgreSQL (+ database `berth`), MariaDB, RabbitMQ (+ management plugin),
# and the tools the workers and tests drive (nginx, bind9, php-fpm, and moto_server,
# the S3-compatible server of the off-site backup tests, from PyPI); and the
# site firewall: processes of the site uids (200000-999999, under which every
# site's PHP and drush run) reach only MariaDB's port and the web ports on this
# machine, not PostgreSQL, RabbitMQ or berth's API (iptables and ip6tables;
# BERTH_SITE_DB_PORTS widens the MariaDB ports, as ops/test.sh does for the
# test harness's private MariaDB servers).
#
# MariaDB's root is left to the unix socket (OS root) only, with no other root or
# anonymous account: a site's PHP must not be able to log in as root.
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
  iptables
  python3 python3-venv
)

log "setting up berth's services on $(hostname) ($(. /etc/os-release && echo "$PRETTY_NAME"))"
ensure_packages "${PACKAGES[@]}"
ensure_postgres
ensure_postgres_socket_peer
ensure_database berth
ensure_mariadb
ensure_mariadb_root_socket_only
ensure_rabbitmq
ensure_site_firewall
ensure_moto
ensure_aiosmtpd

for tool in nginx named named-checkconf named-checkzone rndc dig php php-fpm8.2; do
  have "$tool" || warn "$tool not found in PATH"
done
ok "setup complete"
