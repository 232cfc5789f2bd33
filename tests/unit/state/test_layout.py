"""agent.state.layout: every path of the state directory, once; its docstring is the map."""

from __future__ import annotations

import inspect
import os

from agent.state import layout
from agent.state.layout import StateLayout

REPO_ID = bytes(range(16))


def _every_path(state: StateLayout) -> dict[str, str]:
    """Each path the layout builds, by method name (arguments filled with sample values)."""
    paths = {}
    for name, method in inspect.getmembers(state, inspect.ismethod):
        if name.startswith("_"):
            continue
        parameters = inspect.signature(method).parameters
        arguments = {p: (REPO_ID if p == "repository_id" else "sample") for p in parameters}
        paths[name] = method(**arguments)
    return paths


def test_every_path_is_under_the_state_directory_and_distinct():
    paths = _every_path(StateLayout("/var/lib/backupctl"))
    assert len(paths) >= 20
    assert all(p.startswith("/var/lib/backupctl/") for p in paths.values())
    assert len(set(paths.values())) == len(paths)


def test_the_module_docstring_maps_every_path():
    """The tree in the docstring is what an administrator reads: it names each path built."""
    doc = layout.__doc__ or ""
    root = "/var/lib/backupctl"
    missing = []
    for name, path in _every_path(StateLayout(root)).items():
        relative = os.path.relpath(path, root).replace(REPO_ID.hex(), "<repository id>").replace(
            "sample", "<repository name>" if name == "records" else "<set>")
        if relative not in doc and relative + "/" not in doc:
            missing.append(f"{name}: {relative}")
    assert missing == []
