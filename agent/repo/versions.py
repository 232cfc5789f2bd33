"""Format versions: which one this program writes, and what each stored structure says of its own.

Version 2 adds locks and prune, version 3 restore-test reports, version 4 packs that show
nothing in clear, padded blobs, headers and index files, and a key-derived gear table;
version 5 has every stored structure say its own format version, inside its authenticated
bytes (docs/FORMAT.md section 16). Older repositories are read and written as they are:
their config is never rewritten, so each keeps one layout throughout.

In versions 1 to 4 only the config named the version: a pack, a tree or an index file read
without it did not say how to read it. From version 5 on the pack trailer, the index file,
the snapshot and the tree document each carry it, and a reader refuses one whose version is
not the config's (a structure of another layout, or of a newer program).
"""

from __future__ import annotations

from agent.errors import IntegrityError

FORMAT_VERSION = 5  # what `init` writes, and the newest this program reads
PADDED_FORMAT = 4  # first version with the padded, marker-free pack layout (section 7.2)
VERSIONED_FORMAT = 5  # first version whose every stored structure says its own version
# The `version` of index files and snapshots in repositories of formats 1 to 4: the
# document's own version, which stayed 1. From format 5 on it is the format version.
DOCUMENT_VERSION_BEFORE_5 = 1


def document_version(format_version: int) -> int:
    """The version an index file or a snapshot says in a repository of `format_version`."""
    return format_version if format_version >= VERSIONED_FORMAT else DOCUMENT_VERSION_BEFORE_5


def check_version(found: object, format_version: int, *, what: str) -> None:
    """Refuse a structure whose own version (`found`, as stored) is not the one that a
    repository of `format_version` writes: another layout, or a newer program's."""
    expected = document_version(format_version)
    if type(found) is int and found == expected:
        return
    if type(found) is int and found > FORMAT_VERSION:
        raise IntegrityError(f"{what} says format version {found}, newer than this program's "
                             f"({FORMAT_VERSION}); the repository's config says {format_version}")
    said = "no format version" if found is None else f"format version {found!r}"
    if found == DOCUMENT_VERSION_BEFORE_5 and format_version >= VERSIONED_FORMAT:
        said = f"version {found} (formats 1 to 4)"
    raise IntegrityError(f"{what} says {said}, the repository's config says format version {format_version}: "
                         f"refused (a structure of another layout is never read as this one's)")
