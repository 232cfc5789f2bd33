"""agent.daemon.metrics (facts from the state directory -> metric families, pure) and
agent.daemon.metrics_export (the text format, the textfile, the loopback server), and the
[metrics] configuration. The real tools (promtool, node_exporter) are in
tests/integration/test_metrics_tools.py."""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from agent import config as config_module
from agent.daemon import metrics, metrics_export
from agent.daemon.jobs import JobRecord, StepResult
from agent.engine.inventory import INVENTORY_RECORD, group_digest
from agent.engine.retention import RetentionPolicy
from agent.errors import ConfigError
from agent.state.records import Event, Records

NOW = _dt.datetime(2026, 6, 17, 12, 0, tzinfo=_dt.timezone.utc)  # a Wednesday, mid-June
SOURCE = "/srv/cabinet/patients/Dupont Jeanne"  # a folder name that is health data


def _config(tmp_path: Path, extra: str = "") -> config_module.Config:
    path = tmp_path / "config.toml"
    path.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[source]\npaths = ["{SOURCE}"]\n'
                    f'[repositories.main]\nurl = "file://{tmp_path / "repo"}"\n'
                    f'[repositories.offsite]\nurl = "s3://bucket/cabinet"\nendpoint = "https://s3.example"\n'
                    f'object_lock = "governance"\n{extra}', encoding="utf-8")
    return config_module.load(str(path))


def _snapshots(days: int, *, hour: int = 20) -> list[dict[str, object]]:
    """One snapshot a day for `days` days before NOW, oldest first."""
    out = []
    for back in range(days, 0, -1):
        moment = (NOW - _dt.timedelta(days=back)).replace(hour=hour)
        out.append({"id": f"{back:032x}", "time": moment.isoformat(), "tags": [],
                    "group": group_digest("cabinet", [SOURCE])})
    return out


def _inventory(records: Records, snapshots: list[dict[str, object]], **extra: object) -> None:
    latest = {"id": snapshots[-1]["id"], "time": snapshots[-1]["time"], "partial": False, "files_new": 3,
              "files_changed": 2, "files_unchanged": 995, "bytes_total": 5_000_000, "bytes_added": 12_345,
              "duration_s": 42.5, "warnings": 1}
    records.note(INVENTORY_RECORD, NOW - _dt.timedelta(hours=1), medium=None, created="2026-01-05T10:00:00+00:00",
                 cipher="xchacha20-poly1305", packs=7, size_bytes=123_456_789, snapshots=snapshots,
                 unreadable_snapshots=0, latest=latest, **extra)


def _values(families: list[metrics.Family]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(f.name, tuple(zip(f.labels, values, strict=True))): value for f in families for values, value in f.samples}


@pytest.fixture
def world(tmp_path: Path) -> config_module.Config:
    config = _config(tmp_path)
    state = config.agent.state_dir
    main = Records(state, "main")
    main.note("backup", NOW - _dt.timedelta(days=1), snapshot="ab" * 16, partial=True)
    main.note("check", NOW - _dt.timedelta(days=2), ok=False)
    main.note("restore_test", NOW - _dt.timedelta(days=10), ok=True)
    _inventory(main, _snapshots(60))
    record = JobRecord(state)
    record.save("weekly:main", started=NOW - _dt.timedelta(days=1), ok=True,
                steps=[StepResult("backup", 3, 40.0), StepResult("prune", 0, 2.5)])
    record.save("check:main", started=NOW - _dt.timedelta(days=2), ok=False, steps=[StepResult("check", 14, 9.0)])
    return config


