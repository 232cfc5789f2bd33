"""k-of-n shares of the master secret (Shamir's secret sharing), for recovery sheets that
no single person can use alone: e.g. any 2 of the 3 partners of a practice.

PyCryptodome's Shamir implementation (GF(2^128), well kept) shares 16-byte secrets; the
32-byte master secret is shared as its two halves, with the same share numbers, and each
person's share is the two half-shares side by side. Fewer than k shares reveal nothing
about the secret; k shares give it back exactly.
"""

from __future__ import annotations

from Crypto.Protocol.SecretSharing import Shamir

from agent.errors import RecoveryCodeError

MAX_SHARES = 255


def split(secret: bytes, threshold: int, count: int) -> list[tuple[int, bytes]]:
    """`count` shares (number, 32 bytes) of which any `threshold` give `secret` back."""
    if len(secret) != 32:
        raise ValueError("the master secret is 32 bytes")
    if not 2 <= threshold <= count <= MAX_SHARES:
        raise ValueError(f"shares: need 2 <= k <= n <= {MAX_SHARES}, not {threshold} of {count}")
    low = Shamir.split(threshold, count, secret[:16])
    high = Shamir.split(threshold, count, secret[16:])
    # Both halves are split into `count` shares numbered alike: strict, as the filter is a guard.
    return [(number, a + b) for (number, a), (other, b) in zip(low, high, strict=True) if number == other]


def combine(shares: list[tuple[int, bytes]], threshold: int) -> bytes:
    """The secret from at least `threshold` distinct shares."""
    distinct = {number: share for number, share in shares}
    if len(distinct) < threshold:
        raise RecoveryCodeError(f"{len(distinct)} different share(s) given; this key was split so that "
                                f"{threshold} are needed")
    chosen = sorted(distinct.items())[:threshold]
    low = Shamir.combine([(number, share[:16]) for number, share in chosen])
    high = Shamir.combine([(number, share[16:]) for number, share in chosen])
    return low + high
