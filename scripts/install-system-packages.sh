#!/bin/sh
# Debian packages that `make` needs before anything else, installed only when missing.
#
#   scripts/install-system-packages.sh venv   what `python3 -m venv` needs (`make install`, `make demo`):
#     python3                      the interpreter (absent from a minimal Debian 12, e.g. debootstrap minbase)
#     python3-venv                 ensurepip, without which Debian's `python3 -m venv` fails
#   scripts/install-system-packages.sh        the above, plus what the test suite uses as real parts
#                                             (`make install-test`, `make test`):
#     systemd                      systemd-analyze, which checks the unit (test_systemd.py); containers lack it
#     chromium                     renders the restore-test report to PNG and PDF (test_report.py)
#     fonts-dejavu-core            the report's font, so pages render the same everywhere
#     postgresql                   server and pg_dump/pg_restore for the database dumps (test_databases.py)
#     mariadb-server, mariadb-client  the same for MariaDB (mariadb-dump, mariadb)
#     debootstrap, systemd-container  a Debian 12 root booted with systemd-nspawn, where the
#                                  service is installed from the rescue kit (tests/system/)
#     prometheus                   promtool, which checks the metrics output and the alerting
#                                  rules under contrib/ (test_metrics_tools.py)
#     prometheus-node-exporter     scrapes the metrics folder with its textfile collector
# The tests start their own servers on loopback in temporary folders; the packages' default
# services are not used.
#
# With everything present it prints nothing, needs no root and touches no network, so `make`
# can run it every time. Something missing: as root (as CI runs) it runs apt-get; otherwise
# through sudo when there is one; with neither it says which packages to install as root and
# fails, before `make` creates a half-working venv.
set -eu
want="${1:-test}"
case "$want" in venv|test) ;; *) echo "usage: $0 [venv|test]" >&2; exit 2 ;; esac
python="${PYTHON:-python3}"
missing=""
if ! command -v "$python" >/dev/null 2>&1; then
    missing="$missing python3 python3-venv"
elif ! "$python" -c "import ensurepip" >/dev/null 2>&1; then
    missing="$missing python3-venv"
fi
if [ "$want" = test ]; then
    command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
    command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
    [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$missing fonts-dejavu-core"
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
    command -v pg_dump >/dev/null 2>&1 || missing="$missing postgresql-client"
    command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing="$missing mariadb-server"
    command -v mariadb-dump >/dev/null 2>&1 || missing="$missing mariadb-client"
    command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing="$missing debootstrap"
    command -v systemd-nspawn >/dev/null 2>&1 || missing="$missing systemd-container"
    command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
    command -v prometheus-node-exporter >/dev/null 2>&1 || missing="$missing prometheus-node-exporter"
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
    SUDO=
elif command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
else
    echo "missing Debian packages:$missing" >&2
    echo "install them as root: apt-get install$missing" >&2
    exit 1
fi
echo "installing Debian packages:$missing"
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
