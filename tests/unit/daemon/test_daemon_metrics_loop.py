"""The daemon writes the metrics' textfile at start and then every HEARTBEAT from its own
loop (docs/INSTALL.md "Monitoring a fleet": a fleet's "metrics stale" alert watches the file's
age), not only as jobs end."""

from __future__ import annotations

import threading
from pathlib import Path

from agent.daemon import metrics_export, notify, service
from tests.support.waits import wait_until


def _daemon(tmp_path: Path) -> service.Daemon:
    folder = tmp_path / "textfile"
    folder.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[source]\npaths = ["{tmp_path}"]\n'
                      f'[repositories.main]\nurl = "file://{tmp_path / "repo"}"\n'
                      f'[metrics]\ntextfile_dir = "{folder}"\n', encoding="utf-8")
    return service.Daemon(str(config))


def _recorded(monkeypatch) -> list[bool | None]:
    written: list[bool | None] = []
    monkeypatch.setattr(metrics_export, "publish", lambda _config, *, daemon_up=None: written.append(daemon_up))
    return written


def test_the_textfile_is_written_as_the_daemon_starts(tmp_path, monkeypatch):
    daemon = _daemon(tmp_path)
    written = _recorded(monkeypatch)
    monkeypatch.setattr(metrics_export, "serve", lambda *_args: None)
    assert daemon._start_metrics() is None
    assert written == [True]


def test_the_loop_rewrites_the_textfile_without_any_job(tmp_path, monkeypatch):
    daemon = _daemon(tmp_path)
    written = _recorded(monkeypatch)
    monkeypatch.setattr(notify, "watchdog_interval", lambda: 0.05)  # the loop wakes every 50 ms
    monkeypatch.setattr(notify, "notify", lambda _text: None)
    monkeypatch.setattr(service, "HEARTBEAT", 0)
    monkeypatch.setattr(daemon, "status_text", lambda _scheduler: "")
    loop = threading.Thread(target=daemon._loop, args=(None, None), daemon=True)
    loop.start()
    try:
        wait_until(lambda: len(written) >= 3, timeout=10, what="three heartbeats of the daemon's loop")
    finally:
        daemon._stop = True
        daemon._wake.set()
        loop.join(timeout=10)
    assert not loop.is_alive() and set(written) == {True}
