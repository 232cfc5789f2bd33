#!/bin/sh
# Debian packages the test suite uses as real parts (called by `make test`):
#   chromium                     renders the restore-test report to PNG and PDF (test_report.py)
#   fonts-dejavu-core            the report's font, so pages render the same everywhere
#   postgresql                   server and pg_dump/pg_restore for the database dumps (test_databases.py)
#   mariadb-server, mariadb-client  the same for MariaDB (mariadb-dump, mariadb)
#   debootstrap, systemd-container  a Debian 12 root booted with systemd-nspawn, where the
#                                service is installed from the rescue kit (tests/system/)
# The tests start their own servers on loopback in temporary folders; the packages' default
# services are not used. Installs only what is missing; needs root (CI runs as root) or sudo.
set -eu
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$missing fonts-dejavu-core"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
command -v pg_dump >/dev/null 2>&1 || missing="$missing postgresql-client"
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing="$missing mariadb-server"
command -v mariadb-dump >/dev/null 2>&1 || missing="$missing mariadb-client"
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing="$missing debootstrap"
command -v systemd-nspawn >/dev/null 2>&1 || missing="$missing systemd-container"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
echo "installing Debian packages:$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