def test_each_repository_and_job_has_its_values(world):
    values = _values(metrics.families(metrics.read_facts(world, NOW, daemon_up=True)))
    main = (("repository", "main"),)
    assert values[("backupctl_daemon_up", ())] == 1
    assert values[("backupctl_metrics_timestamp_seconds", ())] == NOW.timestamp()
    assert values[("backupctl_last_backup_timestamp_seconds", main)] == (NOW - _dt.timedelta(days=1)).timestamp()
    assert values[("backupctl_last_backup_partial", main)] == 1
    assert values[("backupctl_last_check_success", main)] == 0
    assert values[("backupctl_last_check_timestamp_seconds", main)] == (NOW - _dt.timedelta(days=2)).timestamp()
    assert values[("backupctl_last_restore_test_success", main)] == 1
    assert values[("backupctl_repository_size_bytes", main)] == 123_456_789
    assert values[("backupctl_snapshots", main)] == 60
    assert values[("backupctl_backup_last_files", main)] == 1000
    assert values[("backupctl_backup_last_bytes", main)] == 5_000_000
    assert values[("backupctl_backup_last_added_bytes", main)] == 12_345
    assert values[("backupctl_backup_last_duration_seconds", main)] == 42.5
    weekly = (("repository", "main"), ("task", "weekly"))
    assert values[("backupctl_job_last_run_success", weekly)] == 1
    assert values[("backupctl_job_last_duration_seconds", weekly)] == 42.5
    assert values[("backupctl_job_last_exit_code", weekly)] == 3  # saved with warnings: its code, not a failure
    check = (("repository", "main"), ("task", "check"))
    assert values[("backupctl_job_last_run_success", check)] == 0
    assert values[("backupctl_job_last_exit_code", check)] == 14
    assert values[("backupctl_job_last_success_timestamp_seconds", check)] == 0
    # never happened: 0, so that "time() - x > 8 days" fires for a repository never backed up
    offsite = (("repository", "offsite"),)
    assert values[("backupctl_last_backup_timestamp_seconds", offsite)] == 0
    assert values[("backupctl_last_restore_test_timestamp_seconds", offsite)] == 0
    assert ("backupctl_repository_size_bytes", offsite) not in values  # no inventory yet: no size claimed


def test_object_lock_mode_is_one_hot(world):
    values = _values(metrics.families(metrics.read_facts(world, NOW)))
    modes = {m: values[("backupctl_object_lock_mode", (("repository", "offsite"), ("mode", m)))]
             for m in ("none", "governance", "compliance")}
    assert modes == {"none": 0, "governance": 1, "compliance": 0}
    assert values[("backupctl_object_lock_mode", (("repository", "main"), ("mode", "none")))] == 1


def test_snapshots_per_tier_follow_the_retention_policy():
    """60 daily snapshots up to yesterday (mid-June): the policy keeps 6 of the last 7 days
    (none today yet), 4 ISO weeks, 3 months (April, May, June), 1 year."""
    inventory = Event(NOW, {"snapshots": _snapshots(60)})
    policy = RetentionPolicy(daily=7, weekly=4, monthly=12, yearly=20)
    assert metrics.snapshots_per_tier(inventory, policy, NOW) == {"daily": 6, "weekly": 4, "monthly": 3, "yearly": 1}
    assert metrics.snapshots_per_tier(inventory, RetentionPolicy(daily=0, weekly=2, monthly=1, yearly=0), NOW) == \
        {"daily": 0, "weekly": 2, "monthly": 1, "yearly": 0}


def test_compliance_rules_are_judged_from_the_inventory(world):
    values = _values(metrics.families(metrics.read_facts(world, NOW)))

    def state(rule: str) -> str:
        [on] = [s for s in ("OK", "WARN", "FAIL")
                if values[("backupctl_compliance_rule_state", (("rule", rule), ("state", s)))] == 1]
        return on

    assert state("S1") == "OK"  # yesterday's snapshot, read from the inventory (no repository opened)
    assert state("S8") == "OK"  # offsite: governance object lock
    assert state("S7") == "FAIL"  # offsite: no restore test
    assert state("C1-C4") == "WARN"  # offsite: no inventory yet, its cipher unknown
    assert values[("backupctl_compliance_rule_level", (("rule", "S7"),))] == 2
    assert values[("backupctl_compliance_rule_level", (("rule", "S1"),))] == 0


def test_without_any_inventory_s1_fails(tmp_path):
    config = _config(tmp_path)
    values = _values(metrics.families(metrics.read_facts(config, NOW)))
    assert values[("backupctl_compliance_rule_state", (("rule", "S1"), ("state", "FAIL")))] == 1


def test_obligations_at_risk_are_those_of_status(world):
    values = _values(metrics.families(metrics.read_facts(world, NOW)))
    main = {risk: values[("backupctl_obligation_at_risk", (("repository", "main"), ("risk", risk)))]
            for risk in metrics.RISK_CODES}
    assert {r for r, v in main.items() if v} == {"check_damage"}
    assert values[("backupctl_obligation_at_risk", (("repository", "offsite"), ("risk", "no_backup")))] == 1
    assert "no_monthly" in metrics.RISK_CODES and "daemon_stopped" not in metrics.RISK_CODES


