"""docs/RULES.md is the one list of rule ids: every id the code, the docs or the example
configuration cites is defined there, and the rules it marks ✓ ("`backupctl compliance`
judges it") are exactly those the compliance table (agent/engine/compliance.py) has rows for."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "RULES.md"
_ROW = re.compile(r"^\| ([A-Z]\d+)( ✓)? \|", re.M)
# "rule S7", "rules S1, S3, S4", "RULES.md S1, S3": the ids that follow such a word.
_CITED = re.compile(r"\b(?:rules?|RULES\.md)\s+((?:[A-Z]\d+(?:-[A-Z]?\d+)?)(?:\s*(?:,|and|or)\s*[A-Z]\d+(?:-[A-Z]?\d+)?)*)")
_ID = re.compile(r"[A-Z]\d+(?:-[A-Z]?\d+)?")


def _expand(text: str) -> set[str]:
    """"C1-C4" or "C1-4" -> C1, C2, C3, C4."""
    ids: set[str] = set()
    for token in _ID.findall(text):
        if "-" in token:
            first, last = token.split("-")
            letter, low = first[0], int(first[1:])
            high = int(last.lstrip(letter))
            ids.update(f"{letter}{n}" for n in range(low, high + 1))
        else:
            ids.add(token)
    return ids


def _defined() -> dict[str, bool]:
    return {rule: bool(judged) for rule, judged in _ROW.findall(RULES.read_text(encoding="utf-8"))}


def _sources() -> list[pathlib.Path]:
    files = [*(ROOT / "agent").rglob("*.py"), *(ROOT / "agent").rglob("*.html"), *(ROOT / "docs").glob("*.md"),
             ROOT / "README.md", ROOT / "config.example.toml"]
    return [f for f in files if f.is_file()]


def test_the_expansion_of_id_ranges() -> None:
    assert _expand("C1-C4") == {"C1", "C2", "C3", "C4"}
    assert _expand("S1, S3, S4") == {"S1", "S3", "S4"}


def test_every_rule_id_cited_is_defined_in_rules_md() -> None:
    defined = _defined()
    assert len(defined) >= 20  # the tables were parsed at all
    unknown = {}
    for path in _sources():
        for match in _CITED.finditer(path.read_text(encoding="utf-8", errors="replace")):
            for rule in _expand(match.group(1)) - set(defined):
                unknown.setdefault(rule, str(path.relative_to(ROOT)))
    assert unknown == {}, f"rule ids cited but not defined in docs/RULES.md: {unknown}"


def test_every_rule_marked_judged_has_a_row_in_the_compliance_table() -> None:
    source = (ROOT / "agent" / "engine" / "compliance.py").read_text(encoding="utf-8")
    rows: set[str] = set()
    for label in re.findall(r'Row\("([^"]+)"', source):
        rows |= _expand(label)
    judged = {rule for rule, mark in _defined().items() if mark}
    # C5 (fingerprints compared by restore tests) is judged inside S7's row: a restore test
    # passes only when every file's SHA-256 matched the one taken at backup.
    assert judged - {"C5"} == rows, (f"marked ✓ in docs/RULES.md but judged by no compliance row: "
                                     f"{sorted(judged - {'C5'} - rows)}; judged but not marked ✓: {sorted(rows - judged)}")
