"""The metrics (agent/daemon/metrics.py) in Prometheus's text format: on standard output,
as node_exporter's textfile (written to a new temporary file and renamed: the collector
never reads half a file), or served on a loopback port. The one module that imports
prometheus_client (tests/unit/test_layers.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent import clock
from agent.config import Config
from agent.daemon.metrics import Family, families, read_facts
from agent.errors import BackupctlError, StateDirError

log = logging.getLogger("backupctl.daemon")

TEXTFILE_NAME = "backupctl.prom"  # node_exporter reads *.prom in its textfile directory


class _Families(Collector):
    """Each collection computes the families anew (the server's at most every REFRESH s)."""

    def __init__(self, provide: Callable[[], list[Family]]) -> None:
        self.provide = provide

    def collect(self) -> Iterable[Metric]:
        for family in self.provide():
            gauge = GaugeMetricFamily(family.name, family.help, labels=list(family.labels))
            for values, value in family.samples:
                gauge.add_metric(list(values), value)
            yield gauge


def _registry(provide: Callable[[], list[Family]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(provide))
    return registry


def exposition(families: list[Family]) -> bytes:
    """The text format (version 0.0.4), as `promtool check metrics` and node_exporter read it."""
    return generate_latest(_registry(lambda: families))


def write_textfile(folder: str, families: list[Family]) -> str:
    """folder/backupctl.prom, replaced atomically; readable by node_exporter's user (0644).
    The temporary file is created anew (O_EXCL, O_NOFOLLOW: never through a link), its mode
    set on the open descriptor whatever the unit's UMask=0077, written, synced, renamed: no
    call takes the path after the rename, which a link swapped in could redirect."""
    path = os.path.join(folder, TEXTFILE_NAME)
    temporary = os.path.join(folder, f".{TEXTFILE_NAME}.{secrets.token_hex(8)}.tmp")  # not *.prom: never read
    body = exposition(families)
    try:
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.fchmod(handle, 0o644)  # counts, dates and rule states: no secret; node_exporter has its own user
            view = memoryview(body)
            while view:
                view = view[os.write(handle, view):]
            os.fsync(handle)
        finally:
            os.close(handle)
        os.rename(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise StateDirError(f"the metrics cannot be written to {folder} ({exc.strerror or exc})",
                            hint="[metrics] textfile_dir must be a folder this user may write "
                                 "(docs/INSTALL.md, \"Monitoring a fleet\")") from None
    return path


CONNECTION_TIMEOUT = 5.0  # seconds a connection may stay silent before it is closed
MAX_CONNECTIONS = 8        # served at once; any more is closed as it is accepted
REFRESH = 15.0             # seconds an exposition is served again before it is computed anew


class _Exposition:
    """The text served, computed at most every `refresh` seconds however often it is asked:
    a client scraping in a loop cannot keep the daemon reading its state directory."""

    def __init__(self, provide: Callable[[], list[Family]], refresh: float) -> None:
        self._registry = _registry(provide)
        self._refresh = refresh
        self._lock = threading.Lock()
        self._body: bytes | None = None
        self._at = 0.0

    def get(self) -> bytes:
        with self._lock:
            now = time.monotonic()
            if self._body is None or now - self._at >= self._refresh:
                self._body, self._at = generate_latest(self._registry), now
            return self._body


class _Handler(WSGIRequestHandler):
    timeout = CONNECTION_TIMEOUT  # StreamRequestHandler sets it on the connection: an idle one is closed

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Nothing per request in the journal."""


class _BoundedServer(ThreadingMixIn, WSGIServer):
    """A thread per connection as prometheus_client's server, but at most MAX_CONNECTIONS of
    them: beyond, a connection is closed at once (a thousand idle ones took a thread and a
    file descriptor each, and the daemon could no longer start a backup's child)."""

    daemon_threads = True
    request_queue_size = 64  # the listen backlog: connections wait there to be accepted, or closed

    def __init__(self, address: tuple[str, int], family: int, limit: int) -> None:
        self.address_family = family
        self._slots = threading.BoundedSemaphore(limit)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that timed out or broke: one debug line, never a traceback on stderr."""
        log.debug("metrics connection closed: %s", type(sys.exc_info()[1]).__name__)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class Server:
    """/metrics on a loopback address, in a thread of this process: each connection is
    given CONNECTION_TIMEOUT seconds, at most MAX_CONNECTIONS at once, and the text is
    computed at most every `refresh` seconds."""

    def __init__(self, address: tuple[str, int], provide: Callable[[], list[Family]], *,
                 refresh: float = REFRESH, limit: int = MAX_CONNECTIONS) -> None:
        host, port = address
        text = _Exposition(provide, refresh)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            try:
                body = text.get()
            except Exception as exc:  # noqa: BLE001 - a bug in the metrics must never stop the server
                log.error("metrics not served: %s", type(exc).__name__)
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
                return [b"metrics unavailable\n"]
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
            return [body]

        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                           flags=socket.AI_PASSIVE)[0]
            self._server = _BoundedServer((str(sockaddr[0]), port), family, limit)
        except OSError as exc:
            raise StateDirError(f"the metrics cannot be served on {host}:{port} ({exc.strerror or exc})",
                                hint="[metrics] listen: choose a free port") from None
        self._server.set_app(app)
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()

    @property
    def server(self) -> WSGIServer:
        return self._server

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


# ---- the daemon's side ----------------------------------------------------------------------

def publish(config: Config, *, daemon_up: bool | None = None) -> str | None:
    """Write [metrics] textfile_dir's file (None when not configured). Never raises: the
    daemon's jobs go on whatever the monitoring's folder is; the failure is logged."""
    if config.metrics.textfile_dir is None:
        return None
    try:
        return write_textfile(config.metrics.textfile_dir,
                              families(read_facts(config, clock.now(), daemon_up=daemon_up)))
    except BackupctlError as exc:
        log.error("metrics not written: %s", exc.one_line())
    except Exception as exc:  # noqa: BLE001 - a bug in the metrics must never stop the schedule
        log.error("metrics not written: %s", type(exc).__name__)
    return None


def serve(config: Config, current: Callable[[], Config]) -> Server | None:
    """The loopback /metrics server of [metrics] listen (None when not configured), computed
    at most every REFRESH seconds from `current()` (the configuration as reloaded since); the
    daemon serves it, so backupctl_daemon_up is 1 there (a reload that changes the address
    starts a new server: agent/daemon/service.py)."""
    if config.metrics.listen is None:
        return None
    server = Server(config.metrics.listen, lambda: families(read_facts(current(), clock.now(), daemon_up=True)))
    log.info("metrics served on http://%s:%s/metrics", *config.metrics.listen)
    return server
