"""tests/support/waits.py: a wait returns as soon as its condition holds and fails loudly,
naming what it waited for and the last value seen, when it never does."""

from __future__ import annotations

import re

import pytest

from tests.support.waits import wait_until


def test_returns_the_first_true_value_without_waiting_for_the_deadline():
    values = iter([None, [], {"last_success": "2026-12-07"}])
    assert wait_until(lambda: next(values), timeout=60, interval=0, what="a record") == {"last_success": "2026-12-07"}


def test_at_the_deadline_names_what_it_waited_for_and_the_last_value():
    with pytest.raises(AssertionError, match=re.escape("gave up waiting for the first backup after 0.05 s; "
                                                       "last observed: ")) as failure:
        wait_until(lambda: [], timeout=0.05, what="the first backup")
    assert str(failure.value).endswith("last observed: []")
