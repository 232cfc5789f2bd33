"""agent.daemon.children: the daemon reads from its children's --json documents exactly the
keys CHILD_JSON declares (no more: an undeclared key would escape the contract test,
tests/integration/test_daemon_contract.py; no fewer: a declared key nobody reads is a
stale promise), and keeps no path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.daemon.children import CHILD_JSON, is_copied, summary, summary_of

_SAMPLES: dict[type, Any] = {str: "x", int: 7, float: 1.5, bool: True, type(None): None, list: ["x"]}


class _Recording(dict[str, Any]):
    """A JSON object that notes every key read from it, as "prefix.key"."""

    def __init__(self, content: dict[str, Any], prefix: str, read: set[str]) -> None:
        super().__init__(content)
        self.prefix, self.read = prefix, read

    def _note(self, key: object) -> None:
        self.read.add(f"{self.prefix}{key}")

    def get(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._note(key)
        return super().__contains__(key)


def _document(shape: dict[str, Any], prefix: str, read: set[str]) -> _Recording:
    """A document holding every declared key, with a value of its declared type."""
    content: dict[str, Any] = {}
    for key, kind in shape.items():
        if isinstance(kind, dict):
            content[key] = _document(kind, f"{prefix}{key}.", read)
        elif isinstance(kind, list):
            content[key] = [_document(kind[0], f"{prefix}{key}[].", read)]
        else:
            content[key] = _SAMPLES[kind[0] if isinstance(kind, tuple) else kind]
    return _Recording(content, prefix, read)


def _declared(shape: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for key, kind in shape.items():
        keys.add(f"{prefix}{key}")
        if isinstance(kind, dict):
            keys |= _declared(kind, f"{prefix}{key}.")
        elif isinstance(kind, list):
            keys |= _declared(kind[0], f"{prefix}{key}[].")
    return keys


@pytest.mark.parametrize("command", sorted(CHILD_JSON))
def test_the_daemon_reads_exactly_the_declared_keys(command: str) -> None:
    read: set[str] = set()
    document = _document(dict(CHILD_JSON[command]), "", read)
    document["undeclared"] = "what a command may add without the daemon knowing"
    counts = summary_of(command, document)
    assert read == _declared(dict(CHILD_JSON[command]))
    # Every plain key is kept as it is; the rest (lists, objects) was reduced.
    assert {k for k, kind in CHILD_JSON[command].items() if is_copied(kind)} <= set(counts)


def test_a_child_without_its_document_gives_an_empty_summary() -> None:
    assert summary("backup", b"") == {}
    assert summary("check", b"backupctl: error: no repository") == {}
    assert summary("prune", b"[1, 2]") == {}


def test_a_backup_summary_counts_unreadable_files_apart_from_hooks_and_dumps() -> None:
    document = {"snapshot_id": "ab", "database_failures": 1, "hook_failures": 1,
                "warnings": [{"path": "hook", "problem": "p"}, {"path": "Dupont Jean.pdf", "problem": "p"},
                             {"path": "b", "problem": "p"}, {"path": "backupctl-databases/x", "problem": "p"}]}
    counts = summary("backup", json.dumps(document).encode())
    assert counts["warnings"] == 4 and counts["unreadable"] == 2 and counts["hook_failures"] == 1
    assert "Dupont" not in json.dumps(counts)  # a path is compared or counted, never kept
