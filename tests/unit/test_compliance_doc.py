"""docs/COMPLIANCE.md is the one list of rule ids: every id the code, the docs or the example
configuration cites is defined there, and the rules it marks ✓ ("`backupctl compliance`
judges it") are exactly those the compliance table (agent/engine/compliance.py) has rows for."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "COMPLIANCE.md"
_ROW = re.compile(r"^\| ([A-Z]\d+)( ✓)? \|", re.M)
# "rule S7", "rules S1, S3, S4", "COMPLIANCE.md S1, S3": the ids that follow such a word.
_ONE = r"[A-Z]\d+(?:-[A-Z]?\d+)?"
_CITED = re.compile(rf"\b(?:rules?|COMPLIANCE\.md)\s+({_ONE}(?:\s*(?:,|and|or)\s*{_ONE})*)")
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


JUDGEMENT_HEADING = "## How `backupctl compliance` judges each ✓ rule"


def _rules_text() -> str:
    """The tables of rules: what precedes the section on how they are judged."""
    return RULES.read_text(encoding="utf-8").split(JUDGEMENT_HEADING)[0]


def _judgement_rows() -> dict[str, str]:
    """The judgement section's table: {rule id: its whole row}, ranges expanded."""
    text = RULES.read_text(encoding="utf-8")
    assert JUDGEMENT_HEADING in text
    rows: dict[str, str] = {}
    for line in text.split(JUDGEMENT_HEADING)[1].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 3 and _ID.match(cells[0]):
            for rule in _expand(cells[0]):
                rows[rule] = line
    return rows


def _defined() -> dict[str, bool]:
    return {rule: bool(judged) for rule, judged in _ROW.findall(_rules_text())}


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
    assert unknown == {}, f"rule ids cited but not defined in docs/COMPLIANCE.md: {unknown}"


def test_every_rule_marked_judged_has_a_row_in_the_compliance_table() -> None:
    source = (ROOT / "agent" / "engine" / "compliance.py").read_text(encoding="utf-8")
    rows: set[str] = set()
    for label in re.findall(r'Row\("([^"]+)"', source):
        rows |= _expand(label)
    judged = {rule for rule, mark in _defined().items() if mark}
    # C5 (fingerprints compared by restore tests) is judged inside S7's row: a restore test
    # passes only when every file's SHA-256 matched the one taken at backup.
    assert judged - {"C5"} == rows, (f"marked ✓ in docs/COMPLIANCE.md but judged by no compliance row: "
                                     f"{sorted(judged - {'C5'} - rows)}; "
                                     f"judged but not marked ✓: {sorted(rows - judged)}")


def test_the_judgement_section_covers_exactly_the_rules_marked_judged() -> None:
    judged = {rule for rule, mark in _defined().items() if mark}
    assert set(_judgement_rows()) == judged


def test_the_thresholds_the_judgement_section_states_are_the_codes() -> None:
    """The numbers an auditor reads are the ones `assess` and `status` use."""
    from agent.state.audit import RETENTION
    from agent.state.records import MONTH_GRACE_DAYS, RESTORE_TEST_LIMIT, WEEKLY_LIMIT

    rows = _judgement_rows()
    assert f"at most {WEEKLY_LIMIT.days} days old" in rows["S1"]
    assert f"at most {RESTORE_TEST_LIMIT.days} days old" in rows["S7"] and rows["C5"] == rows["S7"]
    assert f"only after its {MONTH_GRACE_DAYS}th day" in rows["S3"]
    assert RETENTION.days in range(181, 185) and "six months" in rows["T2"]
    assert rows["S1"].rstrip(" |").endswith("FAIL") and rows["S8"].rstrip(" |").endswith("WARN")
    from agent.engine.installation_copy import FRESHNESS

    assert f"taken at most {int(FRESHNESS.total_seconds()) // 3600} h before it" in rows["S5"]


def test_the_verdicts_the_judgement_section_states_are_the_ones_assess_gives() -> None:
    """Each row's "otherwise" column (FAIL or WARN) is what `assess` returns when the rule is
    not met, on facts that meet none of them."""
    import datetime as dt

    from agent.engine.compliance import FAIL, RepositoryFacts, assess

    now = dt.datetime(2026, 12, 7, tzinfo=dt.timezone.utc)
    # one local repository, created 13 months ago, never backed up, its cipher unknown; an
    # altered audit trail; no recovery sheet
    empty = RepositoryFacts(name="r", kind="local", cipher=None, created=now - dt.timedelta(days=400))
    empty.alarm = ("a" * 32, None)  # and a ransomware alarm nobody acknowledged (R1)
    altered = {"intact": False, "records": 3, "first": None}
    verdicts: dict[str, str] = {}
    # a package installed the day before, with no snapshot avant-installation anywhere (rule S5)
    from agent.engine.installation_copy import InstallationFacts, parse_line

    installed = InstallationFacts("/var/log/dpkg.log", last_change=parse_line(
        "2026-12-06 10:00:00 install foo:amd64 <none> 1.0", to_aware=lambda t: t.replace(tzinfo=dt.timezone.utc)))
    for row in assess([empty], now=now, zone=dt.timezone.utc, yearly=0, audit=altered, recovery_sheet=None,
                      installation=installed):
        for rule in _expand(row.rule):
            verdicts[rule] = row.status
    for rule, line in _judgement_rows().items():
        if rule == "C5":
            continue
        otherwise = line.strip().strip("|").split("|")[2]
        expected = FAIL if otherwise.strip().startswith("FAIL") else "WARN"
        assert verdicts[rule] == expected, (rule, verdicts[rule], otherwise)
