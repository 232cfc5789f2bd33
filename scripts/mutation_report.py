#!/usr/bin/env python3
"""Per-module summary of a mutmut run (`make mutation`, docs/RELIABILITY.md).

Reads the verdicts mutmut 3 leaves next to each mutated copy (mutants/agent/**/<module>.py.meta:
{"exit_code_by_key": {mutant name: exit code or null}}), counts them per module, prints a Markdown
table, and with --json writes the same counts for a script to read.

The exit code -> verdict mapping is mutmut 3.8.1's (mutmut/stats.py), the version
requirements-mutation.lock pins: a new mutmut may change it, so the pin and this table move together.

Score = (killed + timeout) / (mutants tested), as mutmut's own badge counts it: a mutant that makes
the tests hang is detected. "not checked" (the run was cut short) is left out of the score and shown.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

AREAS = {
    "crypto": ("agent/crypto/",),
    "repo": ("agent/repo/",),
    "engines": ("agent/engine/retention.py", "agent/engine/prune.py", "agent/engine/restore.py",
                "agent/engine/check.py"),
}

VERDICT_BY_EXIT_CODE: dict[int | None, str] = {
    1: "killed", 3: "killed",
    0: "survived",
    5: "no tests", 33: "no tests",
    2: "interrupted",
    None: "not checked",
    34: "skipped",
    35: "suspicious",
    36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout",
    37: "type check",
    -11: "segfault", -9: "segfault",
}
COLUMNS = ["killed", "timeout", "survived", "no tests", "suspicious", "not checked", "other"]


def verdict(exit_code: int | None) -> str:
    found = VERDICT_BY_EXIT_CODE.get(exit_code, "suspicious")
    return found if found in COLUMNS else "other"


def count(mutants_dir: Path, prefixes: tuple[str, ...]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for meta in sorted(mutants_dir.glob("agent/**/*.py.meta")):
        module = meta.relative_to(mutants_dir).as_posix().removesuffix(".meta")
        if not module.startswith(prefixes):
            continue
        exit_codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        if not exit_codes:
            continue  # nothing to mutate (an __init__.py)
        row = dict.fromkeys(COLUMNS, 0)
        for code in exit_codes.values():
            row[verdict(code)] += 1
        counts[module] = row
    return counts


def score(row: dict[str, int]) -> float | None:
    tested = sum(row.values()) - row["not checked"]
    return None if tested == 0 else 100.0 * (row["killed"] + row["timeout"]) / tested


def markdown(counts: dict[str, dict[str, int]]) -> str:
    total = dict.fromkeys(COLUMNS, 0)
    lines = ["| module | mutants | " + " | ".join(COLUMNS) + " | score |",
             "|---|---:|" + "---:|" * len(COLUMNS) + "---:|"]
    for module, row in [*counts.items(), ("**total**", total)]:
        if module != "**total**":
            for column in COLUMNS:
                total[column] += row[column]
        s = score(row)
        lines.append(f"| {module} | {sum(row.values())} | " + " | ".join(str(row[c]) for c in COLUMNS)
                     + f" | {'—' if s is None else f'{s:.1f} %'} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--area", choices=[*AREAS, "all"], default="all")
    parser.add_argument("--mutants", type=Path, default=Path("mutants"))
    parser.add_argument("--json", type=Path, help="also write {module: {verdict: count, 'score': %%}} here")
    args = parser.parse_args()
    prefixes = tuple(p for ps in AREAS.values() for p in ps) if args.area == "all" else AREAS[args.area]
    counts = count(args.mutants, prefixes)
    if not counts:
        print(f"no mutmut results under {args.mutants} for {args.area}: run `make mutation` first", file=sys.stderr)
        return 1
    if args.json:
        args.json.write_text(json.dumps({m: {**row, "score": score(row)} for m, row in counts.items()}, indent=2)
                             + "\n", encoding="utf-8")
    print(markdown(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
