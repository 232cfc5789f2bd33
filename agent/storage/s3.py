"""A repository in an S3 bucket (the only module that imports boto3/botocore).

Meant for the object storage of an HDS-certified host (rule H1). Every upload carries
the SHA-256 we computed (`ChecksumSHA256`), and is verified after the fact because
some S3-compatible servers store any checksum they are given without checking it:

* "read-back": the object is downloaded again and its SHA-256 compared before the
  write returns, so no index or snapshot can ever refer to an object the provider does
  not hold intact;
* "head": only the size and the stored checksum are compared, no second transfer;
  sound only where the server checked our checksum against the bytes it received.
`verify_uploads = "auto"` (default) takes "head" where the endpoint probe showed the
server does (agent/storage/verification.py), "read-back" elsewhere; the probe's facts
come from `init` (recorded in the state directory) or, when none were recorded for
this endpoint, from a probe made before the first upload.

With object lock, every object is written with a retain-until date (rule S8), and
`delete` refuses, before sending anything, to touch an object still under lock. This
backend knows no repository names: what differs between objects (an ephemeral one, never
locked nor verified; a random name, which an altered upload may be deleted from) is said
by the caller with each write (agent/storage/base.py).
Errors are translated here: permanent ones (credentials, bucket, clock) become one
`StorageError` line naming endpoint and bucket; retryable ones become
`TransientStorageError` for storage/retry.py. Credentials never appear in messages.
"""

from __future__ import annotations

import base64
import configparser
import datetime as _dt
import hashlib
import ipaddress
import os
import stat
import threading
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterator
from urllib.parse import urlparse

import boto3
import botocore.exceptions
from botocore.config import Config as BotoConfig

from agent import clock, run_as
from agent.errors import (ClockSkewError, ConfigError, ForeignObject, ObjectExists, ObjectLocked, ObjectNotFound,
                          StorageError, TransientStorageError)
from agent.storage.base import ObjectInfo
from agent.clock_skew import CLOCK_SKEW_HINT, describe_skew, skew_from_date
from agent.storage.options import S3Options
from agent.storage.verification import AUTO, HEAD, Verification, choose, facts_for

