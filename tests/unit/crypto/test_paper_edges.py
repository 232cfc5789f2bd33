"""Recovery codes typed with the digits people confuse with letters, and shares at the last
number. Written for the mutants mutation testing found alive (docs/RELIABILITY.md)."""

from __future__ import annotations

import pytest

from agent.crypto import paper, shares
from agent.errors import RecoveryCodeError


def _typed(code: paper.RecoveryCode) -> str:
    return "\n".join(f"{groups} {check}" for groups, check in paper.lines(code))


def _code_showing(letters: str) -> paper.RecoveryCode:
    # Deterministic search for a code whose printed text holds each of `letters`.
    for seed in range(10_000):
        code = paper.RecoveryCode(bytes(16), seed.to_bytes(32, "big"))
        if all(letter in _typed(code) for letter in letters):
            return code
    raise AssertionError(f"no code shows {letters}")


@pytest.mark.parametrize("digit, letter", [("0", "O"), ("1", "I"), ("8", "B")])
def test_a_digit_typed_for_the_letter_it_looks_like_reads_as_that_letter(digit, letter):
    code = _code_showing(letter)
    assert paper.parse(_typed(code).replace(letter, digit)) == code


def test_the_digits_people_confuse_are_read_as_letters_all_at_once():
    code = _code_showing("OIB")
    typed = _typed(code).replace("O", "0").replace("I", "1").replace("B", "8")
    assert paper.parse(typed) == code


@pytest.mark.parametrize("threshold, number", [(255, 1), (2, 255), (255, 255)])
def test_a_share_at_the_largest_threshold_or_number_is_read(threshold, number):
    code = paper.RecoveryCode(bytes(range(16)), bytes(range(32)), threshold=threshold, share_number=number)
    assert paper.parse(_typed(code)) == code


def test_a_missing_line_is_named():
    code = paper.RecoveryCode(bytes(range(16)), bytes(range(32)))
    typed_lines = _typed(code).splitlines()
    with pytest.raises(RecoveryCodeError) as raised:
        paper.parse("\n".join(typed_lines[:-1]))
    assert "a group or a line is missing" in str(raised.value)


@pytest.mark.parametrize("threshold, number", [(1, 1), (0, 3), (2, 0)])
def test_a_share_with_an_impossible_threshold_or_number_is_refused(threshold, number):
    code = paper.RecoveryCode(bytes(range(16)), bytes(range(32)), threshold=threshold, share_number=number)
    if number == 0:  # a share number of 0 prints as a whole code: write the share's bytes by hand
        payload = bytes((paper.SHARE, threshold, number)) + code.repository_id + code.secret
        text = paper._base32(payload)
        typed = "\n".join(f"{text[i:i + paper.LINE_CHARS]} {paper._check(n, text[i:i + paper.LINE_CHARS])}"
                          for n, i in enumerate(range(0, len(text), paper.LINE_CHARS), 1))
    else:
        typed = _typed(code)
    with pytest.raises(RecoveryCodeError) as raised:
        paper.parse(typed)
    assert str(raised.value) == "the share's threshold or number is invalid"


def test_blank_lines_and_bare_line_numbers_between_the_lines_are_skipped():
    code = paper.RecoveryCode(bytes(range(16)), bytes(range(32)))
    typed = "\n\n".join(f"{n}: {groups} {check}\n{n + 10}:" for n, (groups, check) in enumerate(paper.lines(code), 1))
    assert paper.parse(typed) == code


@pytest.mark.parametrize("typed, message", [
    ("", "no recovery code was given"),
    ("  \n 1: \n", "no recovery code was given"),
    ("AB", "line 1 is too short: type the groups and the 2 check characters"),
    ("A", "line 1 is too short: type the groups and the 2 check characters"),
])
def test_nothing_or_a_line_without_its_check_is_refused_saying_so(typed, message):
    with pytest.raises(RecoveryCodeError) as raised:
        paper.parse(typed)
    assert str(raised.value) == message


def test_a_damaged_qr_text_is_refused_saying_so():
    text = paper.qr_text(paper.RecoveryCode(bytes(range(16)), bytes(range(32))))
    body, check = text.rsplit(":", 1)
    damaged = body[:-1] + ("A" if body[-1] != "A" else "B") + ":" + check
    with pytest.raises(RecoveryCodeError) as raised:
        paper.parse(damaged)
    assert str(raised.value) == "the QR code's text is damaged (its check does not match)"


def test_a_whole_code_among_shares_of_another_sheet_is_the_one_used():
    whole = paper.RecoveryCode(bytes(range(16)), bytes(range(32)))
    stray = paper.RecoveryCode(bytes(16), bytes(32), threshold=2, share_number=1)
    assert paper.master_secret([stray, whole]) == (whole.repository_id, whole.secret)