def test_ransomware_suspected_while_the_alarm_is_open(world):
    state = world.agent.state_dir
    key = ("backupctl_ransomware_suspected", (("repository", "main"),))
    assert _values(metrics.families(metrics.read_facts(world, NOW)))[key] == 0
    Records(state, "main").note("ransomware_alarm", NOW, open=True, snapshot="cd" * 16, last_good="ab" * 16)
    assert _values(metrics.families(metrics.read_facts(world, NOW)))[key] == 1
    Records(state, "main").note("ransomware_alarm", NOW, open=False, snapshot="cd" * 16, last_good=None)
    assert _values(metrics.families(metrics.read_facts(world, NOW)))[key] == 0


def _rule_state(config: config_module.Config, rule: str) -> str:
    values = _values(metrics.families(metrics.read_facts(config, NOW)))
    [on] = [s for s in ("OK", "WARN", "FAIL")
            if values[("backupctl_compliance_rule_state", (("rule", rule), ("state", s)))] == 1]
    return on


def test_rule_r1_fails_while_a_suspect_snapshot_of_the_inventory_is_not_acknowledged(world):
    """R1 as `compliance` judges it (agent.engine.alarm.open_alarm), from the inventory's tags."""
    from agent.state.alarm_state import note_alarm

    records = Records(world.agent.state_dir, "main")
    assert _rule_state(world, "R1") == "OK"
    snapshots = _snapshots(60)
    snapshots[-1]["tags"] = ["suspect"]
    _inventory(records, snapshots)
    assert _rule_state(world, "R1") == "FAIL"
    note_alarm(records, NOW, open=False, snapshot=str(snapshots[-1]["id"]), last_good=None, counts={},
               acknowledge=str(snapshots[-1]["id"]), by="test")
    assert _rule_state(world, "R1") == "OK"


def test_rule_s5_reads_dpkg_s_log_and_the_inventory_s_copies(tmp_path):
    log = tmp_path / "dpkg.log"
    _config(tmp_path)
    text = (tmp_path / "config.toml").read_text(encoding="utf-8")
    (tmp_path / "config.toml").write_text(text.replace("[source]", f'dpkg_log = "{log}"\n[source]', 1),
                                          encoding="utf-8")
    config = config_module.load(str(tmp_path / "config.toml"))
    change = (NOW - _dt.timedelta(hours=1)).astimezone()  # dpkg logs the machine's local time
    log.write_text(f"{change:%Y-%m-%d %H:%M:%S} install hello:amd64 <none> 1.0\n", encoding="utf-8")
    assert _rule_state(config, "S5") == "WARN"  # no inventory: whether a copy exists cannot be told
    snapshots = _snapshots(3)
    for name in ("main", "offsite"):
        _inventory(Records(config.agent.state_dir, name), snapshots)
    assert _rule_state(config, "S5") == "FAIL"  # the change has no copy before it
    snapshots.append({"id": "ee" * 16, "time": (NOW - _dt.timedelta(hours=2)).isoformat(),
                      "tags": ["avant-installation"], "group": group_digest("cabinet", [SOURCE])})
    _inventory(Records(config.agent.state_dir, "main"), snapshots)
    assert _rule_state(config, "S5") == "OK"


def test_daemon_up_follows_the_daemons_lock_unless_told(world):
    assert _values(metrics.families(metrics.read_facts(world, NOW)))[("backupctl_daemon_up", ())] == 0
    assert _values(metrics.families(metrics.read_facts(world, NOW, daemon_up=False)))[("backupctl_daemon_up", ())] == 0
    # A daemon holds its lock (agent/daemon/service.py): `backupctl metrics` by hand says it is up.
    import fcntl

    from agent.state.layout import StateLayout

    lock = StateLayout(world.agent.state_dir).daemon_lock()
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    with open(lock, "w", encoding="ascii") as handle:
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_EX)
        assert _values(metrics.families(metrics.read_facts(world, NOW)))[("backupctl_daemon_up", ())] == 1


