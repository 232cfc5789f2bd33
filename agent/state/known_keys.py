"""Which key file opened each repository on this machine: state_dir/keys.json.

    {"<repository id hex>": "<key id hex>", ...}

`Repository.open` tries these key files first. Anyone who can add objects to the
storage can plant key files that sort before the real one, and each costs one Argon2id
derivation to try; a machine that has opened the repository before goes straight to its
own key, so planted files cost it nothing (docs/SECURITY.md section 4). A key id is
recorded only after the passphrase opened that key file and the authenticated config
confirmed the repository, so a planted file can never become the remembered one.

A lost or damaged file only makes the next opening try the key files in name order.
"""

from __future__ import annotations


from agent.errors import PermissionDenied, StateDirError
from agent.state.files import load_json, save_json
from agent.state.layout import StateLayout

_ID_HEX_SIZE = 32  # 16-byte ids


def _is_id(text: object) -> bool:
    if not isinstance(text, str) or len(text) != _ID_HEX_SIZE:
        return False
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


class KnownKeys:
    def __init__(self, state_dir: str) -> None:
        self.path = StateLayout(state_dir).known_keys()

    def _load(self) -> dict[str, str]:
        return {r: k for r, k in load_json(self.path).items() if _is_id(r) and _is_id(k)}

    def key_ids(self) -> list[bytes]:
        """The key ids to try first (one per repository this machine opened; the ids are
        random, so only the right repository's one is among its key files)."""
        return [bytes.fromhex(k) for k in self._load().values()]

    def remember(self, repository_id: bytes, key_id: bytes | None) -> None:
        """Record the key that opened `repository_id`; written only when it changes. A
        state directory that cannot be written costs only speed, never the command."""
        if key_id is None:
            return
        doc = self._load()
        if doc.get(repository_id.hex()) == key_id.hex():
            return
        doc[repository_id.hex()] = key_id.hex()
        try:
            save_json(self.path, doc)
        except (StateDirError, PermissionDenied):
            pass
