"""The recovery sheet (rule K1) as facts: what the page shows, with the commands that
recover the repository on a new machine from the sheet alone and the bucket's access key.

The sheet holds the master secret (or one share of it) in clear: it is the one document
that must stay on paper, in the safe.
"""

from __future__ import annotations

import os
import shlex
import socket
from typing import Any

from agent import clock
from agent.config import Config, RepositorySettings
from agent.crypto import paper
from agent.state import media
from agent.repo import layout
from agent.repo.rescue_kit import KitRecord
from agent.repo.repository import Repository
from agent.reports.document import CIPHER_NAMES


def repository_url(settings: RepositorySettings) -> str:
    """Where `recover` finds the repository: for a set of disks, the repository folder of
    the disk mounted at the configured place."""
    if settings.media:
        return "file://" + os.path.join(settings.mount, media.REPOSITORY_DIR)
    return settings.url


def recover_command(settings: RepositorySettings) -> str:
    words = ["backupctl", "recover", "--url", repository_url(settings)]
    if settings.s3 and settings.s3.endpoint:
        words += ["--endpoint", settings.s3.endpoint]
    if settings.s3 and settings.s3.region:
        words += ["--region", settings.s3.region]
    if settings.s3 and settings.s3.addressing != "auto":
        words += ["--addressing", settings.s3.addressing]
    return shlex.join(words)


# Where the installed kit goes on the new machine, and how (the kit's READ-ME-FIRST.txt says the same).
INSTALL_DIR = "/opt/backupctl"


def kit_commands(settings: RepositorySettings, version: str) -> dict[str, str]:
    """How to fetch the repository's rescue kit, check it and install it offline: an
    `aws s3 cp` line for S3, a `cp` from the disk or folder otherwise."""
    kit = layout.rescue_kit_file(version)
    if settings.s3 is not None:
        key = "/".join(part for part in (settings.s3.prefix, layout.rescue_kit_name(version)) if part)
        words = ["aws", "s3", "cp", f"s3://{settings.s3.bucket}/{key}", "."]
        if settings.s3.endpoint:
            words += ["--endpoint-url", settings.s3.endpoint]
        if settings.s3.region:
            words += ["--region", settings.s3.region]
        fetch = shlex.join(words)
    else:
        folder = repository_url(settings).removeprefix("file://")
        fetch = shlex.join(["cp", os.path.join(folder, layout.rescue_kit_name(version)), "."])
    top = kit.removesuffix(".tar")
    return {
        "fetch_kit": fetch,
        "check_kit": shlex.join(["sha256sum", kit]),
        "install_kit": (f"tar xf {shlex.quote(kit)} && cd {shlex.quote(top)} && python3 -m venv {INSTALL_DIR} && "
                        f"{INSTALL_DIR}/bin/pip install --no-index --find-links wheels --require-hashes "
                        f"-r requirements.txt && export PATH={INSTALL_DIR}/bin:$PATH"),
    }


def build(config: Config, settings: RepositorySettings, repo: Repository, code: paper.RecoveryCode, *,
          share_count: int = 0, kit: KitRecord | None = None) -> dict[str, Any]:
    """The sheet's facts; `kit` is the sealed record of the rescue kit stored in the repository
    (None when it has none: the sheet then says to install from the practice's own kit)."""
    base = recover_command(settings)
    kit_lines = kit_commands(settings, kit.version) if kit is not None else {}
    return {
        "language": config.agent.report_language,
        "practice": config.agent.practice_name,
        "host": config.agent.hostname or socket.gethostname(),
        "created": f"{clock.now().astimezone(config.retention.zone):%Y-%m-%d}",
        "repository": {
            "name": settings.name, "url": repository_url(settings),
            "endpoint": settings.s3.endpoint if settings.s3 else None,
            "region": settings.s3.region if settings.s3 else None,
            "bucket": settings.s3.bucket if settings.s3 else None,
            "prefix": settings.s3.prefix if settings.s3 else None,
            "repository_id": repo.config.repository_id.hex(),
            "cipher": CIPHER_NAMES.get(repo.config.cipher, repo.config.cipher),
        },
        "share": ({"number": code.share_number, "count": share_count, "threshold": code.threshold}
                  if code.is_share else None),
        "lines": [{"groups": groups, "check": check} for groups, check in paper.lines(code)],
        "qr_text": paper.qr_text(code),
        "rescue_kit": ({"version": kit.version, "file": kit.file, "sha256": kit.sha256, "size": kit.size}
                       if kit is not None else None),
        "commands": {"list": f"{base} --list", "restore": f"{base} --restore latest --target /srv/restauration",
                     "add_key": f"{base} --add-key", **kit_lines},
    }
