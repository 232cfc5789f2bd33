"""What every test of the suite shares: children get Ctrl-C as from a terminal, and no test
may leave the process environment changed.

A variable set by one test (credentials of the test S3 server, a passphrase, TMPDIR) would
reach every later test and every child process it starts, and a test could pass only
because an earlier one ran first. Tests change the environment through `monkeypatch`,
which undoes it."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """A suite started as a background job of a non-interactive shell (a CI runner, `cmd &`
    in a script) inherits SIGINT ignored, and so would every command it starts: the tests
    that press Ctrl-C would then test nothing a person can do. A person's terminal delivers
    SIGINT; so the suite catches it, and its children start with it at its default (exec
    resets a caught signal, never an ignored one)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


PYTEST_OWN = {"PYTEST_CURRENT_TEST"}  # pytest sets it for each phase of each test


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in PYTEST_OWN}


@pytest.fixture(autouse=True)
def _the_environment_is_left_as_it_was_found(request: pytest.FixtureRequest) -> Iterator[None]:
    before = _environment()
    yield
    after = _environment()
    if after != before:
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        for name in after.keys() - before.keys():
            del os.environ[name]
        os.environ.update(before)  # one leak must not cascade into every later test
        pytest.fail(f"{request.node.nodeid} left the environment changed: {changed} "
                    f"(use monkeypatch.setenv / delenv)", pytrace=False)
