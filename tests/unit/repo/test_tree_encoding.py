"""encode_tree writes its JSON directly: it must give exactly the bytes of the reference
encoding (json.dumps of each node's to_json, docs/FORMAT.md section 9), or the same
folder would get another tree id from one version to the next."""

from __future__ import annotations

import json
import random

from agent.repo.tree import DIR, FILE, SYMLINK, Node, decode_tree, encode_tree


def _reference(nodes: list[Node]) -> bytes:
    ordered = sorted(nodes, key=lambda n: n.name)
    return json.dumps({"nodes": [n.to_json() for n in ordered]}, separators=(",", ":")).encode("utf-8")


NAMES = [b"lettre.txt", "Dossier médical – été.pdf".encode(), b"\xff\xfe not utf-8", b'quote " back\\slash',
         b"tab\tnewline\ncontrol\x01", "\u2028 sep \U0001f600".encode(), b"a" * 200, b"-", b"\xc3"]


def _node(rng: random.Random, name: bytes) -> Node:
    kind = rng.choice([FILE, FILE, DIR, SYMLINK])
    node = Node(name=name, type=kind, mode=rng.choice([0o644, 0o4755, 0, 0o7777]), uid=rng.choice([0, 1000, 2**32 - 2]),
                gid=rng.choice([0, 50, 65534]), mtime_ns=rng.choice([0, -1_000_000_007, 1_733_000_000_123_456_789]),
                user=rng.choice(["", "médecin", 'odd"name', "root"]), group=rng.choice(["", "staff", "grp\\x"]))
    if kind == FILE:
        node.size = rng.choice([0, 1, 2**40])
        node.sha256 = "%064x" % rng.getrandbits(256)
        node.chunks = [rng.randbytes(32) for _ in range(rng.choice([0, 1, 3]))]
        node.hardlink = rng.choice([None, "", "2049:123456"])
        node.sparse = rng.choice([False, True])
    elif kind == DIR:
        node.subtree = rng.choice([None, rng.randbytes(32)])
    else:
        node.target = rng.choice([None, b"", b"../elsewhere", b"\xff bad", "cible é".encode()])
    return node


def test_encode_tree_gives_the_reference_bytes_for_every_kind_of_node():
    rng = random.Random(19)
    for _ in range(200):
        names = rng.sample(NAMES, rng.randint(0, len(NAMES)))
        nodes = [_node(rng, name) for name in names]
        encoded = encode_tree(nodes)
        assert encoded == _reference(nodes)
        assert [n.name for n in decode_tree(encoded)] == sorted(names)


def test_an_empty_tree():
    assert encode_tree([]) == _reference([]) == b'{"nodes":[]}'
