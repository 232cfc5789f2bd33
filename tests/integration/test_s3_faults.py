"""S3 faults and clock skew (issue 10, points 2 and 7), against a real moto_server behind
a fault-injecting proxy (tests/support/faultproxy.py).

Point 2: a campaign of backups through a proxy that fails a fifth of the requests
(500, 503 SlowDown, TCP resets), alters bodies in both directions, slows some answers
and stalls others past the read timeout. Each backup completes with every object
verified, or fails cleanly with one line; after every round, straight to the server,
`check --read-data` passes and every snapshot restores bit-exact.

Point 7: a server whose clock is 20 minutes off. A strict one (AWS S3) refuses every
request: one line that says which clock is off and by how much. A lenient one (moto,
several S3-compatible providers) answers: backups go on with a warning, prune refuses,
so no snapshot is forgotten early on the word of a wrong clock. The limit is two minutes
(agent/clock_skew.py): 90 s either way passes quietly, 150 s does not.
"""

from __future__ import annotations

import json
import os
import random

import pytest

from tests.support.checkingproxy import ChecksumCheckingProxy
from tests.support.faultproxy import FaultProxy

from .test_s3 import Cli, _assert_one_line_error, _digest_tree

# At least this many backups, and more until every kind of fault was injected (at most MAX_ROUNDS).
ROUNDS = int(os.environ.get("BACKUPCTL_S3_FAULT_ROUNDS", "4"))
MAX_ROUNDS = max(ROUNDS, 16)
FAULTS = ("error", "reset", "corrupt_upload", "corrupt_download", "delay", "stall")


def _port(s3) -> int:
    return int(s3.url.rsplit(":", 1)[1])


def _direct(tmp_path, cli: Cli, proxy_url: str, server_url: str, s3) -> Cli:
    """The same repository, straight to the server (no proxy)."""
    direct = Cli(tmp_path, server_url, s3, bucket=s3.plain_bucket)
    direct.config.write_text(cli.config.read_text().replace(proxy_url, server_url))
    return direct


@pytest.mark.parametrize("server", ["checking", "lenient"])
def test_fault_campaign_every_backup_verified_or_failed_cleanly(tmp_path, s3, server):
    """"checking": moto behind the hop that checks checksums as AWS S3 does, so an upload
    altered on its way is refused (BadDigest) and sent again, and uploads are verified by
    HEAD. "lenient": moto alone, which stores an altered upload: the read-back verification
    must catch it. In both, a second hop right next to the agent, which refuses nothing,
    records every upload whose checksums disagree with the body the agent sent: none but
    the probe's deliberate one."""
    if server == "lenient" and not s3.unchecked_url:
        pytest.skip("a real provider checks checksums: no server here that does not")
    server_url = s3.url if server == "checking" else s3.unchecked_url
    seed = int(os.environ.get("BACKUPCTL_S3_FAULT_SEED", random.randrange(1 << 30)))
    print(f"S3 fault campaign seed: BACKUPCTL_S3_FAULT_SEED={seed}")
    rng = random.Random(seed)
    refused_before = s3.checker.counts["BadDigest"] if s3.checker else 0
    with FaultProxy(int(server_url.rsplit(":", 1)[1]), error=0.12, reset=0.08, corrupt=0.08, delay=0.04,
                    delay_s=1.0, stall=0.02, stall_s=3.0, seed=seed) as proxy, \
            ChecksumCheckingProxy(proxy.port, refuse=False) as agent_side:
        cli = Cli(tmp_path, agent_side.url, s3, bucket=s3.plain_bucket,
                  extra="retry_attempts = 8\nread_timeout = 1.5")
        direct = _direct(tmp_path, cli, agent_side.url, server_url, s3)
        assert direct.run("init").returncode == 0
        expected: dict[str, dict] = {}
        outcomes = []
        round_number = 0
        while round_number < ROUNDS or (round_number < MAX_ROUNDS and not all(proxy.counts[f] for f in FAULTS)):
            if round_number >= ROUNDS:  # the draws missed some kinds so far: the next requests get them
                for fault in ("error", "reset", "delay", "stall"):
                    if not proxy.counts[fault]:
                        proxy.force(fault)
            letters = cli.source / "courriers" / "2026"
            (letters / f"nouvelle {round_number}.txt").write_bytes(os.urandom(rng.randrange(1, 400_000)))
            (cli.source / "scans" / f"scan-r{round_number}.pdf").write_bytes(os.urandom(2 * 1024 * 1024))
            state = _digest_tree(cli.source)
            backup = cli.run("backup", "--json")
            outcomes.append(backup.returncode)
            if backup.returncode == 0:
                expected[json.loads(backup.stdout)["snapshot_id"]] = state
            else:  # failed cleanly: one line, a storage error, nothing half-saved
                line = _assert_one_line_error(backup, 14)
                assert "S3" in line, line
            check = direct.run("check", "--read-data", "--json")
            assert check.returncode == 0 and json.loads(check.stdout)["ok"], \
                f"round {round_number} (seed {seed}): {check.stdout}{check.stderr}"
            listed = {s["id"] for s in json.loads(direct.run("snapshots", "--json").stdout)["snapshots"]}
            assert listed == set(expected), f"a snapshot appeared for a failed backup (seed {seed})"
            round_number += 1
        for number, (snapshot_id, state) in enumerate(expected.items()):
            target = tmp_path / f"restored-{number}"
            restore = direct.run("restore", snapshot_id, "--target", str(target), "--json")
            assert restore.returncode == 0, restore.stderr
            assert _digest_tree(target / str(cli.source).lstrip("/")) == state
        injected = dict(proxy.counts)
    print(f"S3 fault campaign: outcomes {outcomes}, injected {injected}")
    assert expected, f"every backup of the campaign failed: retries do not work (seed {seed})"
    for fault in FAULTS:
        assert injected.get(fault, 0) > 0, f"the campaign never injected {fault}: {injected} (seed {seed})"
    lies = [(verb, path, code) for verb, path, code in agent_side.mismatches if "/probe/" not in path]
    assert lies == [], f"{len(lies)} uploads whose checksums the agent got wrong, e.g. {lies[:3]}"
    if server == "checking" and s3.checker is not None:  # each upload altered on its way was refused
        assert s3.checker.counts["BadDigest"] - refused_before >= injected["corrupt_upload"]


