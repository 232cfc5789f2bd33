"""The recovery code: the master secret written for paper, typed back by a person (rule K1).

What it carries: a version byte, the repository id (16 bytes, so that recovery can say
"this sheet is for that repository", even if every key file is gone) and either the
master secret (32 bytes) or one Shamir share of it (agent/crypto/shares.py, with the
threshold and the share's number).

How it is written: RFC 4648 base32 (A-Z and 2-7: no 0/O, 1/I or 8/B pair to confuse; a
typed 0, 1 or 8 is read as O, I or B), in lines of four groups of four characters, each
line followed by two check characters: 10 bits of a BLAKE3 hash of the line's number and
text. A typo is caught on the line where it is made (1 chance in 1,024 that one slips
through, and then the repository's authenticated config refuses the key as a whole).
The same bytes go in the QR code as one string, `BACKUPCTL1:<base32>:<4 check chars>`.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

import blake3

from agent.crypto import shares
from agent.errors import RecoveryCodeError

WHOLE, SHARE = 1, 2  # version byte: the master secret itself, or one share of it
SECRET_SIZE = 32
REPOSITORY_ID_SIZE = 16
GROUP, GROUPS_PER_LINE = 4, 4
LINE_CHARS = GROUP * GROUPS_PER_LINE
QR_PREFIX = "BACKUPCTL1:"
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CONTEXT = b"backupctl recovery code line\x00"


@dataclass(frozen=True)
class RecoveryCode:
    repository_id: bytes
    secret: bytes  # the master secret, or a share of it
    threshold: int = 1  # shares needed (1: the whole secret)
    share_number: int = 0  # 1..255 for a share

    @property
    def is_share(self) -> bool:
        return self.share_number > 0

    def payload(self) -> bytes:
        if self.is_share:
            return bytes((SHARE, self.threshold, self.share_number)) + self.repository_id + self.secret
        return bytes((WHOLE,)) + self.repository_id + self.secret


def _base32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=")


def _check(number: int, text: str, chars: int = 2) -> str:
    digest = blake3.blake3(_CONTEXT + number.to_bytes(2, "big") + text.encode("ascii")).digest()
    value = int.from_bytes(digest[:4], "big") >> (32 - 5 * chars)
    return "".join(_ALPHABET[(value >> (5 * (chars - 1 - i))) & 31] for i in range(chars))


def lines(code: RecoveryCode) -> list[tuple[str, str]]:
    """The code as printed: (groups of the line, its check characters), line by line."""
    text = _base32(code.payload())
    out = []
    for number, start in enumerate(range(0, len(text), LINE_CHARS), start=1):
        chunk = text[start:start + LINE_CHARS]
        groups = " ".join(chunk[i:i + GROUP] for i in range(0, len(chunk), GROUP))
        out.append((groups, _check(number, chunk)))
    return out


def qr_text(code: RecoveryCode) -> str:
    text = _base32(code.payload())
    return f"{QR_PREFIX}{text}:{_check(0, text, 4)}"


def parse(typed: str) -> RecoveryCode:
    """The code from what a person typed or pasted (the printed lines, with or without
    their numbers) or from the QR code's text. Raises RecoveryCodeError naming the line."""
    cleaned = typed.strip().upper()
    if QR_PREFIX in cleaned:
        body = cleaned[cleaned.index(QR_PREFIX) + len(QR_PREFIX):].split()[0]
        text, _, check = body.partition(":")
        text = _normalise(text)
        if _check(0, text, 4) != check:
            raise RecoveryCodeError("the QR code's text is damaged (its check does not match)")
        return _decode(text)
    chunks: list[str] = []
    for raw in cleaned.splitlines():
        line = re.sub(r"^\s*\d+\s*[:.)]\s*", "", raw)  # "3: ABCD ..." or "3) ..."
        line = _normalise(line)
        if not line:
            continue
        number = len(chunks) + 1
        if len(line) <= 2:
            raise RecoveryCodeError(f"line {number} is too short: type the groups and the 2 check characters")
        text, check = line[:-2], line[-2:]
        if _check(number, text) != check:
            raise RecoveryCodeError(f"line {number} does not match its check characters {check}: "
                                    f"a character of this line is mistyped (or a line is missing above it)")
        chunks.append(text)
    if not chunks:
        raise RecoveryCodeError("no recovery code was given")
    return _decode("".join(chunks))


def _normalise(text: str) -> str:
    text = re.sub(r"[\s\-_.]", "", text.upper())
    text = text.replace("0", "O").replace("1", "I").replace("8", "B")
    bad = sorted(set(c for c in text if c not in _ALPHABET))
    if bad:
        raise RecoveryCodeError(f"the code has characters that are not in it: {' '.join(bad)} "
                                f"(it uses only letters A-Z and digits 2-7)")
    return text


def _decode(text: str) -> RecoveryCode:
    try:
        data = base64.b32decode(text + "=" * (-len(text) % 8))
    except ValueError:
        raise RecoveryCodeError("the code has the wrong length: a group or a line is missing") from None
    whole_size = 1 + REPOSITORY_ID_SIZE + SECRET_SIZE
    if data[:1] == bytes((WHOLE,)) and len(data) == whole_size:
        return RecoveryCode(data[1:17], data[17:])
    if data[:1] == bytes((SHARE,)) and len(data) == whole_size + 2:
        threshold, number = data[1], data[2]
        if not (2 <= threshold <= 255 and 1 <= number <= 255):
            raise RecoveryCodeError("the share's threshold or number is invalid")
        return RecoveryCode(data[3:19], data[19:], threshold=threshold, share_number=number)
    raise RecoveryCodeError("the code has the wrong length or version: a group or a line is missing")


def parse_all(typed: str) -> list[RecoveryCode]:
    """One code, or several shares: QR texts (one per line) or blocks of typed lines
    separated by an empty line."""
    if QR_PREFIX in typed.upper():
        return [parse(line) for line in typed.splitlines() if QR_PREFIX in line.upper()]
    blocks, current = [], []
    for line in typed.splitlines() + [""]:
        if line.strip():
            current.append(line)
        elif current:
            blocks.append("\n".join(current))
            current = []
    if not blocks:
        raise RecoveryCodeError("no recovery code was given")
    return [parse(block) for block in blocks]


def master_secret(codes: list[RecoveryCode]) -> tuple[bytes, bytes]:
    """(repository id, master secret) from one whole code or enough shares of it."""
    whole = [c for c in codes if not c.is_share]
    if whole:
        return whole[0].repository_id, whole[0].secret
    if len({c.repository_id for c in codes}) > 1 or len({c.threshold for c in codes}) > 1:
        raise RecoveryCodeError("these shares come from different sheets (another repository or another split)")
    return codes[0].repository_id, shares.combine([(c.share_number, c.secret) for c in codes], codes[0].threshold)
