"""The S3 server's clock against ours (agent/clock_skew.py): pure helpers."""

from __future__ import annotations

import datetime as dt

from agent.clock_skew import CLOCK_SKEW_LIMIT, describe_skew, skew_from_date

T = dt.datetime(2026, 12, 6, 10, 0, 0, tzinfo=dt.timezone.utc)
S = dt.timedelta(seconds=1)


def test_a_date_inside_the_exchange_is_no_skew_whatever_the_latency() -> None:
    assert skew_from_date(T, T, T + 30 * S) == dt.timedelta(0)
    assert skew_from_date(T + 29 * S, T, T + 30 * S) == dt.timedelta(0)
    # The header has whole seconds: a server time truncated to just before our sending.
    assert skew_from_date(T - 0.5 * S, T, T + 0.1 * S) == dt.timedelta(0)


def test_a_date_outside_the_exchange_is_the_gap_beyond_it() -> None:
    assert skew_from_date(T + 20 * 60 * S, T, T + S) == 20 * 60 * S - S
    assert skew_from_date(T - 20 * 60 * S, T, T + S) == -(20 * 60 * S) + S


def test_described_in_plain_words_and_the_right_direction() -> None:
    assert describe_skew(dt.timedelta(minutes=20)) == "this computer's clock is 20 minutes behind the storage server's"
    assert describe_skew(dt.timedelta(minutes=-20)) == \
        "this computer's clock is 20 minutes ahead of the storage server's"
    assert describe_skew(dt.timedelta(seconds=75)) == "this computer's clock is 75 seconds behind the storage server's"


def test_the_limit_is_beyond_header_resolution_and_below_anything_retention_feels() -> None:
    assert dt.timedelta(seconds=5) < CLOCK_SKEW_LIMIT <= dt.timedelta(minutes=5)


def test_the_limit_is_the_two_minutes_the_reference_states() -> None:
    # docs/REFERENCE.md (prune, exit code 21); tested end to end at 90 s and 150 s either way
    # in tests/integration/test_s3_faults.py::test_the_clock_skew_limit_is_two_minutes_either_way.
    assert CLOCK_SKEW_LIMIT == dt.timedelta(minutes=2)
    assert describe_skew(dt.timedelta(seconds=149)) == "this computer's clock is 2 minutes behind the storage server's"
    assert describe_skew(dt.timedelta(seconds=-150)) == \
        "this computer's clock is 2 minutes ahead of the storage server's"
