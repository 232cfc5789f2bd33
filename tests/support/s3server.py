"""A real S3 server process for the tests: moto's standalone `moto_server` on loopback,
behind a hop that checks every upload's checksums as AWS S3 does (tests/support/checkingproxy.py;
moto alone stores a wrong `x-amz-checksum-sha256` without a word). `url` is the hop, the
server the tests speak to; `unchecked_url` is moto itself, a server that does not check.

The suite also runs against a real endpoint when BACKUPCTL_TEST_S3_ENDPOINT,
BACKUPCTL_TEST_S3_BUCKET (an object-lock bucket), AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY are set; then no server is started.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

from tests.support.checkingproxy import ChecksumCheckingProxy


@dataclass
class S3Endpoint:
    url: str
    access_key: str
    secret_key: str
    region: str
    lock_bucket: str  # versioning + object lock enabled
    plain_bucket: str  # neither
    process: subprocess.Popen | None = None
    unchecked_url: str = ""  # moto_server itself, which stores any checksum unchecked
    checker: ChecksumCheckingProxy | None = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def unchecked_port(self) -> int:
        return int(self.unchecked_url.rsplit(":", 1)[1])

    def env(self) -> dict:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region}

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.url, region_name=self.region,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                            config=Config(s3={"addressing_style": "path"},
                                          request_checksum_calculation="when_required",
                                          response_checksum_validation="when_required"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start() -> S3Endpoint:
    if os.environ.get("BACKUPCTL_TEST_S3_ENDPOINT"):
        return S3Endpoint(
            url=os.environ["BACKUPCTL_TEST_S3_ENDPOINT"],
            access_key=os.environ["AWS_ACCESS_KEY_ID"],
            secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            lock_bucket=os.environ["BACKUPCTL_TEST_S3_BUCKET"],
            plain_bucket=os.environ.get("BACKUPCTL_TEST_S3_PLAIN_BUCKET", os.environ["BACKUPCTL_TEST_S3_BUCKET"]),
        )  # a real provider checks checksums itself; tests of an unchecking server are skipped
    port = free_port()
    server = os.path.join(os.path.dirname(sys.executable), "moto_server")
    process = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.1)
    checker = ChecksumCheckingProxy(port).start()
    endpoint = S3Endpoint(url=checker.url, access_key="AK" + secrets.token_hex(8), secret_key=secrets.token_hex(16),
                          region="us-east-1", lock_bucket="backupctl-locked", plain_bucket="backupctl-plain",
                          process=process, unchecked_url=url, checker=checker)
    client = endpoint.client()
    client.create_bucket(Bucket=endpoint.lock_bucket, ObjectLockEnabledForBucket=True)
    client.create_bucket(Bucket=endpoint.plain_bucket)
    return endpoint


def stop(endpoint: S3Endpoint) -> None:
    if endpoint.checker is not None:
        endpoint.checker.stop()
    if endpoint.process is not None:
        endpoint.process.terminate()
        try:
            endpoint.process.wait(10)
        except subprocess.TimeoutExpired:
            endpoint.process.kill()