def test_no_label_value_is_a_path_or_a_file_name(world):
    """Labels name repositories, jobs, rules, tiers, modes, codes: never a folder of the
    practice (the inventory keeps a digest of the backed-up paths, not the paths)."""
    Records(world.agent.state_dir, "main").note("ransomware_alarm", NOW, open=True, snapshot="cd" * 16)
    found = metrics.families(metrics.read_facts(world, NOW))
    values = {v for f in found for labels, _ in f.samples for v in labels}
    assert values and not [v for v in values if "/" in v or "Dupont" in v or "." in v and v != metrics.__version__]
    text = metrics_export.exposition(found).decode()
    assert "Dupont" not in text and "/srv" not in text
    assert all(f.name.startswith("backupctl_") for f in found)


def test_names_follow_the_conventions(world):
    found = metrics.families(metrics.read_facts(world, NOW))
    for family in found:
        assert family.name == family.name.lower()
        assert not family.name.endswith("_total")  # gauges only: _total is a counter's
        if "timestamp" in family.name or "duration" in family.name:
            assert family.name.endswith("_seconds"), family.name
        if "size" in family.name or family.name.endswith("bytes"):
            assert family.name.endswith("_bytes"), family.name
        assert "repository" in family.labels or family.name in {
            "backupctl_info", "backupctl_daemon_up", "backupctl_metrics_timestamp_seconds",
            "backupctl_compliance_rule_state", "backupctl_compliance_rule_level"}


def test_the_textfile_is_replaced_whole_and_readable_by_node_exporter(world, tmp_path):
    folder = tmp_path / "textfile"
    folder.mkdir()
    path = metrics_export.write_textfile(str(folder), metrics.families(metrics.read_facts(world, NOW)))
    assert path == str(folder / "backupctl.prom")
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert "backupctl_daemon_up 0.0" in Path(path).read_text()
    assert os.listdir(folder) == ["backupctl.prom"]  # the temporary file was renamed, none left


def test_the_textfile_is_0644_under_the_units_umask_and_no_link_is_followed(world, tmp_path, monkeypatch):
    """UMask=0077: the mode is set on the descriptor. A link swapped in at the path right
    after the rename (or planted there before) is never followed: nothing chmods by path."""
    folder = tmp_path / "textfile"
    folder.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("secret\n")
    victim.chmod(0o600)
    (folder / "backupctl.prom").symlink_to(victim)
    def then_swap(real):
        def rename(source, target, *args, **kwargs):
            real(source, target, *args, **kwargs)
            if str(target).endswith("backupctl.prom"):  # the attacker's link, swapped in at once
                os.unlink(target)
                os.symlink(victim, target)
        return rename

    monkeypatch.setattr(os, "rename", then_swap(os.rename))
    monkeypatch.setattr(os, "replace", then_swap(os.replace))
    previous = os.umask(0o077)
    try:
        metrics_export.write_textfile(str(folder), metrics.families(metrics.read_facts(world, NOW)))
    finally:
        os.umask(previous)
        monkeypatch.undo()
    assert victim.stat().st_mode & 0o777 == 0o600 and victim.read_text() == "secret\n"
    os.unlink(folder / "backupctl.prom")
    previous = os.umask(0o077)
    try:
        path = metrics_export.write_textfile(str(folder), metrics.families(metrics.read_facts(world, NOW)))
    finally:
        os.umask(previous)
    assert os.lstat(path).st_mode & 0o777 == 0o644 and not os.path.islink(path)
    assert os.listdir(folder) == ["backupctl.prom"]


def test_a_textfile_folder_that_cannot_be_written_is_one_line(world, tmp_path):
    with pytest.raises(ConfigError, match="metrics cannot be written to"):
        metrics_export.write_textfile(str(tmp_path / "missing"), [])
    # the daemon's side never raises: the backups go on
    broken = _config(tmp_path, f'[metrics]\ntextfile_dir = "{tmp_path / "missing"}"\n')
    assert metrics_export.publish(broken) is None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_loopback_server_computes_a_scrape_afresh_once_its_text_is_old(world):
    port = _free_port()
    server = metrics_export.Server(("127.0.0.1", port), lambda: metrics.families(
        metrics.read_facts(world, NOW, daemon_up=True)), refresh=0)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        first = urllib.request.urlopen(url, timeout=10).read().decode()
        assert 'backupctl_ransomware_suspected{repository="main"} 0.0' in first
        assert "backupctl_daemon_up 1.0" in first
        Records(world.agent.state_dir, "main").note("ransomware_alarm", NOW, open=True, snapshot="cd" * 16)
        second = urllib.request.urlopen(url, timeout=10).read().decode()
        assert 'backupctl_ransomware_suspected{repository="main"} 1.0' in second
    finally:
        server.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_scrapes_in_a_loop_do_not_recompute_the_text(world):
    """Within REFRESH seconds the same text is served: the state directory is read once."""
    calls = []

    def provide():
        calls.append(1)
        return metrics.families(metrics.read_facts(world, NOW, daemon_up=True))

    port = _free_port()
    server = metrics_export.Server(("127.0.0.1", port), provide)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        texts = {urllib.request.urlopen(url, timeout=10).read() for _ in range(20)}
        assert len(texts) == 1 and len(calls) == 1
        assert metrics_export.REFRESH == 15.0
    finally:
        server.stop()


