"""Which paths of a snapshot a pattern names: one rule for restore's --include and
--exclude, and `find`.

A pattern without "/" is a name ("lettre-urgente Martin.odt", "lettre*.odt"): it matches a
file or folder of that name anywhere in the tree, as a practitioner who remembers only
the name expects. A pattern with "/" is a path inside the snapshot
("srv/cabinet/courriers/*/dupont*"; a leading "/" is the snapshot's top, so "/agenda.txt"
is the top-level file only). Patterns are fnmatch globs: "*" also crosses "/" in a path
pattern ("*/agenda.txt" is an agenda.txt at any depth).

Names are compared in Unicode NFC on both sides: "Élodie" typed on a keyboard (NFC) finds a
folder a Mac client stored decomposed (NFD). `ignore_case` (`find -i`) compares casefolded.
"""

from __future__ import annotations

import difflib
import fnmatch
import shlex
import unicodedata

GLOB_CHARACTERS = frozenset("*?[")
MAX_SUGGESTIONS = 3


def _canonical(text: str, ignore_case: bool) -> str:
    if not text.isascii():  # ASCII is its own NFC: most names skip the table look-ups
        text = unicodedata.normalize("NFC", text)
    return text.casefold() if ignore_case else text


def is_path_pattern(pattern: str) -> bool:
    return "/" in pattern


def has_glob(pattern: str) -> bool:
    return any(c in GLOB_CHARACTERS for c in pattern)


class Pattern:
    """One compiled pattern; `matches` for a path alone, `covers` for a path or a parent."""

    __slots__ = ("text", "whole_path", "_glob", "_ignore_case")

    def __init__(self, text: str, *, ignore_case: bool = False) -> None:
        self.text = text
        self.whole_path = is_path_pattern(text)
        self._ignore_case = ignore_case
        self._glob = _canonical(text.lstrip("/") if self.whole_path else text, ignore_case)

    def matches(self, path: str) -> bool:
        """`path` is relative to the snapshot's top ("srv/cabinet/x.odt"), without a leading "/"."""
        target = path if self.whole_path else path.rsplit("/", 1)[-1]
        return fnmatch.fnmatchcase(_canonical(target, self._ignore_case), self._glob)

    def covers(self, path: str) -> bool:
        """The pattern matches `path` or one of its parent folders: a folder named brings its
        whole content (restore's --include), or takes it away (--exclude)."""
        parts = _canonical(path, self._ignore_case).split("/")  # NFC never joins across a "/"
        if not self.whole_path:
            return any(fnmatch.fnmatchcase(part, self._glob) for part in parts)
        return any(fnmatch.fnmatchcase("/".join(parts[:i]), self._glob) for i in range(1, len(parts) + 1))


def compile_all(patterns: list[str] | tuple[str, ...], *, ignore_case: bool = False) -> list[Pattern]:
    return [Pattern(p, ignore_case=ignore_case) for p in patterns]


def closest_names(pattern: str, names: set[str], *, limit: int = MAX_SUGGESTIONS) -> list[str]:
    """The names of `names` closest to what `pattern` names (its last part), compared
    without case, at most `limit`, closest first. For suggesting what the user meant."""
    wanted = _canonical(pattern.rstrip("/").rsplit("/", 1)[-1], True)
    if not wanted:
        return []
    by_key: dict[str, str] = {}
    for name in sorted(names):  # the same suggestion every time, whatever the walk's order
        by_key.setdefault(_canonical(name, True), name)
    return [by_key[key] for key in difflib.get_close_matches(wanted, list(by_key), n=limit, cutoff=0.6)]


def quoted(text: str) -> str:
    """A name or pattern as the shell takes it back, always between quotes ('Martin.odt',
    'lettre d'"'"'Élodie.odt'): what a message shows can be copied onto the command line."""
    return shlex.quote(text) if "'" in text else f"'{text}'"
