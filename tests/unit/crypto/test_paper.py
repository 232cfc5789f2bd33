"""agent.crypto.paper and agent.crypto.shares: the recovery code survives a person typing it."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.crypto import paper, shares
from agent.errors import RecoveryCodeError

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def typed(code: paper.RecoveryCode, *, numbered: bool = True) -> str:
    return "\n".join(f"{n}: {groups}  {check}" if numbered else f"{groups} {check}"
                     for n, (groups, check) in enumerate(paper.lines(code), 1))


def test_layout_is_four_groups_of_four_and_two_check_characters():
    code = paper.RecoveryCode(bytes(range(16)), bytes(range(32)))
    rows = paper.lines(code)
    assert len(rows) == 5  # 49 bytes -> 79 base32 characters
    for groups, check in rows[:-1]:
        assert [len(g) for g in groups.split(" ")] == [4, 4, 4, 4] and len(check) == 2
    assert set("".join(g for g, _c in rows).replace(" ", "")) <= set(ALPHABET)


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=32, max_size=32), st.booleans())
@settings(max_examples=50, deadline=None)
def test_round_trip_typed_and_qr(repository_id, secret, numbered):
    code = paper.RecoveryCode(repository_id, secret)
    assert paper.parse(typed(code, numbered=numbered)) == code
    assert paper.parse(typed(code).lower()) == code
    assert paper.parse(paper.qr_text(code)) == code


@given(st.binary(min_size=32, max_size=32), st.integers(0, 4), st.integers(0, 15), st.data())
@settings(max_examples=100, deadline=None)
def test_any_single_typo_is_caught_on_its_line(secret, line, column, data):
    code = paper.RecoveryCode(b"\x01" * 16, secret)
    rows = [list(g.replace(" ", "") + c) for g, c in paper.lines(code)]
    row = rows[line]
    column = min(column, len(row) - 1)
    wrong = data.draw(st.sampled_from([c for c in ALPHABET if c != row[column]]))
    row[column] = wrong
    text = "\n".join("".join(r) for r in rows)
    try:
        parsed = paper.parse(text)
    except RecoveryCodeError as exc:
        assert f"line {line + 1}" in str(exc)
    else:  # 10 check bits: about 1 typo in 1,024 slips through, and then the key is wrong
        assert parsed != code


def test_swapped_lines_missing_line_and_foreign_characters():
    code = paper.RecoveryCode(os.urandom(16), os.urandom(32))
    rows = typed(code, numbered=False).splitlines()
    with pytest.raises(RecoveryCodeError, match="line 1"):
        paper.parse("\n".join([rows[1], rows[0], *rows[2:]]))
    with pytest.raises(RecoveryCodeError, match="line 3"):
        paper.parse("\n".join(rows[:2] + rows[3:]))
    with pytest.raises(RecoveryCodeError, match="wrong length"):
        paper.parse("\n".join(rows[:-1]))
    with pytest.raises(RecoveryCodeError, match="not in it: @"):
        paper.parse(rows[0] + "@")
    with pytest.raises(RecoveryCodeError, match="no recovery code"):
        paper.parse("  \n ")
    damaged = paper.qr_text(code)
    damaged = damaged[:20] + ("A" if damaged[20] != "A" else "B") + damaged[21:]
    with pytest.raises(RecoveryCodeError, match="QR"):
        paper.parse(damaged)


def test_shares_k_of_n():
    secret = os.urandom(32)
    parts = shares.split(secret, 3, 5)
    assert [n for n, _s in parts] == [1, 2, 3, 4, 5] and all(len(s) == 32 for _n, s in parts)
    for _ in range(10):
        chosen = random.sample(parts, 3)
        assert shares.combine(chosen, 3) == secret
    with pytest.raises(RecoveryCodeError, match="3 are needed"):
        shares.combine(parts[:2], 3)
    with pytest.raises(RecoveryCodeError, match="3 are needed"):
        shares.combine([parts[0], parts[0], parts[1]], 3)  # the same share twice is one share
    with pytest.raises(ValueError):
        shares.split(secret, 1, 3)


def test_shares_travel_in_codes_and_combine_back():
    secret, repository_id = os.urandom(32), os.urandom(16)
    codes = [paper.RecoveryCode(repository_id, s, threshold=2, share_number=n) for n, s in shares.split(secret, 2, 3)]
    parsed = paper.parse_all("\n\n".join(typed(c) for c in (codes[2], codes[0])))
    assert paper.master_secret(parsed) == (repository_id, secret)
    assert paper.master_secret(paper.parse_all("\n".join(paper.qr_text(c) for c in codes[1:]))) == (
        repository_id, secret)
    other = paper.RecoveryCode(os.urandom(16), codes[1].secret, threshold=2, share_number=2)
    with pytest.raises(RecoveryCodeError, match="different sheets"):
        paper.master_secret([codes[0], other])
    whole = paper.RecoveryCode(repository_id, secret)
    assert paper.master_secret(paper.parse_all(typed(whole))) == (repository_id, secret)


def test_the_code_is_as_docs_format_describes_it():
    """Section 3.2.1, recomputed from the prose with base64 and blake3 alone."""
    import base64
    from pathlib import Path

    import blake3

    doc = (Path(__file__).resolve().parents[3] / "docs" / "FORMAT.md").read_text(encoding="utf-8")
    assert 'b"backupctl recovery code line\\x00"' in doc and "BACKUPCTL1: ||" in doc
    repository_id, secret = bytes(range(16)), bytes(range(100, 132))
    text = base64.b32encode(b"\x01" + repository_id + secret).decode().rstrip("=")

    def check(number: int, chars: str, width: int) -> str:
        line = b"backupctl recovery code line\x00" + number.to_bytes(2, "big") + chars.encode()
        digest = blake3.blake3(line).digest()
        bits = int.from_bytes(digest[:4], "big") >> (32 - 5 * width)
        return "".join(ALPHABET[(bits >> (5 * (width - 1 - i))) & 31] for i in range(width))

    expected = [(" ".join(text[i:i + 16][j:j + 4] for j in range(0, len(text[i:i + 16]), 4)),
                 check(i // 16 + 1, text[i:i + 16], 2)) for i in range(0, len(text), 16)]
    code = paper.RecoveryCode(repository_id, secret)
    assert paper.lines(code) == expected
    assert paper.qr_text(code) == f"BACKUPCTL1:{text}:{check(0, text, 4)}"
