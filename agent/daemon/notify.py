"""systemd's sd_notify protocol: one datagram to $NOTIFY_SOCKET per message.

The protocol is a few lines (sd_notify(3)); the libraries that wrap it add a C build
(systemd-python) or are unmaintained, so it is written here.
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send e.g. "READY=1", "STATUS=...", "WATCHDOG=1", "STOPPING=1"; False without systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
        return True
    except OSError:
        return False  # systemd gone (shutdown): never fatal to the daemon


def watchdog_interval() -> float | None:
    """Half the watchdog period systemd asks for (WatchdogSec=), in seconds, or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.5, int(usec) / 2_000_000)
    except ValueError:
        return None
