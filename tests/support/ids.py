"""Test ids that can be given back to pytest on its command line.

pytest escapes an explicit id that holds a backslash or a character outside printable ASCII
(``\\xff``), and then cannot find the test by the id it printed ("not found", exit 4). The
mutation runs select tests by their ids, so every id the suite makes is plain text.
"""

from __future__ import annotations


def plain_id(value: object, limit: int = 60) -> str:
    """At most ``limit`` characters of ``value``, each byte or character outside printable ASCII
    (and the backslash) written ``%xx``."""
    if isinstance(value, bytes):
        text = value.decode("latin-1")
    elif isinstance(value, str):
        text = value
    else:
        text = repr(value)
    return "".join(c if " " <= c <= "~" and c != "\\" else f"%{ord(c):02x}" for c in text[:limit])
