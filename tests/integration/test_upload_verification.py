"""How uploads to S3 are verified (verify_uploads = "auto"): HEAD where the endpoint probe
showed the server checks our SHA-256, read-back where it did not. Against moto_server,
which stores any checksum it is given without checking it, and against the same server
behind a verifying hop that refuses a wrong SHA-256 as AWS S3 does (BadDigest)."""

from __future__ import annotations

import json
import os
import shutil
import uuid

from agent.storage.options import S3Options
from agent.storage.s3 import S3Storage
from tests.integration.test_s3 import Cli
from tests.support.faultproxy import FaultProxy


def _port(s3) -> int:
    return int(s3.url.rsplit(":", 1)[1])


def _storage(s3, endpoint: str, **options) -> S3Storage:
    os.environ.update(s3.env())
    return S3Storage(S3Options(bucket=s3.plain_bucket, prefix="verify-" + uuid.uuid4().hex[:8], endpoint=endpoint,
                               region=s3.region, addressing="path", **options))


def _object_requests(proxy: FaultProxy, method: str) -> list[str]:
    return [path for verb, path in proxy.paths if verb == method and "/data/" in path]


def test_moto_stores_a_wrong_checksum_so_auto_reads_back(s3):
    with FaultProxy(_port(s3)) as proxy:
        storage = _storage(s3, proxy.url)
        assert storage.verification().mode == "read-back"  # not probed yet
        for i in range(3):
            storage.write(f"data/0{i}/object{i}", os.urandom(5000))
    mode = storage.verification()
    assert (mode.mode, mode.setting) == ("read-back", "auto")
    assert "wrong SHA-256" in mode.reason
    # The first upload probed the endpoint; each object was then downloaded again.
    assert len(_object_requests(proxy, "PUT")) == 3
    assert len(_object_requests(proxy, "GET")) == 3
    assert _object_requests(proxy, "HEAD") == []


def test_a_server_that_checks_checksums_is_verified_by_head_without_download(s3):
    with FaultProxy(_port(s3), verify_checksums=True) as proxy:
        storage = _storage(s3, proxy.url)
        for i in range(3):
            storage.write(f"data/0{i}/object{i}", os.urandom(5000))
        assert proxy.counts["bad_digest"] == 1  # the probe's deliberately wrong checksum, refused
    assert storage.verification().mode == "head"
    assert len(_object_requests(proxy, "PUT")) == 3
    assert len(_object_requests(proxy, "HEAD")) == 3
    assert _object_requests(proxy, "GET") == []


def test_head_verification_reads_back_when_the_answer_holds_no_checksum(s3):
    with FaultProxy(_port(s3), verify_checksums=True) as proxy:
        storage = _storage(s3, proxy.url, verify_uploads="head")
        original = storage.client.head_object

        def without_checksum(**kwargs):
            answer = dict(original(**kwargs))
            answer.pop("ChecksumSHA256", None)
            return answer

        storage.client.head_object = without_checksum
        storage.write("data/00/object", os.urandom(5000))
    assert len(_object_requests(proxy, "GET")) == 1


def test_a_set_mode_is_kept_whatever_the_probe_says(s3):
    with FaultProxy(_port(s3)) as proxy:
        storage = _storage(s3, proxy.url, verify_uploads="head")
        storage.write("data/00/object", os.urandom(5000))
    assert storage.verification().mode == "head"
    assert _object_requests(proxy, "GET") == []
    assert not any("/probe/" in path for _verb, path in proxy.paths)  # no probe needed


def _status(cli: Cli) -> dict:
    status = cli.run("status", "--json")
    return json.loads(status.stdout)["repositories"][0]["upload_verification"]


def test_init_status_and_backup_follow_the_probe(tmp_path, s3):
    with FaultProxy(_port(s3), verify_checksums=True) as proxy:
        cli = Cli(tmp_path, proxy.url, s3, bucket=s3.plain_bucket)
        init = cli.run("init", "--json")
        assert init.returncode == 0, init.stderr
        assert json.loads(init.stdout)["verify_uploads"]["mode"] == "head"
        assert _status(cli)["mode"] == "head" and _status(cli)["probed"] is not None
        text = cli.run("status").stdout
        assert "uploads verified by: HEAD" in text
        before = len(proxy.paths)
        backup = cli.run("backup")
        assert backup.returncode == 0, backup.stderr
        during = proxy.paths[before:]
        test = cli.run("restore-test", "--sample", "1", "--scratch-dir", str(tmp_path / "scratch"), "--json")
    packs = [p for verb, p in during if verb == "PUT" and "/data/" in p]
    assert packs and not [p for verb, p in during if verb == "GET" and "/data/" in p]
    assert not any("/probe/" in p for _verb, p in during)  # init's recorded probe was used

    # The restore-test report (French by default) says how uploads are verified.
    assert test.returncode == 0, test.stderr
    report = json.loads(test.stdout)["report"]
    assert json.loads(open(report["json"], encoding="utf-8").read())["repository"]["upload_verification"] == "head"
    assert "Vérification des envois" in open(report["html"], encoding="utf-8").read()


def test_init_says_read_back_on_a_server_that_does_not_check(tmp_path, s3):
    cli = Cli(tmp_path, s3.url, s3, bucket=s3.plain_bucket)
    init = cli.run("init")
    assert init.returncode == 0, init.stderr
    assert "uploads verified by: read-back" in init.stdout
    assert "accepts an upload with a wrong SHA-256" in init.stdout
    assert _status(cli)["mode"] == "read-back"


def test_a_backup_without_a_recorded_probe_probes_once_and_records_it(tmp_path, s3):
    with FaultProxy(_port(s3), verify_checksums=True) as proxy:
        cli = Cli(tmp_path, proxy.url, s3, bucket=s3.plain_bucket)
        assert cli.run("init").returncode == 0
        shutil.rmtree(tmp_path / "state" / "records")  # a machine reinstalled: no record
        assert _status(cli)["mode"] == "read-back" and _status(cli)["probed"] is None
        before = len(proxy.paths)
        assert cli.run("backup").returncode == 0
        during = proxy.paths[before:]
    assert sum(1 for verb, p in during if verb == "PUT" and "/probe/" in p) == 3  # one probe
    assert not [p for verb, p in during if verb == "GET" and "/data/" in p]
    assert _status(cli)["mode"] == "head"


def test_a_repository_lock_is_written_in_one_request(s3):
    """A lock's PUT is not followed by a HEAD or a read-back: it would be one more round trip
    before every command can list the other locks, for an object whose damage only makes
    prune wait (agent/repo/repository.py, write_lock_object, which writes it ephemeral)."""
    with FaultProxy(_port(s3), verify_checksums=True) as proxy:
        storage = _storage(s3, proxy.url)
        storage.write("data/00/object", os.urandom(5000))  # probes the endpoint first
        storage.write("locks/" + "ab" * 16, os.urandom(200), ephemeral=True)
        assert storage.read("locks/" + "ab" * 16)
    locks = [(verb, path) for verb, path in proxy.paths if "/locks/" in path]
    assert [verb for verb, _path in locks] == ["PUT", "GET"], locks  # the PUT, then the test's own read
