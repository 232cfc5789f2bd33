"""The alarm's documented limits, exactly at their edges (agent/engine/alarm.py, alarm_scan.py):
each sign fires at its threshold and not one below (docs/RELIABILITY.md, "Ransomware alarm");
the defaults in the code, config.example.toml and RELIABILITY.md's table are the same; and the
compressibility bounds ("compressed" at most 0.9, "incompressible" at least 0.97, judged from
4 KiB) hold at their edges."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any

from agent.engine.alarm import (COMPRESSED_RATIO, INCOMPRESSIBLE_RATIO, RATIO_MIN_SIZE, AlarmThresholds,
                                FileFacts, Tally, judge)
from agent.engine.alarm_scan import _ratio

ROOT = Path(__file__).resolve().parents[3]
QUIET = {"files_before": 1000, "changed_share": 0.0, "lost_compression": 0, "renamed": 0, "note_folders": 0}


def _signs(**counts: Any) -> tuple[str, ...]:
    return judge({**QUIET, **counts}, AlarmThresholds()).signs


def test_each_sign_fires_at_its_threshold_and_not_one_below() -> None:
    t = AlarmThresholds()
    assert _signs() == ()
    assert "changed_share" in _signs(changed_share=t.changed_share)
    assert "changed_share" not in _signs(changed_share=t.changed_share - 0.0001)
    assert "changed_share_alone" in _signs(changed_share=t.changed_share_alone,
                                           files_before=t.changed_share_alone_min_files)
    assert "changed_share_alone" not in _signs(changed_share=t.changed_share_alone - 0.0001,
                                               files_before=t.changed_share_alone_min_files)
    assert "changed_share_alone" not in _signs(changed_share=t.changed_share_alone,
                                               files_before=t.changed_share_alone_min_files - 1)
    # lost_compression: both its number and its share (10 of 1,000 files is exactly 1 %)
    assert "lost_compression" in _signs(lost_compression=t.lost_compression, files_before=1000)
    assert "lost_compression" not in _signs(lost_compression=t.lost_compression - 1, files_before=900)
    assert "lost_compression" not in _signs(lost_compression=t.lost_compression, files_before=1001)
    assert "renamed" in _signs(renamed=t.renamed)
    assert "renamed" not in _signs(renamed=t.renamed - 1)
    assert "note_folders" in _signs(note_folders=t.note_folders)
    assert "note_folders" not in _signs(note_folders=t.note_folders - 1)


DOCUMENTED = {"enabled": True, "changed_share": 0.10, "lost_compression": 10, "lost_compression_share": 0.01,
              "changed_share_alone": 0.5, "changed_share_alone_min_files": 50, "renamed": 10,
              "note_folders": 5, "lock_days": 90, "alert_folder_depth": 0}


def _example_alarm_block() -> dict[str, Any]:
    """config.example.toml's commented `# [alarm]` block, its `# key = value` lines uncommented
    (the prose stays a comment), read as TOML."""
    lines = (ROOT / "config.example.toml").read_text(encoding="utf-8").splitlines()
    start = lines.index("# [alarm]")
    block = []
    for line in lines[start + 1:]:
        if not line.startswith("#") or line.startswith("# ["):
            break
        block.append(line[2:] if re.match(r"# \w+ = ", line) else line)
    return tomllib.loads("\n".join(block))


def test_the_defaults_are_the_documented_ones_in_code_example_and_reliability() -> None:
    from agent import config

    assert dataclasses.asdict(AlarmThresholds()) == DOCUMENTED
    example = _example_alarm_block()
    assert set(example) == set(DOCUMENTED), set(DOCUMENTED) ^ set(example)  # every key shown
    raw = {"source": {"paths": ["/srv/cabinet"]}, "repositories": {"main": {"url": "file:///mnt/r"}},
           "alarm": example}
    assert config.parse(raw, "config.example.toml").alarm == AlarmThresholds()
    reliability = (ROOT / "docs" / "RELIABILITY.md").read_text(encoding="utf-8")
    row = next(line for line in reliability.splitlines() if line.startswith("| default threshold"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    t = AlarmThresholds()
    assert cells[1] == f"{t.changed_share:.2f}, alone {t.changed_share_alone:g}", row
    assert re.match(rf"{t.lost_compression} and {t.lost_compression_share * 100:g} % \(", cells[2]), row
    assert (cells[3], cells[4]) == (str(t.renamed), str(t.note_folders)), row


def _lost(was: float, now: float) -> int:
    tally = Tally(files_before=1)
    tally.folder("/c", [FileFacts(b"a.docx", "1", was)], [FileFacts(b"a.docx", "2", now)], existed=True)
    return tally.lost_compression


def test_the_compressibility_bounds_at_their_edges() -> None:
    assert (COMPRESSED_RATIO, INCOMPRESSIBLE_RATIO, RATIO_MIN_SIZE) == (0.9, 0.97, 4096)
    assert _lost(0.90, 0.97) == 1
    assert _lost(0.901, 0.97) == 0  # did not compress before
    assert _lost(0.90, 0.969) == 0  # still compresses a little
    assert _lost(0.90, None) == 0 and _lost(None, 0.97) == 0  # type: ignore[arg-type]


@dataclasses.dataclass
class _Location:
    length: int
    raw_length: int


class _Index:
    """Repository.locate for _ratio: every chunk stored at 9/10 of its plain size."""

    def locate(self, chunk_id: bytes) -> _Location:
        return _Location(length=900, raw_length=1000)


def test_a_file_below_4_kib_has_no_ratio() -> None:
    index: Any = _Index()
    assert _ratio(index, RATIO_MIN_SIZE, ["00"]) == 0.9
    assert _ratio(index, RATIO_MIN_SIZE - 1, ["00"]) is None
    assert _ratio(index, RATIO_MIN_SIZE, []) is None
