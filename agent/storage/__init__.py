"""Storage backends: where the repository's objects live.

Only this package touches the file system of the repository or a network store.
`open_storage(url, s3=...)` picks the backend from the URL scheme and wraps network
backends in bounded concurrency, a bandwidth cap and retries (wrappers, not flags
inside each backend).
"""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from agent.errors import ConfigError
from agent.storage.base import ObjectInfo, Storage
from agent.storage.options import S3Options

__all__ = ["ObjectInfo", "Storage", "open_storage"]


def open_storage(url: str, *, s3: S3Options | None = None) -> Storage:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from agent.storage.local import LocalStorage

        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"file URL {url!r} must be file:///absolute/path")
        return LocalStorage(unquote(parsed.path))
    if parsed.scheme == "s3":
        from agent.storage.retry import RetryingStorage
        from agent.storage.s3 import S3Storage
        from agent.storage.throttle import ThrottledStorage

        options = s3 or S3Options(bucket=parsed.netloc, prefix=parsed.path.strip("/"))
        backend = ThrottledStorage(S3Storage(options), max_concurrency=options.max_concurrency,
                                   bandwidth_limit_kib=options.bandwidth_limit_kib)
        return RetryingStorage(backend, attempts=options.retry_attempts, label="S3 server")
    if parsed.scheme == "memory":
        from agent.storage.memory import MemoryStorage

        return MemoryStorage()
    raise ConfigError(f"repository url {url!r}: unsupported scheme {parsed.scheme!r} "
                      f"(expected file:// or s3://)")
