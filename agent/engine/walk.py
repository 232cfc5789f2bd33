"""Reading one folder listing of a snapshot.

Walks over a whole tree are agent.engine.expansion's (checked against a crafted DAG,
without recursion); the recursive `walk` that was here is gone with its last caller."""

from __future__ import annotations

from agent.repo.repository import Repository
from agent.repo.tree import Node, decode_tree


def load_tree(repo: Repository, tree_id: bytes) -> list[Node]:
    return decode_tree(repo.load_blob(tree_id))

