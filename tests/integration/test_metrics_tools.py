"""The metrics against the real tools of Debian (packages prometheus and
prometheus-node-exporter, installed by `make install-test`): `promtool check metrics` on the
real output of `backupctl metrics`, `promtool check rules` and `promtool test rules` on
contrib/prometheus/, a real node_exporter's textfile collector scraped over loopback, a
real Prometheus server scraping it with the shipped rules and the dashboard's queries, and
the daemon's own loopback /metrics. A tool that is missing fails these tests: it is part of
the test suite's install, and a skipped test proves nothing."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from agent import clock
from agent.daemon import metrics
from agent.daemon.jobs import JobRecord, StepResult
from tests.support.waits import wait_until

from .support import ROOT, Backupctl, base_env, write

PROMTOOL = "/usr/bin/promtool"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
PROMETHEUS = "/usr/bin/prometheus"
CONTRIB = ROOT / "contrib"
RULES = CONTRIB / "prometheus" / "backupctl-alerts.yml"
RULE_TESTS = CONTRIB / "prometheus" / "backupctl-alerts.test.yml"
DASHBOARD = CONTRIB / "grafana" / "backupctl-fleet.json"
PATIENT = "Dupont Jeanne"  # a folder name that is health data: never in a metric


def _tool(path: str, package: str) -> str:
    assert shutil.which(path), f"{path} (Debian package {package}) is required: make install-test installs it"
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode("utf-8")


def _value(text: str, sample: str) -> float:
    """The value of one sample line (`name{labels}`) in an exposition."""
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert match, f"{sample} not in:\n{text}"
    return float(match.group(1))


@pytest.fixture
def practice(bk: Backupctl, tmp_path: Path) -> Backupctl:
    """A real repository, backed up and checked, with [metrics] textfile_dir."""
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    write(bk.src / "patients" / PATIENT / "compte-rendu.txt", "Cher confrère, " * 200)
    write(bk.src / "lettre.txt", "Madame,\n")
    bk.write_config(extra_repo_lines=f'\n[metrics]\ntextfile_dir = "{textfile}"\n')
    bk.textfile = textfile  # type: ignore[attr-defined]
    bk.init()
    bk.backup()
    bk.ok("check")
    # The jobs' metrics come from the daemon's record of its jobs: one, as the daemon writes it.
    JobRecord(str(bk.state)).save("weekly:main", started=clock.now(), ok=True, steps=[StepResult("backup", 0, 1.5)])
    return bk


def test_the_real_output_passes_promtool_and_shows_the_backup(practice):
    out = practice.ok("metrics").stdout
    check = subprocess.run([_tool(PROMTOOL, "prometheus"), "check", "metrics"], input=out.encode(),
                           capture_output=True, timeout=60)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check
    records = json.loads((practice.state / "records" / "main.json").read_text())
    backup_time = records["backup"]["time"]
    assert _value(out, 'backupctl_last_backup_timestamp_seconds{repository="main"}') == pytest.approx(
        dt.datetime.fromisoformat(backup_time).timestamp())
    assert _value(out, 'backupctl_last_check_success{repository="main"}') == 1
    assert _value(out, 'backupctl_snapshots{repository="main"}') == 1
    assert _value(out, 'backupctl_backup_last_files{repository="main"}') == 2
    size = sum(p.stat().st_size for p in (practice.repo / "data").rglob("*") if p.is_file())
    assert _value(out, 'backupctl_repository_size_bytes{repository="main"}') == size
    assert _value(out, 'backupctl_compliance_rule_state{rule="S1",state="OK"}') == 1
    assert PATIENT not in out and str(practice.src) not in out
    # the inventory noted by the commands holds no path either
    assert PATIENT not in json.dumps(records) and str(practice.src) not in json.dumps(records["inventory"])


def test_promtool_checks_the_rules_and_every_alert_fires_in_its_unit_tests(tmp_path):
    promtool = _tool(PROMTOOL, "prometheus")
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    run = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=120,
                         cwd=RULE_TESTS.parent)
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr
    # Each alert has a test that fires it: with one alert's threshold changed, the tests fail.
    text = RULES.read_text()
    for original, broken in [("> 8 * 86400", "> 11 * 86400"), ("> 92 * 86400", "> 95 * 86400"),
                             ("backupctl_ransomware_suspected == 1", "backupctl_ransomware_suspected == 2"),
                             ("backupctl_last_check_success == 0", "backupctl_last_check_success == 2"),
                             ('risk="no_monthly"} == 1', 'risk="no_monthly"} == 2'),
                             ("backupctl_daemon_up == 0", "backupctl_daemon_up == 2"), ("> 900", "> 90000")]:
        assert original in text
        (tmp_path / RULES.name).write_text(text.replace(original, broken))
        shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
        mutated = subprocess.run([promtool, "test", "rules", RULE_TESTS.name], capture_output=True, text=True,
                                 timeout=120, cwd=tmp_path)
        assert mutated.returncode != 0, f"the rule tests do not notice {original!r} -> {broken!r}"


def test_every_metric_the_rules_and_the_dashboard_name_is_one_the_agent_emits(practice):
    """A renamed metric breaks this test, not a fleet's alerting in silence."""
    emitted = set(re.findall(r"^# TYPE (backupctl_\w+) ", practice.ok("metrics").stdout, re.MULTILINE))
    assert {"backupctl_daemon_up", "backupctl_ransomware_suspected"} <= emitted
    named = {*re.findall(r"backupctl_\w+", RULES.read_text()), *re.findall(r"backupctl_\w+", DASHBOARD.read_text())}
    named -= {"backupctl_fleet"}  # not a metric: the dashboard's uid
    assert named and named - emitted == set()


