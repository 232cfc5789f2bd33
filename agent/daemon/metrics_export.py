"""The metrics (agent/daemon/metrics.py) in Prometheus's text format: on standard output,
as node_exporter's textfile (written to a temporary file and renamed: the collector never
reads half a file), or served on a loopback port. The one module that imports
prometheus_client (tests/unit/test_layers.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server, write_to_textfile
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent import clock
from agent.config import Config
from agent.daemon.metrics import Family, families, read_facts
from agent.errors import BackupctlError, StateDirError

log = logging.getLogger("backupctl.daemon")

TEXTFILE_NAME = "backupctl.prom"  # node_exporter reads *.prom in its textfile directory


class _Families(Collector):
    """Each scrape computes the families anew (the HTTP server's values are never stale)."""

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
    """folder/backupctl.prom, replaced atomically; readable by node_exporter's user."""
    path = os.path.join(folder, TEXTFILE_NAME)
    try:
        write_to_textfile(path, _registry(lambda: families))
        os.chmod(path, 0o644)  # counts, dates and rule states: no secret, and node_exporter runs as its own user
    except OSError as exc:
        raise StateDirError(f"the metrics cannot be written to {folder} ({exc.strerror or exc})",
                            hint="[metrics] textfile_dir must be a folder this user may write "
                                 "(node_exporter's --collector.textfile.directory)") from None
    return path


class Server:
    """/metrics on a loopback address, in a thread of this process."""

    def __init__(self, address: tuple[str, int], provide: Callable[[], list[Family]]) -> None:
        host, port = address
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=_registry(provide))
        except OSError as exc:
            raise StateDirError(f"the metrics cannot be served on {host}:{port} ({exc.strerror or exc})",
                                hint="[metrics] listen: choose a free port") from None

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
    """The loopback /metrics server of [metrics] listen (None when not configured), each
    scrape computed afresh from `current()` (the configuration as reloaded since); the
    daemon serves it, so backupctl_daemon_up is 1 there (a reload that changes the address
    starts a new server: agent/daemon/service.py)."""
    if config.metrics.listen is None:
        return None
    server = Server(config.metrics.listen, lambda: families(read_facts(current(), clock.now(), daemon_up=True)))
    log.info("metrics served on http://%s:%s/metrics", *config.metrics.listen)
    return server
