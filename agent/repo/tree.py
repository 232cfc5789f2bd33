"""Trees: one blob per directory, listing its entries (docs/FORMAT.md, "Trees").

A tree blob's plaintext is UTF-8 JSON: {"nodes": [node, ...]} sorted by the raw bytes
of the name; from format version 5 on {"version": 5, "nodes": [...]}, the tree saying
its own format version (agent.repo.versions). Names and symlink targets are file-system bytes: valid UTF-8 is stored
as "name"/"target"; anything else as base64 in "name_b64"/"target_b64", so a name that
is not valid UTF-8 round-trips exactly.

Because trees are content-addressed blobs like file data, an unchanged directory
costs nothing in the next snapshot: every snapshot is a full tree, only new trees and
chunks are stored.
"""

from __future__ import annotations

import base64
import json
import sys
from itertools import pairwise
from dataclasses import dataclass, field
from typing import Any
from json.encoder import encode_basestring_ascii as _quote  # json.dumps' own string escaping (C)

from agent.errors import IntegrityError
from agent.repo.versions import FORMAT_VERSION, VERSIONED_FORMAT, check_version

FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
NODE_TYPES = (FILE, DIR, SYMLINK)


@dataclass(slots=True)  # restore holds one per file of a snapshot: no per-instance dict
class Node:
    name: bytes
    type: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    user: str = ""
    group: str = ""
    size: int = 0
    sha256: str = ""
    chunks: list[bytes] = field(default_factory=list)
    subtree: bytes | None = None
    target: bytes | None = None
    hardlink: str | None = None  # "device:inode" shared by the links of one file
    sparse: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        _put_bytes(out, "name", self.name)
        out.update(type=self.type, mode=self.mode, uid=self.uid, gid=self.gid,
                   user=self.user, group=self.group, mtime_ns=self.mtime_ns)
        if self.type == FILE:
            out.update(size=self.size, sha256=self.sha256, chunks=[c.hex() for c in self.chunks])
            if self.hardlink:
                out["hardlink"] = self.hardlink
            if self.sparse:
                out["sparse"] = True
        elif self.type == DIR:
            out["subtree"] = self.subtree.hex() if self.subtree else None
        elif self.type == SYMLINK:
            _put_bytes(out, "target", self.target or b"")
        return out

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "Node":
        try:
            node_type = raw["type"]
            if node_type not in NODE_TYPES:
                raise IntegrityError(f"tree: unknown node type {node_type!r}")
            node = cls(
                name=_get_bytes(raw, "name"),
                type=node_type,
                mode=int(raw["mode"]),
                uid=int(raw["uid"]),
                gid=int(raw["gid"]),
                mtime_ns=int(raw["mtime_ns"]),
                user=sys.intern(str(raw.get("user", ""))),  # a handful of names, a million nodes
                group=sys.intern(str(raw.get("group", ""))),
            )
            if node_type == FILE:
                node.size = int(raw["size"])
                node.sha256 = str(raw["sha256"])
                node.chunks = [bytes.fromhex(c) for c in raw["chunks"]]
                node.hardlink = raw.get("hardlink")
                node.sparse = bool(raw.get("sparse", False))
            elif node_type == DIR:
                node.subtree = bytes.fromhex(raw["subtree"]) if raw.get("subtree") else None
            else:
                node.target = _get_bytes(raw, "target")
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise IntegrityError(f"tree: malformed node ({exc})") from None
        if b"/" in node.name or b"\x00" in node.name or node.name in (b"", b".", b".."):
            raise IntegrityError(f"tree: unsafe entry name {node.name!r}")
        return node


def _put_bytes(out: dict[str, Any], key: str, value: bytes) -> None:
    try:
        out[key] = value.decode("utf-8")
    except UnicodeDecodeError:
        out[key + "_b64"] = base64.b64encode(value).decode("ascii")


def _get_bytes(raw: dict[str, Any], key: str) -> bytes:
    if key in raw:
        return str(raw[key]).encode("utf-8")
    return base64.b64decode(raw[key + "_b64"], validate=True)


def encode_tree(nodes: list[Node], format_version: int | None = None) -> bytes:
    """The tree blob's plaintext: exactly `json.dumps({"nodes": [n.to_json() ...]},
    separators=(",", ":"))` (docs/FORMAT.md section 9), written directly; for a repository
    of format 5 or later (`format_version`), `{"version": 5, "nodes": [...]}`. Building a dict
    per node and walking it with the json encoder was most of a weekly backup's tree
    cost (issue 19: 0.5 s for 638 trees of 100 letters); tests/unit/repo/test_tree_encoding.py
    holds this to the reference encoding, test_format_vectors.py to the vectors."""
    ordered = sorted(nodes, key=_name_of)
    owners: dict[tuple[str, str], str] = {}
    listing = ('{"nodes":[' + ",".join([_encode_node(n, owners) for n in ordered]) + "]}").encode("ascii")
    return with_version(listing, format_version) if format_version is not None else listing


def _version_prefix(format_version: int) -> bytes:
    return b'{"version":%d,' % format_version


