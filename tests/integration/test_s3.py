"""S3 repositories end to end, against a real S3 server process on loopback (moto_server).

Set BACKUPCTL_TEST_S3_ENDPOINT / BACKUPCTL_TEST_S3_BUCKET and AWS credentials to run the
same tests against a real provider (see tests/support/s3server.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from agent.errors import ObjectExists, ObjectLocked, StorageError
from agent.storage import open_storage
from agent.storage.options import S3Options
from agent.storage.s3 import S3Storage
from tests.support.faultproxy import FaultProxy


# boto3 in this process finds the server's credentials in the environment, for each test only
pytestmark = pytest.mark.usefixtures("s3_credentials")


PASSPHRASE = "correct horse battery staple"


def _tree(root) -> None:
    (root / "courriers" / "2026").mkdir(parents=True)
    for i in range(30):
        (root / "courriers" / "2026" / f"lettre {i} Élodie.txt").write_bytes(
            (f"Madame, suite à la consultation n°{i}, " * 400).encode())
    (root / "scans").mkdir()
    for i in range(3):
        (root / "scans" / f"scan{i}.pdf").write_bytes(os.urandom(3 * 1024 * 1024 + i))
    (root / "vide").mkdir()


def _digest_tree(root) -> dict:
    out = {}
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return out


class Cli:
    def __init__(self, tmp_path, endpoint_url: str, s3, *, bucket: str, extra: str = "", env: dict | None = None):
        self.tmp = tmp_path
        self.source = tmp_path / "cabinet"
        if not self.source.exists():
            self.source.mkdir()
            _tree(self.source)
        self.config = tmp_path / f"config-{uuid.uuid4().hex[:6]}.toml"
        self.prefix = "repo-" + uuid.uuid4().hex[:8]
        self.config.write_text(f"""