@pytest.mark.parametrize("minutes", [20, -20])
def test_a_strict_server_refuses_a_skewed_clock_with_a_clear_diagnostic(tmp_path, s3, minutes):
    with FaultProxy(_port(s3)) as proxy:
        cli = Cli(tmp_path, proxy.url, s3, bucket=s3.plain_bucket, extra="retry_attempts = 2")
        assert cli.run("init").returncode == 0
        proxy.skew_s = minutes * 60
        proxy.reject_skew = True
        for command in (("backup",), ("snapshots",), ("prune",)):
            line = _assert_one_line_error(cli.run(*command), 21)
            side = "behind" if minutes > 0 else "ahead of"
            assert f"20 minutes {side}" in line and "clock" in line, line
            assert "timedatectl" in line or "NTP" in line, line
        assert proxy.counts["skew_refused"] > 0


@pytest.mark.parametrize("minutes", [20, -20])
def test_a_lenient_server_with_a_skewed_clock_gets_no_early_prune(tmp_path, s3, minutes):
    with FaultProxy(_port(s3)) as proxy:
        cli = Cli(tmp_path, proxy.url, s3, bucket=s3.plain_bucket)
        assert cli.run("init").returncode == 0
        for _ in range(2):
            assert cli.run("backup").returncode == 0
        before = json.loads(cli.run("snapshots", "--json").stdout)["snapshots"]
        proxy.skew_s = minutes * 60

        backup = cli.run("backup", "--json")
        assert backup.returncode == 0, backup.stderr
        side = "behind" if minutes > 0 else "ahead of"
        assert f"20 minutes {side}" in backup.stderr, backup.stderr  # a warning, the backup is made
        prune = cli.run("prune")
        line = _assert_one_line_error(prune, 21)
        assert f"20 minutes {side}" in line and "nothing was forgotten" in line, line
        after = json.loads(cli.run("snapshots", "--json").stdout)["snapshots"]
        assert {s["id"] for s in before} <= {s["id"] for s in after}, "prune deleted snapshots on a skewed clock"
        assert len(after) == len(before) + 1
        check = cli.run("check", "--json")
        assert check.returncode == 0, check.stderr  # reading is safe whatever the clock

        proxy.skew_s = 0  # the clocks agree again: prune runs
        prune = cli.run("prune", "--json")
        assert prune.returncode == 0, prune.stderr
        assert json.loads(prune.stdout)["snapshots_forgotten"] >= 1


@pytest.mark.parametrize("seconds", [90, -90, 150, -150])
def test_the_clock_skew_limit_is_two_minutes_either_way(tmp_path, s3, seconds):
    """agent/clock_skew.py CLOCK_SKEW_LIMIT, as documented: 90 s off is no reason to refuse
    or warn, 150 s off is (prune refuses, the other commands warn)."""
    with FaultProxy(_port(s3)) as proxy:
        cli = Cli(tmp_path, proxy.url, s3, bucket=s3.plain_bucket)
        assert cli.run("init").returncode == 0
        for _ in range(2):
            assert cli.run("backup").returncode == 0
        proxy.skew_s = seconds
        backup = cli.run("backup")
        assert backup.returncode == 0, backup.stderr
        prune = cli.run("prune", "--json")
    side = "behind" if seconds > 0 else "ahead of"
    if abs(seconds) < 120:
        assert "clock" not in backup.stderr, backup.stderr
        assert prune.returncode == 0, prune.stderr
        assert json.loads(prune.stdout)["snapshots_forgotten"] >= 1
    else:
        assert f"2 minutes {side} the storage server's" in backup.stderr, backup.stderr
        line = _assert_one_line_error(prune, 21)
        assert f"2 minutes {side}" in line and "nothing was forgotten" in line, line
