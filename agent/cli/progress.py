"""A progress bar on a terminal (rich), nothing at all otherwise."""

from __future__ import annotations

import sys

from agent.engine.progress import Progress, SilentProgress


class RichProgress:
    def __init__(self) -> None:
        from rich.progress import (BarColumn, DownloadColumn, Progress as Bar, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn, TransferSpeedColumn)

        from rich.console import Console

        self._bar = Bar(TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
                        TransferSpeedColumn(), TextColumn("{task.fields[files]} files"),
                        TimeElapsedColumn(), TimeRemainingColumn(), transient=True,
                        console=Console(stderr=True))
        self._task = None
        self._files = 0

    def start(self, phase: str, total_bytes: int | None = None) -> None:
        self._bar.start()
        self._task = self._bar.add_task(phase, total=total_bytes, files=0)

    def advance(self, *, files: int = 0, bytes_done: int = 0) -> None:
        if self._task is not None:
            self._files += files
            self._bar.update(self._task, advance=bytes_done, files=self._files)

    def finish(self) -> None:
        self._bar.stop()


def for_terminal(as_json: bool) -> Progress:
    if as_json or not sys.stderr.isatty():
        return SilentProgress()
    return RichProgress()
