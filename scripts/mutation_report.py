#!/usr/bin/env python3
"""Per-module summary of a mutmut run (`make mutation`, docs/RELIABILITY.md).

Reads the verdicts mutmut 3 leaves next to each mutated copy (mutants/agent/**/<module>.py.meta:
{"exit_code_by_key": {mutant name: exit code or null}}), counts them per module, prints a Markdown
table, and with --json writes the same counts for a script to read.

The exit code -> verdict mapping is mutmut 3.8.1's (mutmut/stats.py), the version
requirements-mutation.lock pins: a new mutmut may change it, so the pin and this table move together.

Score = (killed + timeout) / (mutants tested), as mutmut's own badge counts it: a mutant that makes
the tests hang is detected. "not checked" (the run was cut short) is left out of the score and shown.

A whole run of the repository and engine areas takes hours on two cores (each mutant runs every unit
test that reaches its function: a mutant of `Repository.store_blob` runs most of them). `--pick N`
prints a uniform random sample of the area's mutants (seeded, drawn per module in proportion to its
size, so every module is in it), for `mutmut run` to test only those; `--only FILE` then counts only
the mutants named in FILE and gives each score with its 95 % (Wilson) interval: what the whole run
would find, within that margin.
"""

from __future__ import annotations

import argparse
import json
import math
import random
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


def exit_codes_by_module(mutants_dir: Path, prefixes: tuple[str, ...]) -> dict[str, dict[str, int | None]]:
    """{module path: {mutant name: exit code or None}} of the modules under `prefixes`."""
    found: dict[str, dict[str, int | None]] = {}
    for meta in sorted(mutants_dir.glob("agent/**/*.py.meta")):
        module = meta.relative_to(mutants_dir).as_posix().removesuffix(".meta")
        if module.startswith(prefixes):
            exit_codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
            if exit_codes:  # nothing to mutate in an __init__.py
                found[module] = exit_codes
    return found


def count(mutants_dir: Path, prefixes: tuple[str, ...], only: set[str] | None = None) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for module, exit_codes in exit_codes_by_module(mutants_dir, prefixes).items():
        row = dict.fromkeys(COLUMNS, 0)
        for name, code in exit_codes.items():
            if only is None or name in only:
                row[verdict(code)] += 1
        if any(row.values()):
            counts[module] = row
    return counts


def pick(mutants_dir: Path, prefixes: tuple[str, ...], size: int, seed: int) -> list[str]:
    """About `size` mutant names drawn at random, each module's share in proportion to its mutants."""
    by_module = exit_codes_by_module(mutants_dir, prefixes)
    total = sum(len(names) for names in by_module.values())
    rng = random.Random(seed)
    chosen: list[str] = []
    for exit_codes in by_module.values():
        share = min(len(exit_codes), max(1, math.ceil(size * len(exit_codes) / total)))
        chosen += rng.sample(sorted(exit_codes), share)
    return chosen


def wilson(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % interval of a proportion seen as successes/trials (Wilson's, sound near 100 %)."""
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)


def score(row: dict[str, int]) -> float | None:
    tested = sum(row.values()) - row["not checked"]
    return None if tested == 0 else 100.0 * (row["killed"] + row["timeout"]) / tested


def interval(row: dict[str, int]) -> str:
    tested = sum(row.values()) - row["not checked"]
    if tested == 0:
        return "—"
    low, high = wilson(row["killed"] + row["timeout"], tested)
    return f"{low:.0f}-{high:.0f} %"


def markdown(counts: dict[str, dict[str, int]], *, sampled: bool = False) -> str:
    total = dict.fromkeys(COLUMNS, 0)
    lines = ["| module | mutants | " + " | ".join(COLUMNS) + " | score |" + (" 95 % interval |" if sampled else ""),
             "|---|---:|" + "---:|" * len(COLUMNS) + "---:|" + ("---:|" if sampled else "")]
    for module, row in [*counts.items(), ("**total**", total)]:
        if module != "**total**":
            for column in COLUMNS:
                total[column] += row[column]
        s = score(row)
        lines.append(f"| {module} | {sum(row.values())} | " + " | ".join(str(row[c]) for c in COLUMNS)
                     + f" | {'—' if s is None else f'{s:.1f} %'} |" + (f" {interval(row)} |" if sampled else ""))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--area", choices=[*AREAS, "all"], default="all")
    parser.add_argument("--mutants", type=Path, default=Path("mutants"))
    parser.add_argument("--json", type=Path, help="also write {module: {verdict: count, 'score': %%}} here")
    parser.add_argument("--pick", type=int, metavar="N", help="print N mutant names drawn at random, and stop")
    parser.add_argument("--seed", type=int, default=2026, help="of --pick's draw (default 2026)")
    parser.add_argument("--only", type=Path, metavar="FILE", help="count only the mutants named in FILE")
    args = parser.parse_args()
    prefixes = tuple(p for ps in AREAS.values() for p in ps) if args.area == "all" else AREAS[args.area]
    if args.pick is not None:
        names = pick(args.mutants, prefixes, args.pick, args.seed)
        if not names:
            print(f"no mutants under {args.mutants} for {args.area}: `make mutation` generates them", file=sys.stderr)
            return 1
        print("\n".join(names))
        return 0
    only = set(args.only.read_text(encoding="utf-8").split()) if args.only else None
    counts = count(args.mutants, prefixes, only)
    if not counts:
        print(f"no mutmut results under {args.mutants} for {args.area}: run `make mutation` first", file=sys.stderr)
        return 1
    if args.json:
        args.json.write_text(json.dumps({m: {**row, "score": score(row)} for m, row in counts.items()}, indent=2)
                             + "\n", encoding="utf-8")
    print(markdown(counts, sampled=only is not None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
