"""What engines report while they work; the CLI draws it, tests ignore it."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, phase: str, total_bytes: int | None = None) -> None: ...

    def advance(self, *, files: int = 0, bytes_done: int = 0) -> None: ...

    def finish(self) -> None: ...


class SilentProgress:
    def start(self, phase: str, total_bytes: int | None = None) -> None:
        pass

    def advance(self, *, files: int = 0, bytes_done: int = 0) -> None:
        pass

    def finish(self) -> None:
        pass