def with_version(data: bytes, format_version: int) -> bytes:
    """A tree document as a repository of `format_version` stores it: from format 5 on its
    first member is `"version": format_version` (the repository stamps every tree it stores,
    whoever encoded it); before, unchanged. `data` is a document of `encode_tree`."""
    if format_version < VERSIONED_FORMAT:
        return data
    prefix = _version_prefix(format_version)
    if data.startswith(prefix):
        return data
    if not (data.startswith(b'{"nodes":[') and data.endswith(b"]}")):  # "nodes" its only member
        raise ValueError("not a tree document of encode_tree without a version")
    return prefix + data[1:]


def check_tree_version(data: bytes | memoryview, format_version: int, *, what: str) -> None:
    """Refuse a tree whose own `version` is not its repository's (format 5 on). Versions 1
    to 4 have no such member and are read as they always were. The document every writer
    of this program makes starts with the member, which is checked without parsing the
    rest (a large folder's listing is parsed once, by decode_tree); any other valid JSON
    is parsed here."""
    if format_version < VERSIONED_FORMAT:
        return
    if bytes(data[:16]).startswith(_version_prefix(format_version)):
        return
    check_version(_version_member(bytes(data), what=what), format_version, what=what)


def _version_member(data: bytes, *, what: str) -> object:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise IntegrityError(f"{what}: not a valid tree document ({exc})") from None
    return doc.get("version") if isinstance(doc, dict) else None


def _name_of(node: Node) -> bytes:
    return node.name


def _encode_bytes(key: str, value: bytes) -> str:
    """`_put_bytes` as JSON text: '"key":"utf-8 text"', else '"key_b64":"base64"'."""
    try:
        return f'"{key}":{_quote(value.decode("utf-8"))}'
    except UnicodeDecodeError:
        return f'"{key}_b64":"{base64.b64encode(value).decode("ascii")}"'


def _encode_node(node: Node, owners: dict[tuple[str, str], str]) -> str:
    """`json.dumps(node.to_json(), separators=(",", ":"))`, same keys in the same order.
    Integers are written as json writes an int (its repr): Node's integer fields are
    ints (from lstat, or int() when decoded). `owners` caches the encoded owner names."""
    try:
        name = f'{{"name":{_quote(node.name.decode("utf-8"))}'
    except UnicodeDecodeError:
        name = f'{{"name_b64":"{base64.b64encode(node.name).decode("ascii")}"'
    owner = owners.get((node.user, node.group))
    if owner is None:
        owner = owners[(node.user, node.group)] = f'"user":{_quote(node.user)},"group":{_quote(node.group)}'
    kind = node.type
    if kind == FILE:
        chunks = node.chunks
        if len(chunks) == 1:
            listed = f'"{chunks[0].hex()}"'
        else:
            listed = '"' + '","'.join([c.hex() for c in chunks]) + '"' if chunks else ""
        text = (f'{name},"type":"file","mode":{node.mode:d},"uid":{node.uid:d},"gid":{node.gid:d},{owner},'
                f'"mtime_ns":{node.mtime_ns:d},"size":{node.size:d},"sha256":{_quote(node.sha256)},"chunks":[{listed}]')
        if node.hardlink:
            text += f',"hardlink":{_quote(node.hardlink)}'
        if node.sparse:
            text += ',"sparse":true'
        return text + "}"
    text = (f'{name},"type":{_quote(kind)},"mode":{node.mode:d},"uid":{node.uid:d},"gid":{node.gid:d},{owner},'
            f'"mtime_ns":{node.mtime_ns:d}')
    if kind == DIR:
        text += f',"subtree":"{node.subtree.hex()}"' if node.subtree else ',"subtree":null'
    elif kind == SYMLINK:
        text += "," + _encode_bytes("target", node.target or b"")
    return text + "}"


def decode_tree(data: bytes, format_version: int | None = None) -> list[Node]:
    """The nodes of a tree document. With `format_version` (the repository's), a tree of
    format 5 or later must say that version; without, a version newer than this program
    knows is still refused (the repository checks the version when it opens the blob:
    Repository.decode_blob)."""
    try:
        doc = json.loads(data)
        nodes = doc["nodes"]
        if not isinstance(nodes, list):
            raise TypeError("nodes is not a list")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as exc:
        raise IntegrityError(f"tree: not a valid tree document ({exc})") from None
    found = doc.get("version")
    if format_version is not None and format_version >= VERSIONED_FORMAT:
        check_version(found, format_version, what="tree")
    elif found is not None and format_version is not None:  # versions 1 to 4 have none
        raise IntegrityError(f"tree says format version {found!r}, the repository's config says format version "
                             f"{format_version}, whose trees say none: refused")
    elif type(found) is int and found > FORMAT_VERSION:
        check_version(found, FORMAT_VERSION, what="tree")
    decoded = [Node.from_json(n) for n in nodes]
    names = [n.name for n in decoded]
    if any(a >= b for a, b in pairwise(names)):
        raise IntegrityError("tree: entry names are duplicated or not sorted")
    return decoded