[agent]
state_dir = "{tmp_path}/state"
[source]
paths = ["{self.source}"]
[repositories.cloud]
url = "s3://{bucket}/{self.prefix}"
endpoint = "{endpoint_url}"
region = "{s3.region}"
addressing = "path"
{extra}
""")
        self.env = {**os.environ, **s3.env(), "BACKUPCTL_PASSPHRASE": PASSPHRASE, **(env or {})}

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "agent", "--config", str(self.config), *args],
                              capture_output=True, text=True, env=self.env, timeout=600)


def _assert_one_line_error(result: subprocess.CompletedProcess, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("backupctl: error:"), result.stderr
    return lines[0]


def test_backup_restore_check_on_s3_with_object_lock(tmp_path, s3):
    cli = Cli(tmp_path, s3.url, s3, bucket=s3.lock_bucket, extra='object_lock = "compliance"\nlock_days = 3')
    init = cli.run("init", "--json")
    assert init.returncode == 0, init.stderr
    facts = json.loads(init.stdout)
    assert facts["endpoint"]["versioning"] == "Enabled" and facts["endpoint"]["object_lock"] == "Enabled"
    assert facts["object_lock_mode"] == "compliance"
    # The test server checks upload checksums (moto behind tests/support/checkingproxy.py).
    assert facts["endpoint"]["rejects_bad_checksum"] is True
    assert facts["verify_uploads"]["mode"] == "head"

    backup = cli.run("backup", "--json")
    assert backup.returncode == 0, backup.stderr
    assert json.loads(backup.stdout)["bytes_added"] > 0

    # Every object of the repository is locked about lock_days ahead, in compliance mode.
    client = s3.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3.lock_bucket, Prefix=cli.prefix)["Contents"]]
    assert any("/data/" in k for k in keys) and any("/snapshots/" in k for k in keys)
    now = dt.datetime.now(dt.timezone.utc)
    for key in keys:
        head = client.head_object(Bucket=s3.lock_bucket, Key=key)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert now + dt.timedelta(days=2) < head["ObjectLockRetainUntilDate"] < now + dt.timedelta(days=4)

    # The backup left its snapshot, index and folder listings in the local cache, as stored.
    cached = {p.relative_to(p.parents[1]).as_posix(): p.read_bytes()
              for p in (tmp_path / "state" / "cache").glob("*/repository/*/*")}
    assert any(name.startswith("snapshots/") for name in cached) and any(n.startswith("trees/") for n in cached)
    for name, data in cached.items():
        if not name.startswith("trees/"):
            assert client.get_object(Bucket=s3.lock_bucket, Key=f"{cli.prefix}/{name}")["Body"].read() == data

    restored = tmp_path / "restored"
    restore = cli.run("restore", "latest", "--target", str(restored), "--json")
    assert restore.returncode == 0, restore.stderr
    report = json.loads(restore.stdout)
    assert report["sha256_verified"] == report["files"] == 33
    assert _digest_tree(restored / str(cli.source).lstrip("/")) == _digest_tree(cli.source)
    shutil.rmtree(tmp_path / "state" / "cache")  # the cache may be deleted at any time
    restore = cli.run("restore", "latest", "--target", str(tmp_path / "again"), "--json")
    assert restore.returncode == 0 and json.loads(restore.stdout)["sha256_verified"] == 33, restore.stderr

    check = cli.run("check", "--read-data", "--json")
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["ok"] is True


def test_locked_objects_are_never_deleted_and_locks_extend(s3):
    options = S3Options(bucket=s3.lock_bucket, prefix="lock-" + uuid.uuid4().hex[:6], endpoint=s3.url,
                        region=s3.region, addressing="path", object_lock="compliance", lock_days=2)
    storage = S3Storage(options)
    storage.write("data/aa/object", b"patient data, encrypted")
    first = storage.retention("data/aa/object")
    assert first is not None
    with pytest.raises(ObjectLocked):
        storage.delete("data/aa/object")
    assert storage.read("data/aa/object") == b"patient data, encrypted"
    later = first + dt.timedelta(days=30)
    storage.extend_retention("data/aa/object", later)
    assert storage.retention("data/aa/object") >= later - dt.timedelta(seconds=1)
    storage.extend_retention("data/aa/object", first)  # never moves a lock earlier
    assert storage.retention("data/aa/object") >= later - dt.timedelta(seconds=1)


def test_the_caller_not_the_name_decides_what_is_written_without_object_lock(s3):
    """agent/storage/s3.py knows no repository names: an ephemeral write (a repository lock,
    agent/repo/repository.py) has no retain-until date and is deleted at once; any other
    write has one, whatever its name."""
    options = S3Options(bucket=s3.lock_bucket, prefix="eph-" + uuid.uuid4().hex[:6], endpoint=s3.url,
                        region=s3.region, addressing="path", object_lock="compliance", lock_days=2)
    storage = S3Storage(options)
    storage.write("locks/" + "ab" * 16, b"a lock", ephemeral=True)
    storage.write("locks/" + "cd" * 16, b"not said to be ephemeral")
    assert storage.retention("locks/" + "ab" * 16) is None
    assert storage.retention("locks/" + "cd" * 16) is not None
    storage.delete("locks/" + "ab" * 16, ephemeral=True)
    assert not storage.exists("locks/" + "ab" * 16)
    with pytest.raises(ObjectLocked):
        storage.delete("locks/" + "cd" * 16)


def test_an_exclusive_write_over_an_object_is_object_exists_and_not_retried(s3):
    options = S3Options(bucket=s3.plain_bucket, prefix="excl-" + uuid.uuid4().hex[:6], endpoint=s3.url,
                        region=s3.region, addressing="path")
    storage = open_storage(f"s3://{s3.plain_bucket}/{options.prefix}", s3=options)
    storage.write("config", b"first", exclusive=True)
    with pytest.raises(ObjectExists, match="already exists"):
        storage.write("config", b"second", exclusive=True)
    assert storage.retries == 0 and storage.read("config") == b"first"


def test_object_lock_on_a_bucket_without_it_is_refused_with_instructions(tmp_path, s3):
    cli = Cli(tmp_path, s3.url, s3, bucket=s3.plain_bucket, extra='object_lock = "compliance"')
    line = _assert_one_line_error(cli.run("init"), 14)
    assert "object lock" in line and "create" in line
    assert "Contents" not in s3.client().list_objects_v2(Bucket=s3.plain_bucket, Prefix=cli.prefix + "/keys")


def test_permanent_errors_fail_fast_with_one_line_naming_endpoint_and_bucket(tmp_path, s3):
    missing = Cli(tmp_path, s3.url, s3, bucket="no-such-bucket-here")
    line = _assert_one_line_error(missing.run("init"), 14)
    assert "no-such-bucket-here" in line and s3.url in line and "bucket does not exist" in line

    insecure = Cli(tmp_path, "http://s3.example.org", s3, bucket=s3.lock_bucket)
    line = _assert_one_line_error(insecure.run("init"), 2)
    assert "plain http" in line

    secret = "SECRET" + uuid.uuid4().hex
    creds = tmp_path / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = {secret}\n")
    creds.chmod(0o644)
    loose = Cli(tmp_path, s3.url, s3, bucket=s3.lock_bucket, extra=f'credentials_file = "{creds}"')
    line = _assert_one_line_error(loose.run("init"), 2)
    assert "chmod 600" in line and secret not in line


def test_backup_survives_injected_faults_and_never_references_missing_data(tmp_path, s3):
    port = int(s3.url.rsplit(":", 1)[1])
    with FaultProxy(port, error=0.12, reset=0.08, corrupt=0.08, delay=0.05, seed=7) as proxy:
        cli = Cli(tmp_path, proxy.url, s3, bucket=s3.plain_bucket, extra="retry_attempts = 10")
        proxy.enabled = False
        assert cli.run("init").returncode == 0
        proxy.enabled = True
        backup = cli.run("backup", "--json")
        assert backup.returncode == 0, backup.stderr
        restored = tmp_path / "restored"
        restore = cli.run("restore", "latest", "--target", str(restored), "--json")
        assert restore.returncode == 0, restore.stderr
        check = cli.run("check", "--read-data", "--json")
        assert check.returncode == 0, check.stderr
        injected = dict(proxy.counts)
    assert injected.get("error", 0) > 0 and injected.get("reset", 0) > 0 and injected.get("corrupt", 0) > 0
    assert _digest_tree(restored / str(cli.source).lstrip("/")) == _digest_tree(cli.source)
    # Straight to the server, no proxy: everything stored is intact.
    direct = Cli(tmp_path, s3.url, s3, bucket=s3.plain_bucket)
    direct.config.write_text(cli.config.read_text().replace(proxy.url, s3.url))
    final = direct.run("check", "--read-data", "--json")
    assert final.returncode == 0 and json.loads(final.stdout)["ok"], final.stdout + final.stderr


def test_transient_failures_beyond_the_retry_budget_fail_cleanly(tmp_path, s3):
    port = int(s3.url.rsplit(":", 1)[1])
    with FaultProxy(port, error=1.0, seed=3) as proxy:
        cli = Cli(tmp_path, proxy.url, s3, bucket=s3.plain_bucket, extra="retry_attempts = 2")
        proxy.enabled = False
        assert cli.run("init").returncode == 0
        proxy.enabled = True
        line = _assert_one_line_error(cli.run("backup"), 14)
        assert "provider error" in line
        proxy.enabled = False
        snapshots = cli.run("snapshots", "--json")
        assert json.loads(snapshots.stdout)["snapshots"] == []  # no snapshot, so none points at missing data
        assert cli.run("check").returncode == 0


def test_storage_error_messages_never_contain_credentials(s3):
    options = S3Options(bucket="no-such-bucket", endpoint=s3.url, region=s3.region, addressing="path")
    with pytest.raises(StorageError) as caught:
        S3Storage(options).read("config")
    assert s3.secret_key not in caught.value.one_line() and s3.access_key not in caught.value.one_line()


def test_uploads_carry_our_sha256_and_no_crc32_trailers(tmp_path, s3):
    port = int(s3.url.rsplit(":", 1)[1])
    with FaultProxy(port) as proxy:
        cli = Cli(tmp_path, proxy.url, s3, bucket=s3.plain_bucket)
        assert cli.run("init").returncode == 0
        assert cli.run("backup").returncode == 0
    puts = [headers for method, headers in proxy.requests if method == "PUT"]
    assert len(puts) >= 4  # key, config, packs, index, snapshot
    for headers in puts:
        assert "x-amz-checksum-sha256" in headers
        assert "x-amz-checksum-crc32" not in headers and "x-amz-trailer" not in headers
        assert "aws-chunked" not in headers.get("content-encoding", "")


def test_example_s3_repository_block_parses(tmp_path):
    from agent import config
    from tests.integration.support import ROOT  # the checkout's root, whatever pytest's working folder

    text = (ROOT / "config.example.toml").read_text()
    lines = []
    in_block = False
    for line in text.splitlines():
        if line.startswith("# [repositories.offsite]"):
            in_block = True
        elif in_block and not line.startswith("#"):
            in_block = False
        if in_block and not line.startswith("# #") and line.startswith("# "):
            line = line[2:]
        lines.append(line)
    parsed = config.parse(__import__("tomllib").loads("\n".join(lines)), "example")
    offsite = parsed.repository("offsite")
    assert offsite.s3 is not None and offsite.s3.bucket == "cabinet-dupont-sauvegardes"
    assert offsite.s3.object_lock == "compliance" and offsite.s3.verify_uploads == "auto"
    assert offsite.s3.request_checksum_calculation == "when_required"


def test_cleanup_versions_keeps_locked_versions_and_aborts_stale_uploads(tmp_path, s3):
    from agent import clock

    prefix = "cleanup-" + uuid.uuid4().hex[:6]
    client = s3.client()
    client.put_object(Bucket=s3.lock_bucket, Key=f"{prefix}/data/old", Body=b"v1")
    client.put_object(Bucket=s3.lock_bucket, Key=f"{prefix}/data/old", Body=b"v2")  # v1 is now non-current
    locked_until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=5)
    client.put_object(Bucket=s3.lock_bucket, Key=f"{prefix}/data/locked", Body=b"l1", ChecksumAlgorithm="SHA256",
                      ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=locked_until)
    client.put_object(Bucket=s3.lock_bucket, Key=f"{prefix}/data/locked", Body=b"l2")  # l1 non-current, locked
    client.create_multipart_upload(Bucket=s3.lock_bucket, Key=f"{prefix}/data/abandoned")
    storage = S3Storage(S3Options(bucket=s3.lock_bucket, prefix=prefix, endpoint=s3.url, region=s3.region,
                                  addressing="path", object_lock="compliance"))
    clock.freeze(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2))  # the upload is now 2 days old
    try:
        dry = storage.cleanup(dry_run=True)
        assert dry == {"deleted_versions": 1, "still_locked": 1, "aborted_uploads": 1, "dry_run": True}
        real = storage.cleanup(dry_run=False)
    finally:
        clock.freeze(None)
    assert real["deleted_versions"] == 1 and real["still_locked"] == 1 and real["aborted_uploads"] == 1
    versions = client.list_object_versions(Bucket=s3.lock_bucket, Prefix=prefix)["Versions"]
    assert sorted(v["Key"].rsplit("/", 1)[1] for v in versions) == ["locked", "locked", "old"]
    assert client.list_multipart_uploads(Bucket=s3.lock_bucket, Prefix=prefix).get("Uploads", []) == []


def test_cleanup_versions_runs_where_the_storage_has_versions_and_refuses_elsewhere(tmp_path, s3):
    """The command asks the storage for its VersionCleanup capability (through the retry and
    throttle wrappers), and says so plainly where there is none (a directory)."""
    cli = Cli(tmp_path, s3.url, s3, bucket=s3.lock_bucket)
    result = cli.run("cleanup-versions", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"deleted_versions": 0, "still_locked": 0, "aborted_uploads": 0,
                                         "dry_run": True}
    local = tmp_path / "local.toml"
    local.write_text(f'[agent]\nstate_dir = "{tmp_path}/state"\n[source]\npaths = ["{cli.source}"]\n'
                     f'[repositories.disk]\nurl = "file://{tmp_path}/repo"\n')
    refused = subprocess.run([sys.executable, "-m", "agent", "--config", str(local), "cleanup-versions"],
                             capture_output=True, text=True, env=cli.env, timeout=120)
    assert "is not on S3" in _assert_one_line_error(refused, 2)


def test_prune_on_s3_sets_lock_dates_per_tier_and_leaves_no_lock_object(tmp_path, s3):
    """With object lock, prune locks a monthly keeper's objects for twelve months (plus
    the margin), a weekly one's for weeks; repository locks never stay in the bucket;
    a forgotten snapshot still under its write-time lock keeps its data until then."""
    from agent.engine.lock_dates import LOCK_MARGIN
    from agent.engine.retention import RetentionPolicy, apply_policy

    cli = Cli(tmp_path, s3.url, s3, bucket=s3.lock_bucket,
              extra='object_lock = "compliance"\nlock_days = 3\n[retention]\ntimezone = "UTC"')
    assert cli.run("init").returncode == 0
    now = dt.datetime.now(dt.timezone.utc)
    # Two backups on the 5th of a month two or three months ago (the older one is then
    # forgotten: not its month's newest), and one yesterday.
    fifth = (now.replace(day=1) - dt.timedelta(days=70)).replace(day=5, hour=10, minute=0, second=0, microsecond=0)
    times = [fifth, fifth + dt.timedelta(hours=1), now - dt.timedelta(days=1)]
    for i, when in enumerate(times):
        (cli.source / f"semaine-{i}.bin").write_bytes(os.urandom(200_000))
        backup = cli.run("backup", "--time", when.isoformat(), "--json")
        assert backup.returncode == 0, backup.stderr
    prune = cli.run("prune", "--json")
    assert prune.returncode == 0, prune.stderr
    report = json.loads(prune.stdout)
    assert report["object_locks"]["locks_extended"] > 0
    client = s3.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3.lock_bucket, Prefix=cli.prefix)["Contents"]]
    assert not [k for k in keys if "/locks/" in k]  # prune's own lock is gone

    class Snap:  # what the policy needs, from the JSON
        def __init__(self, doc):
            self.id, self.time = bytes.fromhex(doc["snapshot_id"]), dt.datetime.fromisoformat(doc["time"])
            self.host, self.paths, self.tags = "h", ["/"], []

    snaps = [Snap(d) for d in report["snapshots"]]
    expected = {d.snapshot_id.hex(): d for d in apply_policy(snaps, RetentionPolicy(timezone="UTC"), now=now)}
    by_time = sorted(report["snapshots"], key=lambda d: d["time"])
    older, monthly, newest = by_time
    assert older["action"] == "forget" and monthly["action"] == "keep"
    for doc in (monthly,):
        until = expected[doc["snapshot_id"]].settled_until + LOCK_MARGIN
        key = f"{cli.prefix}/snapshots/{doc['snapshot_id']}"
        got = client.head_object(Bucket=s3.lock_bucket, Key=key)["ObjectLockRetainUntilDate"]
        assert abs(got - until) < dt.timedelta(minutes=1), (got, until)
        assert got > now + dt.timedelta(days=250)  # a monthly keeper: most of a year ahead
    # The forgotten snapshot is still under its 3-day write lock: it stays, and so does its data.
    assert f"{cli.prefix}/snapshots/{older['snapshot_id']}" in keys
    assert any(older["snapshot_id"] in o["object"] for o in report["locked_objects"])
    assert report["snapshots_forgotten"] == 0
    check = cli.run("check", "--read-data", "--json")
    assert check.returncode == 0 and json.loads(check.stdout)["ok"] is True, check.stdout


def test_restore_test_report_on_s3_names_endpoint_bucket_and_lock_and_is_kept_locked(tmp_path, s3):
    """The report of an S3 repository shows where the data is and how it is locked, and
    its copy in the bucket is an object like the others: encrypted, under object lock."""
    cli = Cli(tmp_path, s3.url, s3, bucket=s3.lock_bucket, extra='object_lock = "compliance"\nlock_days = 3')
    assert cli.run("init").returncode == 0 and cli.run("backup").returncode == 0
    result = cli.run("restore-test", "--sample", "5", "--scratch-dir", str(tmp_path / "scratch"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["report"]
    with open(report["json"], encoding="utf-8") as handle:
        document = json.load(handle)
    repository = document["repository"]
    assert (repository["kind"], repository["endpoint"], repository["bucket"], repository["prefix"]) == (
        "s3", s3.url, s3.lock_bucket, cli.prefix)
    assert repository["object_lock"] == "compliance" and repository["lock_days"] == 3
    rules = {r["rule"]: r["status"] for r in document["compliance"]["rules"]}
    assert rules["S8"] == "OK" and rules["S7"] == "OK"
    with open(report["html"], encoding="utf-8") as handle:
        page = handle.read()
    assert s3.lock_bucket in page and "conformité" in page  # the lock mode, in French
    key = f"{cli.prefix}/reports/{document['report_id']}"
    head = s3.client().head_object(Bucket=s3.lock_bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > dt.datetime.now(dt.timezone.utc)
    stored = s3.client().get_object(Bucket=s3.lock_bucket, Key=key)["Body"].read()
    assert document["report_id"].encode() not in stored and b"restore_test" not in stored  # encrypted
