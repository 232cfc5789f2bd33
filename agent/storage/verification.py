"""How uploads are verified after the fact, chosen from what the endpoint probe measured.

Every upload carries our SHA-256 (`x-amz-checksum-sha256`). Some S3-compatible servers
store any checksum they are given without checking it: there, only downloading the
object again ("read-back") proves the provider holds what we sent, at the price of a
second transfer of everything. Where the probe (S3Storage.probe) showed that the server
refuses an upload whose body does not match the checksum AND returns the stored checksum
on HEAD, the server has checked our SHA-256 against the bytes it received, and comparing
size and stored checksum by HEAD ("head") proves the same without the second transfer.

`verify_uploads = "auto"` (the default) takes "head" only on that evidence; "read-back"
and "head" set by hand are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

READ_BACK = "read-back"
HEAD = "head"
AUTO = "auto"


@dataclass(frozen=True)
class Verification:
    mode: str  # "head" or "read-back": what is done after each upload
    setting: str  # verify_uploads as configured: "auto", "head" or "read-back"
    reason: str  # why, in a few words (English, for the console and --json)

    def as_dict(self) -> dict[str, str]:
        return {"mode": self.mode, "setting": self.setting, "reason": self.reason}


def server_verifies(facts: dict[str, Any] | None) -> bool:
    """The probe saw the server refuse a wrong SHA-256 and return the stored one."""
    return facts is not None and facts.get("rejects_bad_checksum") is True \
        and facts.get("returns_sha256_checksum") is True


def choose(setting: str, facts: dict[str, Any] | None) -> Verification:
    """The mode in force for `setting` given the probe's facts (None: not probed)."""
    if setting in (HEAD, READ_BACK):
        return Verification(setting, setting, "set by verify_uploads")
    if facts is None:
        return Verification(READ_BACK, AUTO, "endpoint not probed yet: the next upload probes it")
    if server_verifies(facts):
        return Verification(HEAD, AUTO, "the server rejects a wrong SHA-256 and returns the stored one")
    if not facts.get("rejects_bad_checksum"):
        return Verification(READ_BACK, AUTO, "the server accepts an upload with a wrong SHA-256")
    return Verification(READ_BACK, AUTO, "the server does not return the stored SHA-256")


def facts_for(facts: dict[str, Any] | None, endpoint: str | None, bucket: str) -> dict[str, Any] | None:
    """Recorded probe facts if they were measured on this endpoint and bucket, else None."""
    if facts and facts.get("endpoint") == (endpoint or "AWS") and facts.get("bucket") == bucket:
        return facts
    return None