_TRANSIENT_CODES = {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "Throttling",
                    "ThrottlingException", "RequestThrottled", "500", "502", "503", "504",
                    # the server saw other bytes than we sent: altered in transit, send again
                    "BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "IncompleteBody"}
# What a server that checks answers to a body that does not match its checksums.
_CHECKSUM_REFUSALS = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"}
_PERMANENT_HINTS = {
    "AccessDenied": "access denied: check the access key's rights on this bucket",
    "InvalidAccessKeyId": "the access key id is unknown to the provider: check the credentials",
    "SignatureDoesNotMatch": "the secret key is wrong: check the credentials",
    "NoSuchBucket": "the bucket does not exist: check the bucket name in the url",
    "InvalidBucketName": "the bucket name is invalid: check the url",
    "AuthorizationHeaderMalformed": "the request was signed for the wrong region: check region",
    "PermanentRedirect": "the bucket is in another region or endpoint: check endpoint and region",
    "AllAccessDisabled": "all access to this bucket is disabled by the provider",
}
_CONNECTION_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ResponseStreamingError,
)


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read_credentials_file(path: str, profile: str | None) -> tuple[str, str, str | None]:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ConfigError(f"S3 credentials_file {path} does not exist") from None
    except PermissionError:
        raise run_as.credentials_denied(path, "the S3 credentials_file") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"S3 credentials_file {path} is readable by others (mode {stat.S_IMODE(mode):04o})",
                          hint=f"run: chmod 600 {path}")
    # No interpolation: a "%" in a secret is a character, not a reference to expand (the
    # default ConfigParser failed on it with an error quoting the rest of the secret).
    # configparser's own messages quote the offending line, so none of them is passed on.
    parser = configparser.ConfigParser(interpolation=None)
    try:
        # Opened here, not by parser.read(), which skips a file it cannot open without a
        # word: a root-owned 0600 file then read as "has no [default]".
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except PermissionError:
        raise run_as.credentials_denied(path, "the S3 credentials_file") from None
    except OSError as exc:
        raise ConfigError(f"S3 credentials_file {path} cannot be read ({exc.strerror})") from None
    except (configparser.Error, UnicodeDecodeError):
        raise ConfigError(f"S3 credentials_file {path} is not in the AWS credentials format") from None
    section = profile or "default"
    if not parser.has_section(section) or not parser.has_option(section, "aws_access_key_id") \
            or not parser.has_option(section, "aws_secret_access_key"):
        raise ConfigError(f"S3 credentials_file {path} has no [{section}] with aws_access_key_id "
                          f"and aws_secret_access_key")
    values = {field: parser.get(section, field, fallback=None)
              for field in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")}
    values["aws_session_token"] = values["aws_session_token"] or None  # "aws_session_token =" means none
    for field, value in values.items():
        # An indented next line continues a value in this format; a key never holds a
        # line break or a control character, and would fail later with a misleading
        # network error. The message names the field, never the value.
        if value is not None and (not value or any(ord(c) < 32 or c == "\x7f" for c in value)):
            raise ConfigError(f"S3 credentials_file {path}: {field} in [{section}] is empty or holds a line "
                              f"break or control character",
                              hint="write each key on one line of its own, without indenting the next line")
    key_id, secret = values["aws_access_key_id"], values["aws_secret_access_key"]
    assert key_id is not None and secret is not None  # has_option() above
    return key_id, secret, values["aws_session_token"]


class S3Storage:
    def __init__(self, options: S3Options) -> None:
        self.options = options
        self.bucket = options.bucket
        self.prefix = options.prefix.strip("/")
        endpoint = options.endpoint
        if endpoint:
            parsed = urlparse(endpoint)
            if "@" in parsed.netloc:
                # Never echoed: the part before "@" would be a user name and password.
                raise ConfigError("S3 endpoint holds a user name or password (user:secret@host), which "
                                  "would be shown in every message naming the endpoint",
                                  hint="remove it from endpoint and put the keys in credentials_file")
            if parsed.scheme not in ("http", "https"):
                raise ConfigError(f"S3 endpoint {endpoint!r} must start with https://")
            if parsed.scheme == "http" and not _is_loopback(parsed.hostname) and not options.allow_insecure:
                raise ConfigError(f"S3 endpoint {endpoint} is plain http: patient data would cross the "
                                  f"network unprotected", hint="use https://, or set allow_insecure = true "
                                  "only for a test endpoint")
        self.where = f"S3 {endpoint or 'AWS'} bucket {self.bucket}"
        session_args = {}
        if options.credentials_file:
            key, secret, token = _read_credentials_file(options.credentials_file, options.profile)
            session_args = {"aws_access_key_id": key, "aws_secret_access_key": secret,
                            "aws_session_token": token}
        elif options.profile:
            session_args = {"profile_name": options.profile}
        if not options.credentials_file and not os.environ.get("AWS_ACCESS_KEY_ID"):
            # boto3 skips an unreadable shared file silently, then finds no credentials.
            for variable in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
                if os.environ.get(variable):
                    run_as.check_readable(os.environ[variable], f"the S3 credentials file of {variable}")
        try:
            session = boto3.session.Session(**session_args)
        except botocore.exceptions.ProfileNotFound:
            raise ConfigError(f"S3 profile {options.profile!r} is not in the AWS configuration") from None
        config = BotoConfig(
            region_name=options.region,
            connect_timeout=options.connect_timeout,
            read_timeout=options.read_timeout,
            retries={"max_attempts": 3, "mode": "standard"},
            max_pool_connections=max(10, options.max_concurrency * 2),
            s3={"addressing_style": options.addressing},
            request_checksum_calculation=options.request_checksum_calculation,
            response_checksum_validation=options.response_checksum_validation,
        )
        self.client = session.client("s3", endpoint_url=endpoint, config=config,
                                     verify=options.ca_bundle if options.ca_bundle else None)
        # The server's clock, from the Date header of every answer (agent/clock_skew.py).
        self._skew: _dt.timedelta | None = None
        self._sent = threading.local()
        self.client.meta.events.register("before-send.s3", self._note_sent)
        self.client.meta.events.register("after-call.s3", self._note_answer)
        # What the endpoint probe measured (None: not probed for this endpoint yet), and who
        # records a probe made before the first upload (the CLI: in the state directory).
        self._facts: dict[str, Any] | None = None
        self._facts_lock = threading.Lock()
        self._on_probe: Callable[[dict[str, Any]], None] | None = None

    # ---- the server's clock ---------------------------------------------------------

    def _note_sent(self, **_kwargs: Any) -> None:
        self._sent.time = clock.now()
        self._sent.attempts = getattr(self._sent, "attempts", 0) + 1  # botocore's own retries count too

    def _note_answer(self, http_response: Any = None, **_kwargs: Any) -> None:
        sent = getattr(self._sent, "time", None)
        date = http_response.headers.get("Date") if http_response is not None else None
        if sent is None or not date:
            return
        try:
            server = parsedate_to_datetime(date)
        except (TypeError, ValueError):
            return
        if server.tzinfo is not None:
            self._skew = skew_from_date(server, sent, clock.now())

    def clock_skew(self) -> _dt.timedelta | None:
        """The server's clock minus ours at the last answer (None before any answer)."""
        return self._skew

    def _skew_error(self, error: dict[str, Any]) -> ClockSkewError:
        try:
            server = _dt.datetime.fromisoformat(str(error.get("ServerTime", "")).replace("Z", "+00:00"))
            self._skew = server - clock.now()
        except ValueError:
            pass  # the Date header of the refusal was noted already
        gap = describe_skew(self._skew) if self._skew is not None else "this computer's clock is too far off"
        return ClockSkewError(f"{self.where}: {gap}, and the server refuses requests more than 15 minutes off",
                              hint=CLOCK_SKEW_HINT)

    # ---- names and errors -------------------------------------------------------

    def describe(self) -> str:
        return f"{self.where}, prefix {self.prefix or '/'}"

    def _key(self, name: str) -> str:
        if name.startswith("/") or ".." in name.split("/"):
            raise StorageError(f"invalid object name {name!r}")
        return f"{self.prefix}/{name}" if self.prefix else name

    def _name(self, key: str) -> str:
        return key[len(self.prefix) + 1:] if self.prefix else key

    def _translate(self, exc: Exception, action: str, name: str) -> StorageError:
        if isinstance(exc, _CONNECTION_ERRORS):
            return TransientStorageError(f"{self.where}: connection failed while {action} {name} "
                                         f"({type(exc).__name__})", hint="check the network and the endpoint")
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return StorageError(f"{self.where}: no S3 credentials found",
                                hint="set credentials_file, profile, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code in ("NoSuchKey", "404", "NotFound") and code != "NoSuchBucket":
                return ObjectNotFound(f"object {name} is missing from {self.where}")
            if code == "RequestTimeTooSkewed":
                return self._skew_error(error)
            if code in _PERMANENT_HINTS:
                return StorageError(f"{self.where}: {_PERMANENT_HINTS[code]} (while {action} {name})",
                                    hint="nothing was changed in the repository")
            if code in _TRANSIENT_CODES or status >= 500:
                return TransientStorageError(f"{self.where}: provider error {code or status} while {action} {name}")
            if status == 403:
                return StorageError(f"{self.where}: {_PERMANENT_HINTS['AccessDenied']} (while {action} {name})")
            return StorageError(f"{self.where}: {code or status} while {action} {name}: {error.get('Message', '')}")
        if isinstance(exc, botocore.exceptions.ParamValidationError):
            return StorageError(f"{self.where}: invalid request while {action} {name} ({exc})")
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return TransientStorageError(f"{self.where}: {type(exc).__name__} while {action} {name}")
        raise exc

    def _call(self, action: str, name: str, function: Callable[..., Any], **kwargs: Any) -> Any:
        # Any: boto3 has no types; the callers read what they need out of the answer.
        try:
            return function(**kwargs)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._translate(exc, action, name) from None
        except ValueError as exc:
            raise self._garbled(exc, action, name) from None

    def _garbled(self, exc: ValueError, action: str, name: str) -> TransientStorageError:
        """botocore parses an answer whose bytes were altered in transit (a bad proxy, a
        flaky link) into a ValueError, such as an impossible date in a listing: retried."""
        return TransientStorageError(f"{self.where}: the answer to {action} {name} was garbled ({exc})")

    # ---- the Storage contract ------------------------------------------------------

    def exists(self, name: str) -> bool:
        try:
            self.stat(name)
            return True
        except ObjectNotFound:
            return False

    def read(self, name: str, *, max_size: int | None = None) -> bytes:
        # ChecksumMode: the answer carries the SHA-256 stored at upload (see `write`), so a
        # whole object altered in transit is caught here and read again (TransientStorageError,
        # retried), instead of passing for damage at rest or for a malformed key file.
        response = self._call("reading", name, self.client.get_object, Bucket=self.bucket, Key=self._key(name),
                              ChecksumMode="ENABLED")
        body = response["Body"]
        data: bytes
        try:
            if max_size is None:
                data = body.read()
            else:
                # The announced length is checked before the body is read, and the body is
                # read no further than one byte past the bound whatever was announced.
                announced = int(response.get("ContentLength") or 0)
                data = body.read(max_size + 1) if announced <= max_size else b""
                if announced > max_size or len(data) > max_size:
                    body.close()
                    raise ForeignObject(f"{self.where}: object {name} is {max(announced, len(data))} bytes, "
                                        f"more than any such object ({max_size}): not read")
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise TransientStorageError(f"{self.where}: connection lost while reading {name}") from exc
        stored = response.get("ChecksumSHA256")
        if stored and "-" not in stored and base64.b64encode(hashlib.sha256(data).digest()).decode() != stored:
            raise TransientStorageError(f"{self.where}: object {name} was altered in transit (SHA-256 differs "
                                        f"from the one stored with it); read again")
        return data

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        if length == 0:
            return b""
        response = self._call("reading", name, self.client.get_object, Bucket=self.bucket,
                              Key=self._key(name), Range=f"bytes={offset}-{offset + length - 1}")
        try:
            data: bytes = response["Body"].read()
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise TransientStorageError(f"{self.where}: connection lost while reading {name}") from exc
        if len(data) != length:
            raise StorageError(f"object {name} is shorter than expected (truncated?)")
        return data

    def write(self, name: str, data: bytes, *, exclusive: bool = False, random_name: bool = False,
              ephemeral: bool = False) -> None:
        if not isinstance(data, bytes):
            data = bytes(data)  # botocore takes bytes or a file, not a memoryview
        digest = hashlib.sha256(data).digest()
        checksum = base64.b64encode(digest).decode("ascii")
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(name), "Body": data,
                "ChecksumAlgorithm": "SHA256", "ChecksumSHA256": checksum}
        if exclusive:
            args["IfNoneMatch"] = "*"
        until = None if ephemeral else self._retain_until()
        if until is not None:
            args["ObjectLockMode"] = self.options.object_lock.upper()
            args["ObjectLockRetainUntilDate"] = until
        self._sent.attempts = 0
        try:
            self.client.put_object(**args)
        except botocore.exceptions.ClientError as exc:
            resent = getattr(self._sent, "attempts", 0) > 1  # an earlier attempt of this call was sent
            if exc.response.get("Error", {}).get("Code") == "PreconditionFailed" and resent:
                if self._holds(name, digest):
                    # An earlier attempt of this very write landed, but its answer was lost
                    # (a timeout, a reset): the object is ours, byte for byte.
                    return
                if random_name:
                    # A name drawn for this write alone is never reused: this is our own
                    # earlier attempt, stored altered. Out of the way, and again.
                    self._discard(name)
                    raise TransientStorageError(f"{self.where}: object {name} was stored altered by an "
                                                f"earlier attempt; writing it again") from None
            if exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                raise ObjectExists(f"object {name} already exists in {self.where}") from None
            raise self._translate(exc, "writing", name) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._translate(exc, "writing", name) from None
        except ValueError as exc:
            raise self._garbled(exc, "writing", name) from None
        if ephemeral:
            return  # not verified: the caller said why that is safe (agent/repo/repository.py)
        try:
            self._verify(name, data, digest, checksum)
        except TransientStorageError:
            if exclusive and random_name:
                self._discard(name)  # stored altered: out of the way so the retry can write it
            raise

    def _discard(self, name: str) -> None:
        """Delete an object we just wrote that the provider holds altered. Under object
        lock this adds a delete marker above the locked version (allowed), so the next
        conditional write succeeds; the altered version stays hidden until its date."""
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(name))
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError, ValueError):
            pass  # the retry then fails cleanly with "already exists"

    def _holds(self, name: str, digest: bytes) -> bool:
        try:
            return hashlib.sha256(self.read(name)).digest() == digest
        except StorageError:
            return False

    def _retain_until(self) -> _dt.datetime | None:
        if self.options.object_lock == "none":
            return None
        return clock.now().astimezone(_dt.timezone.utc) + _dt.timedelta(days=self.options.lock_days)

    # ---- verification of uploads ------------------------------------------------------

    def use_probe_facts(self, facts: dict[str, Any] | None) -> None:
        """Facts of an earlier probe of this endpoint and bucket (recorded by `init`)."""
        facts = facts_for(facts, self.options.endpoint, self.bucket)
        if facts is not None:
            self._facts = dict(facts)

    def record_probes_with(self, record: Callable[[dict[str, Any]], None]) -> None:
        """`record(facts)` is called after a probe made before a first upload."""
        self._on_probe = record

    def verification(self) -> Verification:
        """The verification in force now (before any probe, "auto" says read-back)."""
        return choose(self.options.verify_uploads, self._facts)

    def _verification_for_upload(self) -> Verification:
        if self.options.verify_uploads == AUTO and self._facts is None:
            with self._facts_lock:
                if self._facts is None:  # one probe, whichever upload thread comes first
                    facts = self.probe()
                    if self._on_probe is not None:
                        self._on_probe(facts)
        return self.verification()

    def _verify(self, name: str, data: bytes, digest: bytes, checksum: str) -> None:
        if self._verification_for_upload().mode == HEAD:
            head = self._call("verifying", name, self.client.head_object, Bucket=self.bucket,
                              Key=self._key(name), ChecksumMode="ENABLED")
            if head.get("ContentLength") != len(data):
                raise TransientStorageError(f"{self.where}: object {name} has {head.get('ContentLength')} bytes "
                                            f"stored, {len(data)} were uploaded")
            stored_checksum = head.get("ChecksumSHA256")
            if stored_checksum is not None:
                if stored_checksum.split("-")[0] != checksum:
                    raise TransientStorageError(f"{self.where}: object {name} is stored with another SHA-256")
                return
            # No stored checksum in the answer: nothing proves the bytes, so read them back.
        stored = self.read(name)
        if hashlib.sha256(stored).digest() != digest:
            raise TransientStorageError(f"{self.where}: object {name} reads back different from what "
                                        f"was uploaded (corrupted in transit or by the provider)")

    def delete(self, name: str, *, ephemeral: bool = False) -> None:
        if ephemeral:  # never written under a lock: removed without asking for one
            self._call("deleting", name, self.client.delete_object, Bucket=self.bucket, Key=self._key(name))
            return
        until = self.retention(name)  # raises ObjectNotFound for a missing object
        if until is not None and until > clock.now():
            raise ObjectLocked(f"object {name} is locked until {until:%Y-%m-%d}; not deleted")
        self._call("deleting", name, self.client.delete_object, Bucket=self.bucket, Key=self._key(name))

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix) if prefix else
                                           (self.prefix + "/" if self.prefix else "")):
                for item in page.get("Contents", []):
                    yield ObjectInfo(self._name(item["Key"]), int(item["Size"]))
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._translate(exc, "listing", prefix or "/") from None
        except ValueError as exc:
            raise self._garbled(exc, "listing", prefix or "/") from None

    def stat(self, name: str) -> ObjectInfo:
        head = self._call("checking", name, self.client.head_object, Bucket=self.bucket, Key=self._key(name))
        return ObjectInfo(name, int(head["ContentLength"]))

    @property
    def max_concurrency(self) -> int:
        """Requests worth running at once (a NetworkStorage, agent/storage/base.py)."""
        return self.options.max_concurrency

    # ---- object lock ------------------------------------------------------------------

    @property
    def object_lock_enabled(self) -> bool:
        return self.options.object_lock != "none"

    def retention(self, name: str) -> _dt.datetime | None:
        """The object's retain-until date, or None when it is not locked."""
        head = self._call("checking", name, self.client.head_object, Bucket=self.bucket, Key=self._key(name))
        until: _dt.datetime | None = head.get("ObjectLockRetainUntilDate")
        return until

    def extend_retention(self, name: str, until: _dt.datetime) -> None:
        """Move an object's lock date later (never earlier: compliance mode forbids it anyway)."""
        if self.options.object_lock == "none":
            raise StorageError(f"{self.where}: object lock is not enabled for this repository")
        current = self.retention(name)
        if current is not None and current >= until:
            return
        self._call("extending the lock of", name, self.client.put_object_retention, Bucket=self.bucket,
                   Key=self._key(name), Retention={"Mode": self.options.object_lock.upper(),
                                                   "RetainUntilDate": until})

    # ---- what the endpoint supports (for `init`) -----------------------------------------

    def probe(self) -> dict[str, Any]:
        """Facts about the bucket that `init` reports and checks. Writes one small object."""
        facts: dict[str, Any] = {"endpoint": self.options.endpoint or "AWS", "bucket": self.bucket}
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                raise StorageError(f"{self.where}: {_PERMANENT_HINTS['NoSuchBucket']}",
                                   hint="nothing was created") from None
            raise self._translate(exc, "opening", "the bucket") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._translate(exc, "opening", "the bucket") from None
        versioning = self._call("reading the versioning of", "the bucket",
                                self.client.get_bucket_versioning, Bucket=self.bucket)
        facts["versioning"] = versioning.get("Status", "Disabled")
        try:
            lock = self.client.get_object_lock_configuration(Bucket=self.bucket)
            facts["object_lock"] = lock.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled", "Disabled")
            rule = lock.get("ObjectLockConfiguration", {}).get("Rule", {}).get("DefaultRetention")
            facts["default_retention"] = rule
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in ("ObjectLockConfigurationNotFoundError", "NotImplemented", "InvalidRequest"):
                raise self._translate(exc, "reading the object lock of", "the bucket") from None
            facts["object_lock"] = "Disabled"
            facts["default_retention"] = None
        probe_name = "probe/" + os.urandom(8).hex()
        data = b"backupctl endpoint probe"
        wrong = base64.b64encode(hashlib.sha256(b"not the data").digest()).decode("ascii")
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(probe_name), Body=data,
                                   ChecksumAlgorithm="SHA256", ChecksumSHA256=wrong)
            facts["rejects_bad_checksum"] = False
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            # An outage (503 SlowDown, 500) says nothing about checksums: taken for a
            # refusal, it would set HEAD verification on a server that stores altered
            # uploads. Raised instead (transient: the probe is made again).
            outage = code not in _CHECKSUM_REFUSALS and (code in _TRANSIENT_CODES or status >= 500)
            if code in _PERMANENT_HINTS or outage:
                raise self._translate(exc, "writing", probe_name) from None
            # Only a refusal for the checksum proves the server compares it with the bytes.
            # Another refusal (a header it does not support, a request it finds malformed)
            # proves nothing: taken as "checks", it would let HEAD verification trust a
            # server that never looked at the bytes. Read-back verification stays.
            facts["rejects_bad_checksum"] = code in _CHECKSUM_REFUSALS
            if code not in _CHECKSUM_REFUSALS:
                facts["bad_checksum_answer"] = f"{status} {code}".strip()
        except botocore.exceptions.BotoCoreError as exc:  # the connection lost: no answer at all
            raise self._translate(exc, "writing", probe_name) from None
        good = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
        self._call("writing", probe_name, self.client.put_object, Bucket=self.bucket, Key=self._key(probe_name),
                   Body=data, ChecksumAlgorithm="SHA256", ChecksumSHA256=good)
        head = self._call("checking", probe_name, self.client.head_object, Bucket=self.bucket,
                          Key=self._key(probe_name), ChecksumMode="ENABLED")
        facts["returns_sha256_checksum"] = head.get("ChecksumSHA256") == good
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(probe_name), Body=data, IfNoneMatch="*",
                                   ChecksumAlgorithm="SHA256", ChecksumSHA256=good)
            facts["conditional_writes"] = False
        except botocore.exceptions.ClientError as exc:
            facts["conditional_writes"] = exc.response.get("Error", {}).get("Code") == "PreconditionFailed"
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(probe_name))
        except botocore.exceptions.ClientError:
            pass  # a bucket default retention may keep it; it is 24 bytes
        self._facts = dict(facts)
        return facts

    def require_object_lock(self, facts: dict[str, Any]) -> None:
        """With object_lock configured, refuse a bucket that cannot enforce it (rule S8)."""
        if self.options.object_lock == "none":
            return
        if facts.get("versioning") != "Enabled" or facts.get("object_lock") != "Enabled":
            raise StorageError(
                f"{self.where}: object_lock = \"{self.options.object_lock}\" needs a bucket created with "
                f"versioning and object lock enabled (versioning: {facts.get('versioning')}, object lock: "
                f"{facts.get('object_lock')})",
                hint="object lock can only be enabled when a bucket is created: create a new bucket with "
                     "object lock (e.g. `aws s3api create-bucket --bucket NAME "
                     "--object-lock-enabled-for-bucket`, or the provider's console) and point the url at it",
            )

    # ---- cleaning what lifecycle rules would (explicit command only) ---------------------

    def cleanup(self, *, dry_run: bool, older_than: _dt.timedelta = _dt.timedelta(days=1)) -> dict[str, Any]:
        """Delete non-current versions and delete markers whose lock has expired, and abort
        incomplete multipart uploads older than `older_than`. Never touches a locked version."""
        now = clock.now()
        report = {"deleted_versions": 0, "still_locked": 0, "aborted_uploads": 0, "dry_run": dry_run}
        base = self.prefix + "/" if self.prefix else ""
        paginator = self.client.get_paginator("list_object_versions")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base):
                stale = [v for v in page.get("Versions", []) if not v.get("IsLatest")]
                stale += page.get("DeleteMarkers", [])
                for version in stale:
                    until = None
                    if "Size" in version:  # a real version, not a delete marker
                        head = self.client.head_object(Bucket=self.bucket, Key=version["Key"],
                                                       VersionId=version["VersionId"])
                        until = head.get("ObjectLockRetainUntilDate")
                    if until is not None and until > now:
                        report["still_locked"] += 1
                        continue
                    if not dry_run:
                        self.client.delete_object(Bucket=self.bucket, Key=version["Key"],
                                                  VersionId=version["VersionId"])
                    report["deleted_versions"] += 1
            uploads = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=base).get("Uploads", [])
            for upload in uploads:
                if upload["Initiated"] < now - older_than:
                    if not dry_run:
                        self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                           UploadId=upload["UploadId"])
                    report["aborted_uploads"] += 1
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._translate(exc, "cleaning up", "old versions") from None
        return report
