"""scripts/mutation_report.py: the per-module scores docs/RELIABILITY.md quotes, the sample
`make mutation SAMPLE=N` draws, and the interval given with a sampled score."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "mutation_report.py"

sys.path.insert(0, str(SCRIPT.parent))
import mutation_report  # noqa: E402


def _meta(mutants: Path, module: str, codes: dict[str, int | None]) -> None:
    path = mutants / f"{module}.meta"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"exit_code_by_key": codes}))


@pytest.fixture
def mutants(tmp_path: Path) -> Path:
    folder = tmp_path / "mutants"
    # 10 mutants in a small module, 30 in a big one; mutmut 3.8.1's exit codes: 1 killed,
    # 0 survived, 33 no tests, 36 timeout, None not yet checked.
    _meta(folder, "agent/repo/small.py", {f"agent.repo.small.x_f__mutmut_{i}": 1 if i < 8 else 0 for i in range(10)})
    _meta(folder, "agent/repo/big.py",
          {f"agent.repo.big.x_g__mutmut_{i}": [1, 36, 33, None][i % 4] for i in range(30)})
    _meta(folder, "agent/repo/__init__.py", {})
    _meta(folder, "agent/crypto/other.py", {"agent.crypto.other.x_h__mutmut_1": 0})
    return folder


def test_scores_count_killed_and_timeouts_over_the_mutants_tested(mutants: Path) -> None:
    counts = mutation_report.count(mutants, mutation_report.AREAS["repo"])
    assert set(counts) == {"agent/repo/small.py", "agent/repo/big.py"}  # not crypto, not an empty __init__
    assert counts["agent/repo/small.py"] == {"killed": 8, "timeout": 0, "survived": 2, "no tests": 0,
                                             "suspicious": 0, "not checked": 0, "other": 0}
    big = counts["agent/repo/big.py"]
    assert (big["killed"], big["timeout"], big["no tests"], big["not checked"]) == (8, 8, 7, 7)
    assert mutation_report.score(counts["agent/repo/small.py"]) == 80.0
    # The 7 not checked are left out; "no tests" count as not killed: 16 of 23.
    assert mutation_report.score(big) == pytest.approx(100 * 16 / 23)


def test_the_sample_is_drawn_per_module_in_proportion_and_the_same_for_a_seed(mutants: Path) -> None:
    drawn = mutation_report.pick(mutants, mutation_report.AREAS["repo"], 20, seed=7)
    assert sum(".small." in name for name in drawn) == 5 and sum(".big." in name for name in drawn) == 15
    assert len(set(drawn)) == 20
    assert mutation_report.pick(mutants, mutation_report.AREAS["repo"], 20, seed=7) == drawn
    assert mutation_report.pick(mutants, mutation_report.AREAS["repo"], 20, seed=8) != drawn
    assert len(mutation_report.pick(mutants, mutation_report.AREAS["repo"], 1000, seed=7)) == 40  # all of them


def test_the_interval_is_wilsons() -> None:
    # Published values: 9 of 10 → 59.6 %-98.2 %; 90 of 100 → 82.6 %-94.5 %; 10 of 10 → 72.2 %-100 %.
    for (k, n), (low, high) in {(9, 10): (59.58, 98.21), (90, 100): (82.56, 94.48), (10, 10): (72.25, 100.0)}.items():
        got = mutation_report.wilson(k, n)
        assert got == (pytest.approx(low, abs=0.01), pytest.approx(high, abs=0.01)), (k, n, got)


def test_the_command_counts_only_the_sample_and_gives_its_interval(mutants: Path, tmp_path: Path) -> None:
    names = tmp_path / "sample.txt"
    names.write_text("agent.repo.small.x_f__mutmut_0\nagent.repo.small.x_f__mutmut_9\n")
    table = subprocess.run([sys.executable, str(SCRIPT), "--area", "repo", "--mutants", str(mutants),
                            "--only", str(names)], capture_output=True, text=True, check=True).stdout
    assert "| agent/repo/small.py | 2 | 1 | 0 | 1 | 0 | 0 | 0 | 0 | 50.0 % | 9-91 % |" in table, table
    assert "big.py" not in table
    drawn = subprocess.run([sys.executable, str(SCRIPT), "--area", "repo", "--mutants", str(mutants),
                            "--pick", "4", "--seed", "3"], capture_output=True, text=True, check=True).stdout
    assert drawn.split() == mutation_report.pick(mutants, mutation_report.AREAS["repo"], 4, seed=3)
