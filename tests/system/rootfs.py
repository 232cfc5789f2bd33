"""A Debian 12 root file system for the system test, built once with debootstrap and cached
outside the checkout; each test run boots a fresh copy of it.

Why a cache: debootstrap downloads and unpacks about 200 packages (minutes); a copy of the
cached tree takes seconds. The cache name holds a hash of everything that shapes the tree
(suite, mirror, package list, the builder's version), so a change to any of them builds anew.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

SUITE = "bookworm"
MIRROR = os.environ.get("BACKUPCTL_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What a practice server has: systemd as PID 1 and its D-Bus, Python 3 with venv (the
# installer's apt-get path is not exercised offline), polkit for the hook units' rule.
# (libpam-systemd: debootstrap does not pick polkitd's "default-logind | logind" itself.)
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "polkitd", "libpam-systemd", "util-linux")
BUILDER_VERSION = "1"
CACHE = Path(os.environ.get("BACKUPCTL_TEST_CACHE", "/var/cache/backupctl-tests"))


def cache_path() -> Path:
    digest = hashlib.sha256("\n".join((SUITE, MIRROR, BUILDER_VERSION, *PACKAGES)).encode()).hexdigest()[:12]
    return CACHE / f"{SUITE}-{digest}"


def _log(text: str) -> None:
    print(f"[system test] {text}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def cache_lock():  # type: ignore[no-untyped-def]
    """One builder at a time: two test sessions on one machine wait for each other."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def cached_root() -> Path:
    """The cached tree, built when missing (a half-built tree never takes its name)."""
    with cache_lock():
        return _cached_root()


def _cached_root() -> Path:
    final = cache_path()
    if (final / ".complete").is_file():
        return final
    building = final.with_name(final.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    started = time.monotonic()
    _log(f"building the Debian {SUITE} root with debootstrap into {final} (once; cached)")
    subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
                    str(building), MIRROR], check=True, stdout=subprocess.DEVNULL)
    # A clean machine id is generated at the first boot of each copy; no apt lists kept.
    (building / "etc" / "machine-id").write_text("")
    shutil.rmtree(building / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (building / ".complete").write_text(f"{SUITE} {' '.join(PACKAGES)}\n")
    shutil.rmtree(final, ignore_errors=True)
    building.rename(final)
    _log(f"root built in {time.monotonic() - started:.0f} s")
    return final


def fresh_copy(destination: Path) -> Path:
    """A private copy of the cached root for one run (reflinks where the file system has them)."""
    source = cached_root()
    subprocess.run(["cp", "-a", "--reflink=auto", str(source), str(destination)], check=True)
    (destination / ".complete").unlink()
    return destination


if __name__ == "__main__":
    print(cached_root())
