"""The shell commands of docs/INSTALL.md, as the tests that run them read them.

Every line of a ```sh block is a command (a line ending in `\\` continues on the next; blank
lines and lines that are only a comment are not commands). A command ending in one of the
document's two markers is not run by tests/integration/test_docs_commands.py:

    # [system test]   run as written by tests/system/test_installed_service.py, which takes
                      it from here (`install_script`)
    # [by hand]       no test can run it (a journal followed, the real bucket, /opt)

The document explains both markers to its reader ("These commands cannot drift").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

INSTALL_MD = Path(__file__).resolve().parents[2] / "docs" / "INSTALL.md"
SYSTEM_TEST = "# [system test]"
BY_HAND = "# [by hand]"
DOC_VERSION = "0.1.0"  # the kit's version in the document's file names (a documented placeholder)


@dataclass(frozen=True)
class Command:
    section: str       # the heading above the block, e.g. "5.1 One file, by its name"
    line: str          # the command as written, continuation lines joined
    marker: str | None  # SYSTEM_TEST, BY_HAND or None (run by the docs test)


def commands(path: Path = INSTALL_MD) -> list[Command]:
    found: list[Command] = []
    section, in_sh, pending = "", False, ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not in_sh:
            heading = re.match(r"#{2,3} (.+)", raw)
            if heading:
                section = heading.group(1).strip()
            elif raw.strip() == "```sh":
                in_sh = True
            continue
        if raw.strip() == "```":
            if pending:
                raise ValueError(f"{path.name}: a block of {section!r} ends inside a continued line")
            in_sh = False
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1].rstrip() + " "
            continue
        line = (pending + raw.strip()).strip()
        pending = ""
        if not line or line.startswith("#"):
            continue
        marker = SYSTEM_TEST if SYSTEM_TEST in line else BY_HAND if BY_HAND in line else None
        found.append(Command(section, line, marker))
    if in_sh:
        raise ValueError(f"{path.name}: a ```sh block is never closed")
    return found


def install_script(version: str) -> str:
    """The document's install lines, for root in the system test's container: the kit's real
    version for the placeholder, and without `sudo` (root needs none; the container has none)."""
    lines = [c.line for c in commands() if c.marker == SYSTEM_TEST]
    if not any(re.search(r"\bsh install\.sh\b", line) for line in lines):
        raise ValueError(f"{INSTALL_MD.name}: no `sh install.sh` line marked {SYSTEM_TEST!r}")
    return "\n".join(re.sub(r"^sudo ", "", line).replace(DOC_VERSION, version) for line in lines) + "\n"