def _descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_idle_connections_cannot_exhaust_the_daemons_threads_and_descriptors(world):
    """200 silent connections: the server keeps at most MAX_CONNECTIONS of them (each closed
    after CONNECTION_TIMEOUT), closes the rest at once; a scrape answers within seconds and
    this process still opens files and starts a child."""
    port = _free_port()
    server = metrics_export.Server(("127.0.0.1", port), lambda: metrics.families(
        metrics.read_facts(world, NOW, daemon_up=True)))
    idle: list[socket.socket] = []
    try:
        threads, descriptors = threading.active_count(), _descriptors()
        for _ in range(200):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(1)
        # the clients' 200 descriptors, and at most 8 the server holds
        assert _descriptors() - descriptors <= 200 + metrics_export.MAX_CONNECTIONS + 2
        assert threading.active_count() - threads <= metrics_export.MAX_CONNECTIONS
        started = time.monotonic()

        def scrape() -> str | None:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                return None

        text = None
        while text is None and time.monotonic() - started < 15:
            text = scrape()
        assert text is not None and "backupctl_daemon_up 1.0" in text
        assert time.monotonic() - started < metrics_export.CONNECTION_TIMEOUT + 5
        with open(os.devnull) as opened:
            assert opened.fileno() > 0
        assert subprocess.run(["true"], check=False).returncode == 0
    finally:
        for connection in idle:
            connection.close()
        server.stop()


def test_a_port_taken_is_one_line(world):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot be served on 127.0.0.1:{port}"):
            metrics_export.Server(("127.0.0.1", port), lambda: [])


# ---- [metrics] configuration -----------------------------------------------------------------

@pytest.mark.parametrize("listen, expected", [("127.0.0.1:9923", ("127.0.0.1", 9923)), ("[::1]:9923", ("::1", 9923)),
                                              ("localhost:9100", ("localhost", 9100)),
                                              ("127.0.0.2:1", ("127.0.0.2", 1))])
def test_listen_on_loopback_parses(tmp_path, listen, expected):
    config = _config(tmp_path, f'[metrics]\nlisten = "{listen}"\ntextfile_dir = "/var/lib/backupctl-metrics"\n')
    assert config.metrics.listen == expected
    assert config.metrics.textfile_dir == "/var/lib/backupctl-metrics"
    assert config.metrics.enabled


def test_metrics_are_off_by_default(tmp_path):
    assert not _config(tmp_path).metrics.enabled


@pytest.mark.parametrize("extra, key", [
    ('listen = "0.0.0.0:9923"', "listen"), ('listen = "192.168.1.10:9923"', "listen"),
    ('listen = "[::]:9923"', "listen"), ('listen = "metrics.example:9923"', "listen"),
    ('listen = "127.0.0.1"', "listen"), ('listen = "127.0.0.1:99999"', "listen"), ('listen = 9923', "listen"),
    ('textfile_dir = "prom"', "textfile_dir"), ('textfile = "/x"', "textfile"),
])
def test_bad_metrics_settings_name_the_file_and_the_key(tmp_path, extra, key):
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, f"[metrics]\n{extra}\n")
    message = info.value.one_line()
    assert str(tmp_path / "config.toml") in message and "[metrics]" in message and key in message
    assert "\n" not in message


def test_the_inventory_record_holds_no_path(world):
    """What the commands note for the metrics: ids, times, tags, a digest of the paths."""
    text = json.dumps(Records(world.agent.state_dir, "main").load()[INVENTORY_RECORD])
    assert "/srv" not in text and "Dupont" not in text


