"""Walking a snapshot's tree, shared by restore and check."""

from __future__ import annotations

from typing import Callable, Iterator

from agent.errors import IntegrityError, StorageError
from agent.repo.repository import Repository
from agent.repo.tree import DIR, Node, decode_tree


def load_tree(repo: Repository, tree_id: bytes) -> list[Node]:
    return decode_tree(repo.load_blob(tree_id))


def walk(
    repo: Repository,
    tree_id: bytes,
    *,
    prefix: bytes = b"",
    on_error: Callable[[bytes, Exception], None] | None = None,
) -> Iterator[tuple[bytes, Node]]:
    """Yield (path, node) depth-first, parents before children; path has no leading '/'.

    A tree that cannot be read is reported through `on_error` (with the directory's
    path) and skipped, so one damaged directory does not hide the rest.
    """
    try:
        nodes = load_tree(repo, tree_id)
    except (IntegrityError, StorageError) as exc:
        if on_error is None:
            raise
        on_error(prefix, exc)
        return
    for node in nodes:
        path = prefix + b"/" + node.name if prefix else node.name
        yield path, node
        if node.type == DIR and node.subtree is not None:
            yield from walk(repo, node.subtree, prefix=path, on_error=on_error)
