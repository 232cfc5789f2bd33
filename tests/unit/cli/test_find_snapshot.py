"""Which snapshot a SNAPSHOT argument names (agent/cli/common.find_snapshot): docs/REFERENCE.md,
exit 2 for "a `SNAPSHOT` that no snapshot's id starts with (or that several do)"."""

from __future__ import annotations

import pytest

from agent.cli.common import find_snapshot
from agent.errors import UsageError


class _Ids:
    """What find_snapshot asks of a repository for an id or a prefix."""

    def __init__(self, *ids: str) -> None:
        self.ids = [bytes.fromhex(i) for i in ids]
        self.loaded: list[bytes] = []

    def list_snapshot_ids(self) -> list[bytes]:
        return self.ids

    def load_snapshot(self, snapshot_id: bytes) -> bytes:
        self.loaded.append(snapshot_id)
        return snapshot_id


def test_a_prefix_several_snapshots_start_with_is_refused():
    repo = _Ids("ab01", "ab02", "cd03")
    with pytest.raises(UsageError, match="2 snapshots start with 'ab'") as raised:
        find_snapshot(repo, "ab")  # type: ignore[arg-type]
    assert raised.value.exit_code == 2 and repo.loaded == []


def test_a_prefix_one_snapshot_starts_with_names_it_whatever_its_case():
    repo = _Ids("ab01", "ab02", "cd03")
    assert find_snapshot(repo, "AB02") == bytes.fromhex("ab02")  # type: ignore[arg-type]


def test_a_prefix_no_snapshot_starts_with_is_refused():
    with pytest.raises(UsageError, match="no snapshot id starts with 'ef'"):
        find_snapshot(_Ids("ab01"), "ef")  # type: ignore[arg-type]
