"""What every test of the suite shares: no test may leave the process environment changed.

A variable set by one test (credentials of the test S3 server, a passphrase, TMPDIR) would
reach every later test and every child process it starts, and a test could pass only
because an earlier one ran first. Tests change the environment through `monkeypatch`,
which undoes it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


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
