"""Waiting for a condition instead of sleeping for a guessed time: a test goes on as soon
as what it checks has happened, and fails loudly, naming what it waited for and what it
saw last, when it never does (a fixed sleep either wastes time or passes by luck)."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float, what: str, interval: float = 0.01) -> T:
    """Poll `condition` until it returns a true value, which is returned; at the deadline,
    AssertionError names `what` and the last value observed."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout} s; last observed: {value!r}")
        time.sleep(interval)  # paces the poll, not a guess at how long the condition takes