def test_shares_of_two_splits_of_one_repository_are_refused_by_name():
    # Same repository, one share of a 2-of-3 split and one of a 3-of-5 split: not one sheet.
    first = paper.RecoveryCode(bytes(range(16)), bytes(32), threshold=2, share_number=1)
    second = paper.RecoveryCode(bytes(range(16)), bytes(32), threshold=3, share_number=2)
    with pytest.raises(RecoveryCodeError) as raised:
        paper.master_secret([first, second])
    assert str(raised.value) == "these shares come from different sheets (another repository or another split)"


def _lines_with_their_checks(text: str) -> str:
    # Lines that each pass their check however long the whole is: what a person sees when a
    # check lets a dropped group through (1 chance in 1,024) or when the sheet was cut short.
    return "\n".join(f"{text[i:i + paper.LINE_CHARS]} {paper._check(n, text[i:i + paper.LINE_CHARS])}"
                     for n, i in enumerate(range(0, len(text), paper.LINE_CHARS), 1))


WRONG_LENGTH = "the code has the wrong length: a group or a line is missing"
WRONG_LENGTH_OR_VERSION = "the code has the wrong length or version: a group or a line is missing"


@pytest.mark.parametrize("cut", [1, 4, 6])  # 78, 75 and 73 characters: no whole number of bytes
def test_a_code_whose_lines_pass_but_whose_length_is_no_base32_length_is_refused_as_too_short(cut):
    text = paper._base32(paper.RecoveryCode(bytes(range(16)), bytes(range(32))).payload())
    with pytest.raises(RecoveryCodeError) as raised:
        paper.parse(_lines_with_their_checks(text[:-cut]))
    assert str(raised.value) == WRONG_LENGTH


def test_a_line_of_one_character_and_its_check_is_a_line_not_a_short_one():
    # Three characters are one character of the code and its two checks: read, then refused as
    # the whole being too short, not as "type the 2 check characters" (they were typed).
    with pytest.raises(RecoveryCodeError) as raised:
        paper.parse(_lines_with_their_checks("A"))
    assert str(raised.value) == WRONG_LENGTH


def test_a_missing_last_line_is_refused_with_the_whole_message():
    code = paper.RecoveryCode(bytes(range(16)), bytes(range(32)))
    with pytest.raises(RecoveryCodeError) as raised:
        paper.parse("\n".join(_typed(code).splitlines()[:-1]))
    assert str(raised.value) == WRONG_LENGTH_OR_VERSION


@pytest.mark.parametrize("version, size", [
    (paper.SHARE, 1 + 16 + 32),  # a share's version byte on a whole code's length
    (paper.WHOLE, 3 + 16 + 32),  # a whole code's version byte on a share's length
    (3, 3 + 16 + 32),  # a later version of the format, of a share's length
    (3, 1 + 16 + 32),
])
def test_a_version_byte_that_does_not_go_with_the_length_is_refused(version, size):
    # A share is only read from a share's length: read from 49 bytes it would give a 30-byte secret.
    payload = bytes((version, 2, 1)) + bytes(range(size - 3))
    with pytest.raises(RecoveryCodeError) as raised:
        paper.parse(_lines_with_their_checks(paper._base32(payload)))
    assert str(raised.value) == WRONG_LENGTH_OR_VERSION


def test_every_foreign_character_is_named_once_in_order():
    code = paper.RecoveryCode(bytes(range(16)), bytes(range(32)))
    first_line = _typed(code).splitlines()[0]
    with pytest.raises(RecoveryCodeError) as raised:
        paper.parse(first_line + " @9!9")
    assert str(raised.value) == ("the code has characters that are not in it: ! 9 @ "
                                 "(it uses only letters A-Z and digits 2-7)")


@pytest.mark.parametrize("typed", ["", "\n  \n\t\n"], ids=["empty", "blank-lines"])
def test_nothing_given_for_several_codes_is_refused_saying_so(typed):
    with pytest.raises(RecoveryCodeError) as raised:
        paper.parse_all(typed)
    assert str(raised.value) == "no recovery code was given"


@pytest.mark.parametrize("typed", [[0], [1, 1]], ids=["one-share", "one-share-typed-twice"])
def test_a_single_share_is_refused_saying_how_many_are_needed(typed):
    # One sheet of a 2-of-3 split, alone or typed twice: the person is told to bring another, the
    # recovery does not crash.
    split = shares.split(bytes(range(32)), 2, 3)
    codes = [paper.RecoveryCode(bytes(range(16)), split[i][1], threshold=2, share_number=split[i][0]) for i in typed]
    with pytest.raises(RecoveryCodeError) as raised:
        paper.master_secret(codes)
    assert str(raised.value) == "1 different share(s) given; this key was split so that 2 are needed"


def test_enough_shares_give_the_repository_and_the_secret_back():
    secret, repository_id = bytes(range(32)), bytes(range(100, 116))
    codes = [paper.RecoveryCode(repository_id, share, threshold=3, share_number=number)
             for number, share in shares.split(secret, 3, 5)[1:4]]
    assert paper.master_secret(codes) == (repository_id, secret)
