#!/bin/sh
# Debian packages the test suite uses as real parts (called by `make test`):
#   chromium           renders the restore-test report to PNG and PDF (tests/integration/test_report.py)
#   fonts-dejavu-core  the report's font, so pages render the same everywhere
# Installs only what is missing; needs root (CI runs as root) or sudo.
set -eu
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing="$missing fonts-dejavu-core"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
echo "installing Debian packages:$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
