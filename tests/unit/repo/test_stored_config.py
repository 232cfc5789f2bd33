"""The config object's plaintext (docs/FORMAT.md section 6): written byte for byte as the
specification shows, read back field by field, and refused with a message that says what
is wrong when it is newer, malformed or impossible."""

from __future__ import annotations

import json

import pytest

from agent.errors import IntegrityError, UnsupportedFormat
from agent.repo.chunker import ChunkerParams
from agent.repo.repository import StoredConfig
from agent.repo.versions import FORMAT_VERSION

# docs/FORMAT.md section 6's example, as a writer of format version 1 makes it.
SPECIFIED = b"""{
 "format_version": 1,
 "repository_id": "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
 "created": "2026-01-05T01:55:00+01:00",
 "cipher": "xchacha20-poly1305",
 "compression": {
  "algorithm": "zstd",
  "level": 3
 },
 "chunker": {
  "algorithm": "fastcdc-2020-nc1",
  "min_size": 262144,
  "avg_size": 1048576,
  "max_size": 8388608
 },
 "pack_target_size": 16777216,
 "chunk_id": "blake3-keyed-256",
 "file_fingerprint": "sha256",
 "kdf": "argon2id"
}"""

REPOSITORY_ID = bytes.fromhex("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf")


def _config(**changes) -> StoredConfig:
    fields = dict(repository_id=REPOSITORY_ID, cipher="xchacha20-poly1305", compression_level=3,
                  chunker=ChunkerParams(), created="2026-01-05T01:55:00+01:00", format_version=1)
    fields.update(changes)
    return StoredConfig(**fields)  # type: ignore[arg-type]


def _doc(**changes) -> bytes:
    doc = json.loads(SPECIFIED)
    doc.update(changes)
    return json.dumps(doc).encode()


def test_the_config_is_written_as_the_specification_shows() -> None:
    assert _config().encode() == SPECIFIED


def test_a_config_without_compression_says_none() -> None:
    compression = json.loads(_config(compression_level=None).encode())["compression"]
    assert compression == {"algorithm": "none", "level": None}


def test_the_config_reads_back_field_by_field() -> None:
    written = _config(cipher="aes-256-gcm", compression_level=None, pack_target_size=4096,
                      chunker=ChunkerParams("fastcdc-2020-nc1", 1, 2, 3), format_version=FORMAT_VERSION)
    assert StoredConfig.decode(written.encode()) == written
    assert StoredConfig.decode(SPECIFIED) == _config()


def test_a_newer_format_is_refused_with_both_versions() -> None:
    with pytest.raises(UnsupportedFormat) as caught:
        StoredConfig.decode(_doc(format_version=FORMAT_VERSION + 1))
    assert str(caught.value) == (f"repository format version {FORMAT_VERSION + 1} is newer than this program's "
                                 f"({FORMAT_VERSION})")
    assert StoredConfig.decode(_doc(format_version=FORMAT_VERSION)).format_version == FORMAT_VERSION


@pytest.mark.parametrize("version, message", [
    (0, "repository config has an invalid format version 0"),
    (-1, "repository config has an invalid format version -1"),
    (1.5, "repository config has an invalid format version 1.5"),
    ("1", "repository config is malformed ('>' not supported between instances of 'str' and 'int')"),
])
def test_an_impossible_format_version_is_refused(version, message: str) -> None:
    with pytest.raises(IntegrityError) as caught:
        StoredConfig.decode(_doc(format_version=version))
    assert type(caught.value) is IntegrityError and str(caught.value) == message


def test_an_unknown_cipher_is_refused_by_name() -> None:
    with pytest.raises(UnsupportedFormat) as caught:
        StoredConfig.decode(_doc(cipher="rot13"))
    assert str(caught.value) == "repository config names an unknown cipher 'rot13'"


@pytest.mark.parametrize("size, accepted", [(1023, False), (1024, True), (1 << 30, True), ((1 << 30) + 1, False)])
def test_the_pack_target_size_is_between_1_kib_and_1_gib(size: int, accepted: bool) -> None:
    if accepted:
        assert StoredConfig.decode(_doc(pack_target_size=size)).pack_target_size == size
    else:
        with pytest.raises(IntegrityError, match="^repository config has an impossible pack_target_size$"):
            StoredConfig.decode(_doc(pack_target_size=size))


def test_a_config_missing_a_member_is_malformed_and_names_it() -> None:
    doc = json.loads(SPECIFIED)
    del doc["created"]
    with pytest.raises(IntegrityError) as caught:
        StoredConfig.decode(json.dumps(doc).encode())
    assert str(caught.value) == "repository config is malformed ('created')"