def test_the_dashboard_has_one_row_per_instance():
    dashboard = json.loads(DASHBOARD.read_text())
    fleet = dashboard["panels"][0]
    assert fleet["type"] == "table"
    for target in fleet["targets"]:
        assert re.search(r"by \(instance(, version)?\)", target["expr"]), target["expr"]
        assert target["format"] == "table" and target["instant"]
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "instance"}


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    handle = log.open("wb")
    return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def test_node_exporter_and_prometheus_show_the_values_of_a_real_run(practice, tmp_path):
    """`backupctl metrics --write` -> node_exporter's textfile collector, scraped over
    loopback; then a Prometheus server scraping it evaluates the shipped rules and every
    query of the dashboard, each answering for this instance."""
    wrote = practice.ok("metrics", "--write")
    assert "backupctl.prom" in wrote.stdout
    # as docs/INSTALL.md sets it up: node_exporter's folder is never the service's; it holds
    # a (root's) symbolic link to the file in the service's own folder, which the collector follows
    node_folder = tmp_path / "node-exporter"
    node_folder.mkdir()
    (node_folder / "backupctl.prom").symlink_to(practice.textfile / "backupctl.prom")
    node_port, prom_port = _free_port(), _free_port()
    node = _start([_tool(NODE_EXPORTER, "prometheus-node-exporter"), f"--web.listen-address=127.0.0.1:{node_port}",
                   "--collector.disable-defaults", "--collector.textfile",
                   f"--collector.textfile.directory={node_folder}"], tmp_path / "node.log")
    try:
        url = f"http://127.0.0.1:{node_port}/metrics"
        wait_until(lambda: _reachable(url), timeout=30, interval=0.2, what="node_exporter listening")
        scraped = _get(url)
        assert _value(scraped, 'backupctl_snapshots{repository="main"}') == 1
        assert _value(scraped, 'backupctl_last_check_success{repository="main"}') == 1
        assert _value(scraped, "backupctl_daemon_up") == 0
        assert _value(scraped, "node_textfile_scrape_error") == 0
        assert PATIENT not in scraped

        config = tmp_path / "prometheus.yml"
        config.write_text(f"global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                          f"rule_files: [{json.dumps(str(RULES))}]\n"
                          f"scrape_configs:\n  - job_name: node\n    static_configs:\n"
                          f"      - targets: ['127.0.0.1:{node_port}']\n")
        prometheus = _start([_tool(PROMETHEUS, "prometheus"), f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                            tmp_path / "prometheus.log")
        try:
            api = f"http://127.0.0.1:{prom_port}/api/v1"

            def query(expr: str) -> list[dict]:
                answer = json.loads(_get(f"{api}/query?" + urllib.parse.urlencode({"query": expr})))
                assert answer["status"] == "success", answer
                return answer["data"]["result"]

            wait_until(lambda: _reachable(f"{api}/query?query=up") and query("backupctl_daemon_up"), timeout=60,
                       interval=0.2, what="Prometheus scraping node_exporter")

            def rules() -> list[dict]:
                return [r for g in json.loads(_get(f"{api}/rules"))["data"]["groups"] for r in g["rules"]]

            wait_until(lambda: len(rules()) == 10 and all(r["health"] == "ok" for r in rules()), timeout=30,
                       interval=0.2, what="the ten rules evaluated without error")
            instance = f"127.0.0.1:{node_port}"
            dashboard = json.loads(DASHBOARD.read_text())
            for panel in dashboard["panels"]:
                for target in panel["targets"]:
                    expr = target["expr"].replace("$instance", ".*")
                    result = query(expr)
                    assert result and all(r["metric"].get("instance") == instance for r in result), (expr, result)
            # as scraped: Prometheus's own `job` beside the agent's labels, none renamed `exported_*`
            [job] = query("backupctl_job_last_run_success")
            assert job["metric"]["job"] == "node" and job["metric"]["task"] == "weekly", job
            every = query('{__name__=~"backupctl_.*"}')
            assert every and not [k for r in every for k in r["metric"] if k.startswith("exported_")]
            # the daemon is not running: its alert is pending (for: 30m), not silent
            wait_until(lambda: any(a["labels"]["alertname"] == "BackupctlDaemonDown"
                                   for a in json.loads(_get(f"{api}/alerts"))["data"]["alerts"]),
                       timeout=30, interval=0.2, what="BackupctlDaemonDown pending")
        finally:
            _stop(prometheus)
    finally:
        _stop(node)


def _reachable(url: str) -> bool:
    try:
        _get(url, timeout=2)
        return True
    except OSError:
        return False


def test_the_daemon_writes_the_textfile_serves_loopback_and_says_when_it_stops(bk, tmp_path):
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    port = _free_port()
    write(bk.src / "lettre.txt", "Madame, " * 500)
    bk.write_config(extra_repo_lines=f'\n[schedule]\nbackup = "fri 20:00"\nmonthly_check = "1 03:00"\n'
                                     f'\n[metrics]\ntextfile_dir = "{textfile}"\nlisten = "127.0.0.1:{port}"\n')
    bk.init()
    log = (tmp_path / "daemon.log").open("wb")
    daemon = subprocess.Popen([sys.executable, "-m", "agent", "--config", str(bk.config), "daemon"], cwd=bk.base,
                              env=base_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    prom = textfile / "backupctl.prom"
    try:
        # at its start: up, and the catch-up backup's outcome once its job ends
        wait_until(lambda: prom.exists() and "backupctl_daemon_up 1.0" in prom.read_text(), timeout=120,
                   what="the daemon's first textfile")
        wait_until(lambda: 'backupctl_job_last_run_success{repository="main",task="weekly"} 1.0' in prom.read_text(),
                   timeout=300, what="the weekly catch-up job in the textfile")
        served = _get(f"http://127.0.0.1:{port}/metrics")
        assert "backupctl_daemon_up 1.0" in served
        assert _value(served, 'backupctl_snapshots{repository="main"}') >= 1
        assert _value(served, 'backupctl_last_backup_timestamp_seconds{repository="main"}') > 0
        # a reload that moves `listen` serves on the new port, and no longer on the old one
        moved = _free_port()
        bk.write_config(extra_repo_lines=f'\n[schedule]\nbackup = "fri 20:00"\nmonthly_check = "1 03:00"\n'
                                         f'\n[metrics]\ntextfile_dir = "{textfile}"\nlisten = "127.0.0.1:{moved}"\n')
        daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: _reachable(f"http://127.0.0.1:{moved}/metrics"), timeout=60, interval=0.2,
                   what="the metrics served on the new port after the reload")
        assert not _reachable(f"http://127.0.0.1:{port}/metrics")
        port = moved
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=120)
    assert daemon.returncode == 0
    assert "backupctl_daemon_up 0.0" in prom.read_text()  # a clean stop: "down", not "stale"
    with pytest.raises(OSError):
        _get(f"http://127.0.0.1:{port}/metrics", timeout=2)
    assert [p.name for p in textfile.iterdir()] == ["backupctl.prom"]
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()


def test_a_listen_address_off_this_machine_is_refused_in_one_line(bk):
    bk.write_config(extra_repo_lines='\n[metrics]\nlisten = "0.0.0.0:9923"\n')
    result = bk.run("metrics")
    assert result.returncode == 2, str(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "[metrics] listen" in lines[0] and "loopback" in lines[0], str(result)
    assert "Traceback" not in result.stderr


def test_write_without_a_textfile_dir_is_a_usage_error(bk):
    result = bk.run("metrics", "--write")
    assert result.returncode == 2 and "textfile_dir" in result.stderr and "Traceback" not in result.stderr, str(result)


def test_metrics_names_are_documented():
    """docs/REFERENCE.md's table of metrics names each family the agent emits."""
    reference = (ROOT / "docs" / "REFERENCE.md").read_text()
    source = (ROOT / "agent" / "daemon" / "metrics.py").read_text()
    names = set(re.findall(r'"(backupctl_\w+)"', source))
    assert names and {n for n in names if f"`{n}`" not in reference} == set()
    assert metrics.RISK_CODES
