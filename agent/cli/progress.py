"""A progress bar on a terminal (rich), nothing at all otherwise.

What the bar says comes from agent.engine.progress.ProgressModel (tested without a
terminal); this module only draws it, and listens to the storage's retries.

Only one bar is live at a time; `clear_bar()` takes it off the screen. agent/cli/main.py
calls it before printing an error, so an error raised while a bar is drawn starts on a
line of its own instead of being glued to (or overwritten by) the bar.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable

from agent.engine.progress import Progress, ProgressModel, SilentProgress
from agent.storage.retry import RetryingStorage, RetryNotice

_active: "RichProgress | None" = None
_active_lock = threading.Lock()


class RichProgress:
    def __init__(self, storage: object | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress as Bar, ProgressColumn, Task, TextColumn
        from rich.text import Text

        self.model = ProgressModel()
        model = self.model

        class _Line(ProgressColumn):
            # Rendered at every refresh, not only at each event: the countdown of a retry
            # moves while the storage is silent and nothing else happens.
            def render(self, task: Task) -> Text:
                return Text(model.line())

        self._bar = Bar(TextColumn("{task.description}"), BarColumn(), _Line(), transient=True,
                        console=Console(stderr=True))
        self._task: Any = None
        self._unwatch: Callable[[], None] | None = None
        if isinstance(storage, RetryingStorage):  # the retries it makes are shown as they come
            self._unwatch = storage.watch(self._on_retry)

    def _on_retry(self, notice: RetryNotice) -> None:
        if notice.answered:
            self.model.answered()
        else:
            self.model.retrying(notice.label, retry=notice.retry, delay_s=notice.delay_s)

    def start(self, phase: str, total_bytes: int | None = None) -> None:
        global _active
        self.model.start(phase, total_bytes)
        with _active_lock:
            _active = self
        self._bar.start()
        self._task = self._bar.add_task(phase, total=total_bytes)

    def _sync_total(self) -> None:
        if self._task is not None:
            total = self.model.total()
            self._bar.update(self._task, total=None if total is None else max(1, total[1]),
                             completed=self.model.bytes_done)

    def advance(self, *, files: int = 0, bytes_done: int = 0) -> None:
        self.model.advance(files=files, bytes_done=bytes_done)
        self._sync_total()

    def expect(self, *, files: int, bytes_total: int) -> None:
        self.model.expect(files=files, bytes_total=bytes_total)
        self._sync_total()

    def discovered(self, *, files: int = 0, bytes_total: int = 0) -> None:
        self.model.discovered(files=files, bytes_total=bytes_total)

    def walk_done(self) -> None:
        self.model.walk_done()
        self._sync_total()

    def finish(self) -> None:
        global _active
        with _active_lock:
            if _active is self:
                _active = None
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        self._bar.stop()  # transient: the bar is erased, the cursor back at column 0


def clear_bar() -> None:
    """Take the live bar, if any, off the screen (before an error or a warning is printed)."""
    with _active_lock:
        bar = _active
    if bar is not None:
        bar.finish()


def for_terminal(as_json: bool, *, storage: object | None = None) -> Progress:
    """A bar on standard error when it is a terminal and the output is not JSON. With
    `storage` (a repository's), the bar also says when that storage stops answering."""
    if as_json or not sys.stderr.isatty():
        return SilentProgress()
    return RichProgress(storage)
