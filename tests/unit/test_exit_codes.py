"""The exit code table of docs/REFERENCE.md and the exception tree (agent/errors.py) say the same codes."""

from __future__ import annotations

import re
from pathlib import Path

from agent import errors

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "REFERENCE.md"


def _documented_codes() -> set[int]:
    text = REFERENCE.read_text(encoding="utf-8")
    table = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    return {int(code) for code in re.findall(r"^\| (\d+) \|", table, flags=re.MULTILINE)}


def test_every_exit_code_of_the_exception_tree_is_in_the_reference():
    codes = {cls.exit_code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.BackupctlError)}
    codes |= {errors.PARTIAL_BACKUP_EXIT_CODE, errors.OBLIGATIONS_AT_RISK_EXIT_CODE, errors.INTERRUPTED_EXIT_CODE}
    assert errors.PermissionDenied.exit_code == 22
    assert codes - _documented_codes() == set()
