"""How uploads to S3 are verified (verify_uploads = "auto"): HEAD where the endpoint probe
showed the server checks our SHA-256, read-back where it did not. Against the test server
(moto_server behind a hop that refuses a wrong SHA-256 as AWS S3 does, BadDigest:
tests/support/checkingproxy.py), and against moto_server alone, which stores any checksum
it is given without checking it (`s3.unchecked_url`)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import uuid
from collections import Counter

import botocore.exceptions
import pytest

from agent.storage import open_storage
from agent.storage.options import S3Options
from agent.storage.s3 import S3Storage
from tests.integration.test_s3 import Cli
from tests.support.faultproxy import FaultProxy


# boto3 in this process finds the server's credentials in the environment, for each test only
pytestmark = pytest.mark.usefixtures("s3_credentials")


def _port(s3) -> int:
    return int(s3.url.rsplit(":", 1)[1])


def _storage(s3, endpoint: str, **options) -> S3Storage:
    return S3Storage(S3Options(bucket=s3.plain_bucket, prefix="verify-" + uuid.uuid4().hex[:8], endpoint=endpoint,
                               region=s3.region, addressing="path", **options))


def _object_requests(proxy: FaultProxy, method: str) -> list[str]:
    return [path for verb, path in proxy.paths if verb == method and "/data/" in path]


def _unchecked(s3) -> int:
    """The port of moto_server itself (no checking hop), or skip against a real provider."""
    if not s3.unchecked_url:
        pytest.skip("a real provider checks checksums: no server here that does not")
    return s3.unchecked_port


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def _hop(s3):
    if s3.checker is None:
        pytest.skip("a real provider: the test server's checking hop is not in the way")
    return s3.checker


def test_the_test_server_refuses_a_wrong_sha256_as_aws_s3_does(s3):
    """Every S3 test speaks to moto through the checking hop: a body whose SHA-256 is not
    the one announced is refused, 400 BadDigest, and nothing is stored."""
    client = s3.client()
    key = "hop-" + uuid.uuid4().hex
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        client.put_object(Bucket=s3.plain_bucket, Key=key, Body=b"the body sent", ChecksumAlgorithm="SHA256",
                          ChecksumSHA256=_b64_sha256(b"another body"))
    answer = caught.value.response
    assert answer["Error"]["Code"] == "BadDigest" and answer["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "did not match the calculated checksum" in answer["Error"]["Message"]
    with pytest.raises(botocore.exceptions.ClientError, match="404"):
        client.head_object(Bucket=s3.plain_bucket, Key=key)
    client.put_object(Bucket=s3.plain_bucket, Key=key, Body=b"the body sent", ChecksumAlgorithm="SHA256",
                      ChecksumSHA256=_b64_sha256(b"the body sent"))
    assert client.get_object(Bucket=s3.plain_bucket, Key=key)["Body"].read() == b"the body sent"


def test_a_correct_upload_passes_the_checking_hop(s3):
    hop = _hop(s3)
    before, refused_before = Counter(hop.counts), len(hop.mismatches)
    storage = _storage(s3, s3.url)
    data = os.urandom(70_000)
    storage.write("data/00/object", data)
    assert storage.read("data/00/object") == data
    checked = hop.counts["checked"] - before["checked"]
    assert checked == 4, checked  # the probe's three PUTs, then ours, each body checked
    # Refused: the probe's deliberately wrong checksum, and nothing else.
    assert [(verb, "/probe/" in path, code) for verb, path, code in hop.mismatches[refused_before:]] \
        == [("PUT", True, "BadDigest")]


def _retrying_storage(s3, prefix: str):
    options = S3Options(bucket=s3.plain_bucket, prefix=prefix, endpoint=s3.url, region=s3.region,
                        addressing="path", retry_attempts=4)
    storage = open_storage(f"s3://{s3.plain_bucket}/{prefix}", s3=options)
    storage.base_delay = 0.01
    return storage, storage.inner.inner


def test_an_upload_with_a_mismatched_checksum_is_refused_then_sent_again_right(s3):
    hop = _hop(s3)
    storage, backend = _retrying_storage(s3, "lie-" + uuid.uuid4().hex[:8])
    storage.write("data/00/first", b"probes the endpoint")
    lies = []

    def send_the_sha256_of_another_body_once(request, **_kwargs) -> None:
        if request.method == "PUT" and "/data/01/" in request.url and not lies:
            request.headers["x-amz-checksum-sha256"] = _b64_sha256(b"another body")
            lies.append(request.url)

    backend.client.meta.events.register("before-send.s3.PutObject", send_the_sha256_of_another_body_once)
    refused_before = len(hop.mismatches)
    data = os.urandom(50_000)
    storage.write("data/01/object", data)
    assert lies and [code for _verb, path, code in hop.mismatches[refused_before:]] == ["BadDigest"]
    assert storage.retries == 1  # refused once (BadDigest is transient), then sent again
    assert storage.read("data/01/object") == data


def test_an_upload_altered_in_transit_is_refused_then_sent_again_intact(s3):
    hop = _hop(s3)
    storage, backend = _retrying_storage(s3, "alter-" + uuid.uuid4().hex[:8])
    storage.write("data/00/first", b"probes the endpoint")
    before, refused_before = Counter(hop.counts), len(hop.mismatches)
    data = os.urandom(50_000)
    hop.alter_uploads = 1  # one byte of the next body flipped on its way, after the agent's SHA-256
    storage.write("data/01/object", data)
    assert hop.counts["altered"] - before["altered"] == 1
    assert [(verb, "/data/01/" in path, code) for verb, path, code in hop.mismatches[refused_before:]] \
        == [("PUT", True, "BadDigest")]
    assert storage.retries == 1
    assert storage.read("data/01/object") == data
    assert s3.client().get_object(Bucket=s3.plain_bucket, Key=f"{backend.prefix}/data/01/object",
                                  ChecksumMode="ENABLED")["ChecksumSHA256"] == _b64_sha256(data)


def test_the_probe_says_true_behind_the_checking_hop_and_false_on_moto_alone(s3):
    assert _storage(s3, s3.url).probe()["rejects_bad_checksum"] is True
    moto = f"http://127.0.0.1:{_unchecked(s3)}"
    assert _storage(s3, moto).probe()["rejects_bad_checksum"] is False


def test_moto_stores_a_wrong_checksum_so_auto_reads_back(s3):
    with FaultProxy(_unchecked(s3)) as proxy:
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
    refused_before = s3.checker.counts["BadDigest"]  # the checking server behind the proxy
    with FaultProxy(_port(s3)) as proxy:
        storage = _storage(s3, proxy.url)
        for i in range(3):
            storage.write(f"data/0{i}/object{i}", os.urandom(5000))
        # the probe's deliberately wrong checksum, refused
        assert s3.checker.counts["BadDigest"] - refused_before == 1
    assert storage.verification().mode == "head"
    assert len(_object_requests(proxy, "PUT")) == 3
    assert len(_object_requests(proxy, "HEAD")) == 3
    assert _object_requests(proxy, "GET") == []


def test_head_verification_reads_back_when_the_answer_holds_no_checksum(s3):
    with FaultProxy(_port(s3)) as proxy:
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
    with FaultProxy(_port(s3)) as proxy:
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
    cli = Cli(tmp_path, f"http://127.0.0.1:{_unchecked(s3)}", s3, bucket=s3.plain_bucket)
    init = cli.run("init")
    assert init.returncode == 0, init.stderr
    assert "uploads verified by: read-back" in init.stdout
    assert "accepts an upload with a wrong SHA-256" in init.stdout
    assert _status(cli)["mode"] == "read-back"


def test_a_backup_without_a_recorded_probe_probes_once_and_records_it(tmp_path, s3):
    with FaultProxy(_port(s3)) as proxy:
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
    with FaultProxy(_port(s3)) as proxy:
        storage = _storage(s3, proxy.url)
        storage.write("data/00/object", os.urandom(5000))  # probes the endpoint first
        storage.write("locks/" + "ab" * 16, os.urandom(200), ephemeral=True)
        assert storage.read("locks/" + "ab" * 16)
    locks = [(verb, path) for verb, path in proxy.paths if "/locks/" in path]
    assert [verb for verb, _path in locks] == ["PUT", "GET"], locks  # the PUT, then the test's own read


class _Raw:
    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def stream(self, **_kwargs):
        yield self.payload


def test_a_probe_answered_by_an_outage_is_no_proof_that_the_server_checks(s3):
    """The probe's deliberately wrong upload must be refused for its checksum: a 503 SlowDown
    (or a connection lost) says nothing about checksums. Taken for a refusal, it set HEAD
    verification on a server that stores altered uploads without a word."""
    from botocore.awsrequest import AWSResponse

    from agent.errors import TransientStorageError

    storage = _storage(s3, f"http://127.0.0.1:{_unchecked(s3)}")  # moto alone: does not check
    outages = []

    def slow_down_the_wrong_upload(request, **_kwargs):
        if request.method == "PUT" and "/probe/" in request.url \
                and request.headers.get("x-amz-checksum-sha256") == _b64_sha256(b"not the data").encode():
            outages.append(request.url)
            return AWSResponse(request.url, 503, {}, _Raw(b"<Error><Code>SlowDown</Code>"
                                                          b"<Message>Please reduce your request rate.</Message>"
                                                          b"</Error>"))
        return None

    storage.client.meta.events.register("before-send.s3.PutObject", slow_down_the_wrong_upload)
    with pytest.raises(TransientStorageError, match="SlowDown"):
        storage.probe()
    assert outages  # botocore's own retries met the same outage
    assert storage.verification().mode == "read-back"  # nothing was concluded

    storage.client.meta.events.unregister("before-send.s3.PutObject", slow_down_the_wrong_upload)
    assert storage.probe()["rejects_bad_checksum"] is False  # the outage over, the truth


def test_a_probe_refused_for_another_reason_is_no_proof_that_the_server_checks(s3):
    """A server that refuses the probe's wrong upload for something else than its checksum (a
    header it does not support: 400 InvalidRequest) has not shown that it compares checksums
    with the bytes: the probe says so, and uploads stay verified by reading them back."""
    from botocore.awsrequest import AWSResponse

    storage = _storage(s3, f"http://127.0.0.1:{_unchecked(s3)}")  # moto alone: does not check

    def refuse_the_header(request, **_kwargs):
        if request.method == "PUT" and "/probe/" in request.url \
                and request.headers.get("x-amz-checksum-sha256") == _b64_sha256(b"not the data").encode():
            return AWSResponse(request.url, 400, {}, _Raw(b"<Error><Code>InvalidRequest</Code>"
                                                          b"<Message>x-amz-checksum-sha256 is not supported"
                                                          b"</Message></Error>"))
        return None

    storage.client.meta.events.register("before-send.s3.PutObject", refuse_the_header)
    facts = storage.probe()
    assert facts["rejects_bad_checksum"] is False
    assert facts["bad_checksum_answer"] == "400 InvalidRequest"
    assert storage.verification().mode == "read-back"


def test_the_hop_reads_the_checksum_of_an_aws_chunked_body_from_its_trailer():
    """boto3 sends aws-chunked bodies with a trailing checksum when checksums are computed
    "when_supported" (backupctl turns that off; another client of the suite may not)."""
    from tests.support.checkingproxy import mismatch

    payload = b"x" * 70_000 + b"end"

    def chunked(checksum: str) -> bytes:
        return (b"%x;chunk-signature=ab\r\n" % 65536 + payload[:65536] + b"\r\n"
                + b"%x\r\n" % (len(payload) - 65536) + payload[65536:] + b"\r\n"
                + b"0\r\nx-amz-checksum-sha256:" + checksum.encode() + b"\r\n\r\n")

    headers = {"content-encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-sha256",
               "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER"}
    assert mismatch(headers, chunked(_b64_sha256(payload))) is None
    assert mismatch(headers, chunked(_b64_sha256(b"another body"))) == ("BadDigest", "sha256")
    assert mismatch({"content-md5": base64.b64encode(hashlib.md5(b"other").digest()).decode()}, payload) \
        == ("BadDigest", "md5")
    assert mismatch({"x-amz-content-sha256": hashlib.sha256(b"other").hexdigest()}, payload) \
        == ("XAmzContentSHA256Mismatch", "content-sha256")
    assert mismatch({"x-amz-content-sha256": hashlib.sha256(payload).hexdigest()}, payload) is None
