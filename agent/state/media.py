"""Rotated removable media: a second safe place (rules S2, S6).

A repository of the configuration may be a set of removable disks used in rotation:
`media = ["DISQUE-A", "DISQUE-B", "DISQUE-C", "DISQUE-D"]` with a `file://` URL that is
where the disk of the day is mounted. Each disk carries:

    <mount>/backupctl-medium.json   its label: {"label", "medium_id", "set", "created"}
    <mount>/repository/             an independent repository (its own packs and index)

Every disk is a repository of its own, so a failing disk loses only its own weeks; all
disks of a set share one master key (the passphrase opens every one of them, and one
recovery sheet covers the set), while each has its own repository id, so nothing can be
moved from one disk to another undetected. The set's master key is kept wrapped by the
passphrase (Argon2id) in the state directory, so a new disk can be prepared while the
others are in the safe.

The disk due in a given week does not depend on history: weeks are counted from Monday
5 January 1970 and the set is taken in order, so the practitioner can write the calendar
on the disks. Which disk was used when, and when each was last verified, is kept in a
small JSON file in the state directory (`MediaState`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import socket
from dataclasses import dataclass
from typing import Any

from agent import clock, run_as
from agent.crypto.kdf import KdfParams
from agent.crypto.keys import KeyFile, MasterKey, wrap_master_key
from agent.errors import MediumError
from agent.state.files import JsonDoc, load_json, save_bytes, save_json, write_private
from agent.state.layout import StateLayout

LABEL_FILE = "backupctl-medium.json"
REPOSITORY_DIR = "repository"
EPOCH_MONDAY = _dt.date(1970, 1, 5)
LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$")


@dataclass(frozen=True)
class MediumLabel:
    label: str
    medium_id: str
    set_name: str
    created: str


def read_label(mount: str) -> MediumLabel | None:
    """The label of the disk mounted at `mount`, or None when there is none."""
    path = os.path.join(mount, LABEL_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            doc = json.load(handle)
        return MediumLabel(str(doc["label"]), str(doc["medium_id"]), str(doc["set"]), str(doc["created"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MediumError(f"the label of the medium at {mount} cannot be read ({exc})",
                          hint="this disk was not prepared by `backupctl media init`, or is damaged") from None


def write_label(mount: str, label: str, set_name: str) -> MediumLabel:
    if not os.path.isdir(mount):
        raise MediumError(f"no medium is mounted at {mount}", hint="plug in the disk and mount it there")
    existing = read_label(mount)
    if existing is not None:
        raise MediumError(f"the medium at {mount} is already labelled {existing.label}",
                          hint="a labelled disk is never relabelled; use another disk")
    if os.path.exists(os.path.join(mount, REPOSITORY_DIR)):
        raise MediumError(f"{mount} already holds a {REPOSITORY_DIR}/ folder without a label",
                          hint="use an empty disk")
    medium = MediumLabel(label, os.urandom(8).hex(), set_name, clock.now().isoformat())
    document = {"label": medium.label, "medium_id": medium.medium_id, "set": medium.set_name,
                "created": medium.created}
    try:
        # Not secret (0644), but written like the state files: never through a name
        # prepared by someone else on the disk.
        write_private(os.path.join(mount, LABEL_FILE), json.dumps(document, indent=1).encode("utf-8"), mode=0o644)
    except OSError as exc:
        raise MediumError(f"the label cannot be written on {mount} ({exc.strerror})") from None
    return medium


def check_label(settings_media: tuple[str, ...], mount: str, set_name: str, *, today: _dt.date) -> MediumLabel:
    """The mounted disk's label, refused unless it is one of the set's."""
    medium = read_label(mount)
    if medium is None:
        raise MediumError(f"no backup disk is mounted at {mount}",
                          hint=f"plug in this week's disk, {due_medium(settings_media, today)}")
    if medium.label not in settings_media or medium.set_name != set_name:
        raise MediumError(f"the disk at {mount} is {medium.label} of set {medium.set_name!r}, "
                          f"not one of {', '.join(settings_media)} of set {set_name!r}",
                          hint="plug in one of the configured disks")
    return medium


# ---- the rotation calendar (pure) ---------------------------------------------------------


def week_index(day: _dt.date) -> int:
    return (day - EPOCH_MONDAY).days // 7


def due_medium(media: tuple[str, ...], day: _dt.date) -> str:
    return media[week_index(day) % len(media)]


def next_due(media: tuple[str, ...], label: str, day: _dt.date) -> _dt.date:
    """The Monday of the next week (this one included) in which `label` is due."""
    monday = day - _dt.timedelta(days=day.weekday())
    for weeks in range(len(media)):
        candidate = monday + _dt.timedelta(weeks=weeks)
        if due_medium(media, candidate) == label:
            return candidate
    raise ValueError(f"{label} is not in the set")


# ---- the set's key and the record of use (state directory) ----------------------------------


class MediaState:
    """state_dir/media/<set>/: the set's wrapped master key and the record of each disk."""

    def __init__(self, state_dir: str, set_name: str) -> None:
        self.folder = StateLayout(state_dir).media_set(set_name)
        self.key_path = os.path.join(self.folder, "set-key.json")
        self.record_path = os.path.join(self.folder, "record.json")

    # -- key

    def master_key(self, passphrase: bytes, *, kdf_params: KdfParams, create: bool) -> MasterKey:
        if os.path.exists(self.key_path):
            try:
                with open(self.key_path, "rb") as handle:
                    stored = handle.read()
            except PermissionError:
                raise run_as.denied(self.key_path, "read") from None
            return KeyFile.parse(stored, name=self.key_path).unwrap(passphrase)
        if not create:
            raise MediumError(f"the key of this disk set is not in {self.key_path}",
                              hint="prepare the first disk with `backupctl media init` on this server")
        master = MasterKey.generate()
        document = wrap_master_key(master, passphrase, repository_id=os.urandom(16), key_id=os.urandom(16),
                                   params=kdf_params, created=clock.now().isoformat(), host=socket.gethostname())
        save_bytes(self.key_path, document)
        return master

    # -- record

    def record(self) -> JsonDoc:
        return load_json(self.record_path)  # a damaged record only loses history, never backups

    def note(self, label: str, **fields: Any) -> JsonDoc:
        doc = self.record()
        media = doc.setdefault("media", {})
        media.setdefault(label, {}).update(fields)
        if "last_backup" in fields:
            doc["previous"] = doc.get("last_used")
            doc["last_used"] = label
        save_json(self.record_path, doc)
        return doc


def rotation_warnings(media: tuple[str, ...], used: str, previous: str | None, day: _dt.date) -> list[str]:
    """What to tell the practitioner after a backup on disk `used` (pure)."""
    warnings = []
    due = due_medium(media, day)
    if used != due:
        warnings.append(f"this week's disk is {due}, but {used} was used: plug in {due} next time "
                        f"(rule S2: a different disk each week)")
    if previous == used:
        warnings.append(f"{used} was also used for the previous backup: rotate the disks")
    return warnings
