"""Settings of the S3 backend, as plain values (importing them does not import boto3)."""

from __future__ import annotations

from dataclasses import dataclass

LOCK_MODES = ("none", "governance", "compliance")
CHECKSUM_CHOICES = ("when_required", "when_supported")
VERIFY_CHOICES = ("auto", "read-back", "head")
ADDRESSING_CHOICES = ("auto", "path", "virtual")


@dataclass(frozen=True)
class S3Options:
    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None
    addressing: str = "auto"
    profile: str | None = None
    credentials_file: str | None = None
    ca_bundle: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    allow_insecure: bool = False
    # boto3 >= 1.36 adds CRC32 checksums (in aws-chunked trailers) to every upload by
    # default, which several S3-compatible providers reject. "when_required" (our
    # default) sends only the SHA-256 checksum we compute ourselves.
    request_checksum_calculation: str = "when_required"
    response_checksum_validation: str = "when_required"
    object_lock: str = "none"
    lock_days: int = 30
    max_concurrency: int = 4
    bandwidth_limit_kib: int = 0
    # "auto": "head" where the endpoint probe showed the server checks and keeps our SHA-256,
    # "read-back" elsewhere (agent/storage/verification.py).
    verify_uploads: str = "auto"
    retry_attempts: int = 6
