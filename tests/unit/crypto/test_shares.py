"""k-of-n shares of the master secret (agent/crypto/shares.py): the bounds of k and n, and the
messages a caller shows. Written for the mutants mutation testing found alive (docs/RELIABILITY.md)."""

from __future__ import annotations

import itertools

import pytest

from agent.crypto import shares

SECRET = bytes(range(32))


def test_k_equal_to_n_is_allowed_and_needs_every_share():
    two_of_two = shares.split(SECRET, 2, 2)
    assert [number for number, _ in two_of_two] == [1, 2]
    assert shares.combine(two_of_two, 2) == SECRET


def test_the_largest_number_of_shares_is_allowed_and_any_k_of_them_give_the_secret():
    many = shares.split(SECRET, 3, shares.MAX_SHARES)
    assert len(many) == shares.MAX_SHARES == 255
    assert all(len(share) == 32 for _, share in many)
    for chosen in (many[:3], many[-3:], [many[0], many[127], many[254]]):
        assert shares.combine(list(chosen), 3) == SECRET


def test_every_pair_of_two_of_three_gives_the_secret():
    three = shares.split(SECRET, 2, 3)
    for pair in itertools.combinations(three, 2):
        assert shares.combine(list(pair), 2) == SECRET


@pytest.mark.parametrize("threshold, count", [(1, 3), (4, 3), (2, 256), (0, 0)])
def test_impossible_k_of_n_is_refused_saying_the_bounds(threshold, count):
    with pytest.raises(ValueError) as raised:
        shares.split(SECRET, threshold, count)
    assert str(raised.value) == f"shares: need 2 <= k <= n <= 255, not {threshold} of {count}"


@pytest.mark.parametrize("secret", [b"", SECRET[:31], SECRET + b"\0"])
def test_a_secret_of_another_size_is_refused_saying_so(secret):
    with pytest.raises(ValueError) as raised:
        shares.split(secret, 2, 3)
    assert str(raised.value) == "the master secret is 32 bytes"
