"""Storage backends: where the repository's objects live.

Only this package touches the file system of the repository or a network store.
`open_storage(url)` picks the backend from the URL scheme.
"""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from agent.errors import ConfigError
from agent.storage.base import ObjectInfo, Storage

__all__ = ["ObjectInfo", "Storage", "open_storage"]


def open_storage(url: str) -> Storage:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from agent.storage.local import LocalStorage

        if parsed.netloc not in ("", "localhost"):
            raise ConfigError(f"file URL {url!r} must be file:///absolute/path")
        return LocalStorage(unquote(parsed.path))
    if parsed.scheme == "memory":
        from agent.storage.memory import MemoryStorage

        return MemoryStorage()
    raise ConfigError(f"repository url {url!r}: unsupported scheme {parsed.scheme!r} (expected file://)")
