"""/usr/local/bin/backupctl: what a person (or a script) runs on the installed server.

It runs the real program, /opt/backupctl/bin/backupctl, as the service user with the
service's credentials, through `systemd-run --wait`: a transient unit with the properties
of backupctl.service itself (read from the unit and its drop-ins when the wrapper is written),
so a command typed by hand writes the repositories and the state folder exactly as the
daemon does: same owner, same sandbox. A repository `init`ed or a disk prepared by hand is
then writable by the daemon, which it was not when root ran them.

Restoring is the exception. `restore`, `export`, `recover`, `reports get` and `key export`
write to a target a person chooses (anywhere, owned by anyone), so they run without the
read-only file system and with the capabilities restoring owners needs (CAP_CHOWN,
CAP_FOWNER, CAP_FSETID, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH): as the service user still,
but able to write where root could.

The command runs in the caller's folder, entered with `env --chdir` once the capabilities
apply (systemd-run --same-dir enters it as the bare service user: denied in /root).
`--pty` when both standard input and output are a terminal (progress bars, prompts),
`--pipe` otherwise: a pty would turn "\\n" into "\\r\\n" in `dump > file`. systemd expands
"$VAR" in a transient unit's command line, so each "$" of the arguments is doubled.
"""

from __future__ import annotations

import shlex

from agent.service_install import apt_hook, layout

# The unit's lifecycle, not its sandbox: meaningless for a command run once.
_LIFECYCLE = frozenset({"Type", "NotifyAccess", "ExecStart", "ExecStartPre", "ExecStartPost", "ExecReload",
                        "ExecStop", "ExecStopPost", "TimeoutStopSec", "TimeoutStartSec", "TimeoutSec",
                        "Restart", "RestartSec", "WatchdogSec"})
# What the commands writing a chosen target drop, and the capabilities they get instead.
_WRITER_DROPS = frozenset({"ProtectSystem", "ProtectHome", "PrivateTmp", "ReadWritePaths",
                           "CapabilityBoundingSet", "AmbientCapabilities", "RestrictSUIDSGID"})
WRITER_CAPABILITIES = "CAP_CHOWN CAP_FOWNER CAP_FSETID CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH"
WRITER_COMMANDS = ("restore", "export", "recover", "reports get", "key export")


def sandbox_properties(properties: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(key, value) for key, value in properties if key not in _LIFECYCLE]


def writer_properties(properties: list[tuple[str, str]]) -> list[tuple[str, str]]:
    kept = [(key, value) for key, value in sandbox_properties(properties)
            if key not in _WRITER_DROPS
            # ~@privileged holds chown(2), fchown(2): restoring owners needs them.
            and not (key == "SystemCallFilter" and value.startswith("~"))]
    return kept + [("CapabilityBoundingSet", WRITER_CAPABILITIES), ("AmbientCapabilities", WRITER_CAPABILITIES)]


def _quoted_property(key: str, value: str) -> str:
    """One `-p KEY=VALUE` argument as shell text; "%d" (the credentials directory in a unit
    file) becomes the transient unit's own, which systemd-run does not expand."""
    parts = f"{key}={value}".split("%d")
    if any("%" in part for part in parts):
        raise ValueError(f"unit property {key}={value}: a % specifier the wrapper cannot translate")
    return '-p ' + '"$cred_dir"'.join(shlex.quote(part) if part else "" for part in parts)


def _property_lines(properties: list[tuple[str, str]]) -> str:
    return "".join(f"    {_quoted_property(key, value)} \\\n" for key, value in properties)


def render(properties: list[tuple[str, str]], *, media_mounts: tuple[str, ...]) -> str:
    """The wrapper script, from the service's [Service] properties (units.service_properties)."""
    mounts = " ".join(shlex.quote(m) for m in media_mounts)
    return f"""#!/bin/sh
{layout.WRAPPER_MARKER}
# Written by `backupctl install-service`; a re-run rewrites it (do not edit).
# Runs {layout.PROGRAM} as the service user {layout.SERVICE_USER}, with the credentials and the
# sandbox of {layout.UNIT_NAME}, through systemd-run (see agent/service_install/wrapper.py):
# what it writes in the repositories and the state folder belongs to the service.
# restore, export, recover, reports get and key export write a target of your choosing: they
# run without the read-only file system, with {WRITER_CAPABILITIES}.
set -u
if [ "$(id -u)" -ne 0 ]; then
  echo "backupctl: error: run it as root (sudo backupctl ...):" \\
    "it runs the command as the service user {layout.SERVICE_USER}" >&2
  exit 2
fi
first=""; second=""
for a do
  case $a in
    -*) ;;
    *) if [ -z "$first" ]; then first=$a; elif [ -z "$second" ]; then second=$a; break; fi ;;
  esac
done
mode=service
limit=""
case "$first $second" in
  "pre-installation "*)
    # The apt hook's command: its unit stopped by systemd past the hook's time (the hook's
    # `timeout` stops systemd-run only).
    limit="-p RuntimeMaxSec={apt_hook.RUNTIME_MAX_S}" ;;
  "restore "*|"export "*|"recover "*|"reports get"|"key export") mode=writer ;;
  "media init")
    # A freshly formatted disk's top folder belongs to root: give it to the service, which
    # then writes the label and the repository there as the daemon will later.
    for m in {mounts or '""'}; do
      if [ -n "$m" ] && mountpoint -q "$m" && [ "$(stat -c %U "$m")" != {layout.SERVICE_USER} ]; then
        chown {layout.SERVICE_USER}:{layout.SERVICE_USER} "$m" && chmod 0700 "$m" || exit 1
      fi
    done ;;
esac
# systemd expands $VAR in a transient unit's command line: "$$" keeps a "$" of the arguments.
for a do
  shift
  case $a in *'$'*) a=$(printf '%s\\n' "$a" | sed 's/\\$/$$/g') ;; esac
  set -- "$@" "$a"
done
# The caller's folder, entered once the service user has its capabilities (systemd's own
# --same-dir enters it before, and fails on a 0700 home such as /root).
here=$(pwd | sed 's/\\$/$$/g')
unit="backupctl-command-$$-$(date +%s%N).service"
cred_dir="/run/credentials/$unit"
if [ -t 0 ] && [ -t 1 ]; then io=--pty; else io=--pipe; fi
if [ "$mode" = writer ]; then
  exec systemd-run --quiet --wait --collect "$io" --unit="$unit" \\
    --description="backupctl command (restoring)" \\
{_property_lines(writer_properties(properties))}    -- /usr/bin/env --chdir="$here" \\
    {layout.PROGRAM} --config {layout.CONFIG} "$@"
fi
exec systemd-run --quiet --wait --collect "$io" --unit="$unit" \\
  --description="backupctl command" $limit \\
{_property_lines(sandbox_properties(properties))}  -- /usr/bin/env --chdir="$here" \\
  {layout.PROGRAM} --config {layout.CONFIG} "$@"
"""
