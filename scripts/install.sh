#!/bin/sh
# Installs (or brings up to date) backupctl on this Debian 12 server, offline, from the rescue
# kit this script is in (or from a checkout after `make dist`); run as root:
#
#   sudo sh install.sh [--s3-credentials-file FILE] [--smtp-password-file FILE]
#                      [--passphrase-file FILE] [--config FILE] [--kit-tar FILE]
#   sudo sh install.sh --uninstall
#
# 1. python3-venv from Debian when missing (the only step that needs the network);
# 2. the venv /opt/backupctl, from the kit's wheels only, each checked against the hash
#    pinned in requirements.txt (pip --no-index --require-hashes);
# 3. the kit's tar (backupctl-rescue-kit-<version>.tar, beside the kit folder, or --kit-tar)
#    into /opt/backupctl/share/backupctl/, where the agent finds it to upload it;
# 4. `/opt/backupctl/bin/backupctl install-service` with the other options: the service user,
#    folders, unit, credentials, the /usr/local/bin/backupctl wrapper, the repositories, and the
#    service started (docs/INSTALL.md, "Installing on the practice server").
# Running it again after a change of /etc/backupctl/config.toml applies the change.
# --uninstall removes the service and the venv; configuration, state, credentials and every
# repository are kept.
set -eu
VENV=/opt/backupctl
say() { printf 'install.sh: %s\n' "$*"; }
fail() { printf 'install.sh: error: %s\n' "$*" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)

kit_tar=""
uninstall=no
passphrase_given=no
n=$#
while [ "$n" -gt 0 ]; do
  a=$1; shift; n=$((n - 1))
  case $a in
    --kit-tar) [ "$n" -gt 0 ] || fail "--kit-tar needs a file"; kit_tar=$1; shift; n=$((n - 1)); continue ;;
    --kit-tar=*) kit_tar=${a#--kit-tar=}; continue ;;
    --uninstall) uninstall=yes ;;
    --passphrase-file|--passphrase-file=*) passphrase_given=yes ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  esac
  set -- "$@" "$a"
done
[ "$(id -u)" -eq 0 ] || fail "run it as root: sudo sh $0"

if [ "$uninstall" = yes ]; then
  if [ -x "$VENV/bin/backupctl" ]; then
    "$VENV/bin/backupctl" install-service "$@"
  fi
  rm -rf "$VENV"
  say "removed $VENV (the program). Kept: /etc/backupctl, /var/lib/backupctl, the credentials, every repository;"
  say "each repository holds the rescue kit to install the program again."
  exit 0
fi

if [ -f "$here/requirements.txt" ] && [ -d "$here/wheels" ]; then
  kit=$here
elif [ -f "$here/../dist/rescue-kit/requirements.txt" ]; then
  kit=$(cd "$here/../dist/rescue-kit" && pwd)
else
  fail "no rescue kit here (wheels/ and requirements.txt beside install.sh): run it from the unpacked kit, or run \`make dist\` in the checkout first"
fi

# install-service decides the same, later; asked here too so that a refusal changes nothing.
if [ ! -e /etc/credstore.encrypted/backupctl-passphrase ] && [ "$passphrase_given" = no ] \
    && ! { [ -t 0 ] && [ -t 1 ]; }; then
  fail "no terminal to show the new passphrase on, and no --passphrase-file — run the install from a terminal (the passphrase is shown once, for the paper sheet), or write it in a file and give --passphrase-file FILE"
fi

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  say "installing python3-venv from Debian"
  apt-get update -qq || fail "apt-get update failed: check the network or the Debian mirror, then run install.sh again"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null \
    || fail "apt-get install python3-venv failed: install it, then run install.sh again"
fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating the venv $VENV"
  python3 -m venv "$VENV"
fi
say "installing backupctl from $kit (offline, hashes checked)"
# PIP_CONFIG_FILE=/dev/null: no index or mirror of this machine's pip configuration is used.
PIP_CONFIG_FILE=/dev/null "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-index \
  --find-links "$kit/wheels" --require-hashes -r "$kit/requirements.txt" \
  || fail "pip could not install the kit's wheels (see above); nothing of the service was changed"

version=$("$VENV/bin/backupctl" --version | sed 's/.* //')
[ -n "$kit_tar" ] || kit_tar=$(dirname "$kit")/backupctl-rescue-kit-$version.tar
if [ -f "$kit_tar" ]; then
  mkdir -p "$VENV/share/backupctl"
  if ! cmp -s "$kit_tar" "$VENV/share/backupctl/$(basename "$kit_tar")"; then
    cp "$kit_tar" "$VENV/share/backupctl/"
    [ ! -f "$kit_tar.sha256" ] || cp "$kit_tar.sha256" "$VENV/share/backupctl/"
    say "kit $(basename "$kit_tar") kept in $VENV/share/backupctl/ (uploaded into each repository)"
  fi
else
  say "no kit tar at $kit_tar: the repositories will not get a copy of the kit from this server (--kit-tar FILE)"
fi

exec "$VENV/bin/backupctl" install-service "$@"
