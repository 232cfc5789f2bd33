"""docs/REFERENCE.md's "Metrics" table says what the metrics hold: the risk codes of
backupctl_obligation_at_risk are exactly those the agent emits."""

from __future__ import annotations

import re
from pathlib import Path

from agent.daemon import metrics

ROOT = Path(__file__).resolve().parents[3]


def test_the_documented_risk_codes_are_those_emitted():
    reference = (ROOT / "docs" / "REFERENCE.md").read_text(encoding="utf-8")
    (row,) = [line for line in reference.splitlines() if line.startswith("| `backupctl_obligation_at_risk` |")]
    # "one-hot per code of `status --json`'s `at_risk_codes`: `no_backup`, ... (judged ...)"
    codes = row.split("|")[3].split(":", 1)[1].split("(", 1)[0]
    documented = set(re.findall(r"`([a-z_]+)`", codes))
    assert documented == set(metrics.RISK_CODES)

