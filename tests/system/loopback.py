"""The S3 server (moto_server) and the SMTP server (aiosmtpd) of the system test, run from the
test's own venv but inside the container's network namespace (`nsenter --net`): the
container, which has only its loopback, reaches them on 127.0.0.1 and nothing else.

Run as `python -m tests.system.loopback smtp FOLDER`: the mail server writes its port to
FOLDER/port, its certificate to FOLDER/smtp.pem, and each message it accepts (after a login
over STARTTLS) to FOLDER/<n>.eml.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

CHECKOUT = Path(__file__).resolve().parents[2]


def _in_netns(leader: int, argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["nsenter", "-t", str(leader), "-n", *argv], cwd=CHECKOUT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def _wait(what: str, process: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{what} did not start in the container's network namespace")
        time.sleep(0.2)


def start_s3(leader: int, port: int, *, access_key: str, secret_key: str, bucket: str) -> subprocess.Popen[bytes]:
    """moto_server on the container's 127.0.0.1:port, with an object-lock bucket."""
    server = _in_netns(leader, [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                                "-p", str(port)])
    create = (f"import boto3; from botocore.config import Config; boto3.client('s3', endpoint_url="
              f"'http://127.0.0.1:{port}', region_name='us-east-1', aws_access_key_id='{access_key}', "
              f"aws_secret_access_key='{secret_key}', config=Config(s3={{'addressing_style': 'path'}}))"
              f".create_bucket(Bucket='{bucket}', ObjectLockEnabledForBucket=True)")

    def created() -> bool:
        return subprocess.run(["nsenter", "-t", str(leader), "-n", sys.executable, "-c", create],
                              capture_output=True).returncode == 0

    _wait("moto_server", server, created)
    return server


def start_smtp(leader: int, folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    folder.mkdir(parents=True, exist_ok=True)
    server = _in_netns(leader, [sys.executable, "-m", "tests.system.loopback", "smtp", str(folder)])
    _wait("the SMTP server", server, (folder / "port").is_file)
    return server, int((folder / "port").read_text())


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(10)


def _serve_smtp(folder: Path) -> None:
    from tests.support.mailserver import start_smtp as start

    controller, mailbox, port, cert = start(folder, mode="starttls")
    (folder / "port.tmp").write_text(str(port))
    (folder / "port.tmp").rename(folder / "port")
    written = 0
    try:
        while True:
            while written < len(mailbox.messages):
                (folder / f"{written}.eml").write_bytes(bytes(mailbox.messages[written]))
                written += 1
            time.sleep(0.2)
    finally:
        controller.stop()


if __name__ == "__main__":
    assert sys.argv[1] == "smtp"
    _serve_smtp(Path(sys.argv[2]))