def test_the_installed_service_may_write_its_textfile_folder_never_node_exporters(tmp_path):
    """ProtectSystem=strict: textfile_dir is in the paths drop-in's ReadWritePaths=; node_exporter's
    own folder (root's collectors write there) is refused (tests/unit/service_install/test_folders.py)."""
    from agent.errors import InstallError
    from agent.service_install import folders, units

    config = _config(tmp_path, '[metrics]\ntextfile_dir = "/var/lib/backupctl-metrics"\n')
    shared = folders.shared_folders(config, root=str(tmp_path / "root"), service_uid=None)
    assert shared == ("/var/lib/backupctl-metrics",)
    dropin = units.paths_dropin(folders.writable_folders(config) + shared)
    assert "ReadWritePaths=-/var/lib/backupctl-metrics\n" in dropin
    assert folders.shared_folders(_config(tmp_path)) == ()
    for refused in ("/var/lib", "/var/lib/prometheus/node-exporter"):
        with pytest.raises(InstallError, match=r"\[metrics\] textfile_dir"):
            folders.shared_folders(_config(tmp_path, f'[metrics]\ntextfile_dir = "{refused}"\n'))


class _Runner:
    """Stands for JobRunner: the job "ran" (its record written as the real one does)."""

    def __init__(self, state_dir: str) -> None:
        import threading

        self.record = JobRecord(state_dir)
        self.stopping = threading.Event()

    def run(self, job_id: str, **_kwargs: object) -> bool:
        self.record.save(job_id, started=NOW, ok=True, steps=[StepResult("backup", 0, 1.0)])
        return True


def test_each_job_writes_the_textfile_as_it_ends(tmp_path, monkeypatch):
    from agent.daemon import jobs

    folder = tmp_path / "textfile"
    folder.mkdir()
    config = _config(tmp_path, f'[metrics]\ntextfile_dir = "{folder}"\n')
    monkeypatch.setattr(jobs, "_runner", _Runner(config.agent.state_dir))
    monkeypatch.setattr(jobs, "_config", config)
    jobs.run_job("weekly:main")
    text = (folder / "backupctl.prom").read_text()
    assert 'backupctl_job_last_run_success{repository="main",task="weekly"} 1.0' in text
    assert "backupctl_daemon_up 1.0" in text


def test_the_daemons_heartbeat_rewrites_the_textfile_at_most_every_heartbeat(tmp_path, monkeypatch):
    from agent.daemon import service

    folder = tmp_path / "textfile"
    folder.mkdir()
    config = _config(tmp_path, f'[metrics]\ntextfile_dir = "{folder}"\n')
    daemon = service.Daemon(config.path)
    # every minute, as documented; contrib's BackupctlMetricsStale (900 s) then allows missed beats
    assert service.HEARTBEAT == 60
    written: list[bool | None] = []
    monkeypatch.setattr(metrics_export, "publish", lambda _config, *, daemon_up=None: written.append(daemon_up))
    daemon._heartbeat(force=True)
    daemon._heartbeat()  # within the minute: not again
    assert written == [True]
    monkeypatch.setattr(service, "HEARTBEAT", 0)
    daemon._heartbeat()
    assert written == [True, True]
    daemon._stop_metrics(None)
    assert written == [True, True, False]  # a clean stop: backupctl_daemon_up 0


def test_the_inventory_s_own_metrics_and_the_job_s_start(world):
    """The rows of the table no other unit test reads: packs, the inventory's date, the
    snapshots kept per tier (60 daily snapshots up to the day before a Wednesday in June:
    4 ISO weeks, 3 months, 1 year), the job's last start."""
    values = _values(metrics.families(metrics.read_facts(world, NOW, daemon_up=True)))
    main = (("repository", "main"),)
    assert values[("backupctl_repository_packs", main)] == 7
    assert values[("backupctl_inventory_timestamp_seconds", main)] == (NOW - _dt.timedelta(hours=1)).timestamp()
    kept = {tier: values[("backupctl_snapshots_kept", (("repository", "main"), ("tier", tier)))]
            for tier in ("daily", "weekly", "monthly", "yearly")}
    assert kept == {"daily": 0, "weekly": 4, "monthly": 3, "yearly": 1}
    weekly = (("repository", "main"), ("task", "weekly"))
    assert values[("backupctl_job_last_run_timestamp_seconds", weekly)] == (NOW - _dt.timedelta(days=1)).timestamp()
