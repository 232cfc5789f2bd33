"""The ransomware alarm's judgement (issue 22): counts in, verdict out. Pure.

A backup compares its new tree with its parent snapshot's (agent/engine/alarm_scan.py
walks both, skipping every folder whose listing is unchanged) and feeds each changed
folder's two listings to a Tally. The Tally keeps counts and a few folder names, never a
file name and never a per-file list, so its memory does not grow with the tree:

* changed: files of the parent whose content changed at the same path, or that were
  removed (replaced, renamed away, deleted);
* lost_compression: files that used to compress (stored size at most COMPRESSED_RATIO of
  their plain size) and no longer do (at least INCOMPRESSIBLE_RATIO) at the same path, or
  under their old name plus an extension (x.docx -> x.docx.locked): encrypted data does
  not compress. Files below RATIO_MIN_SIZE are not judged (padding dominates their size);
* renamed: a removed file whose name reappears in the same folder with an extension that
  folder did not have (x.docx -> x.docx.locked, x.docx -> x.crypt);
* note_folders: the most folders of the parent in which one same new file name, or one
  same new content, appeared (a ransom note dropped in every folder); each name and each
  content counts once per folder.

`judge` compares the counts with the thresholds ([alarm] in the configuration). Losing
compression is the strongest sign and suspect on its own, once it reaches both a number of
files and a share of the parent's files (ten files of a large practice may be a few
legitimately re-saved archives). A changed share past a second, higher threshold is suspect
on its own too (on a parent of enough files): an attack that encrypts files that never
compressed (docx, pdf, jpg) in place, keeping their names, shows no other sign. Each other
sign needs a second one (a reorganisation renames and changes many files, but does not drop
a note in every folder; a note alone may be a practice's new README). Defaults are measured
on the bench's weekly mutations, an import and attacks (docs/RELIABILITY.md, "Ransomware alarm").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

COMPRESSED_RATIO = 0.9  # stored / plain at most this: the file compressed
INCOMPRESSIBLE_RATIO = 0.97  # at least this: stored as it is (zstd gave up), i.e. random-looking
RATIO_MIN_SIZE = 4096  # below, padding and the envelope make the ratio meaningless
MAX_FOLDERS_SHOWN = 5  # folder names kept in the verdict (and the alert)
MAX_KEYS = 100_000  # distinct new names and contents followed for notes: memory stays bounded

SUSPECT_TAG = "suspect"


@dataclass(frozen=True)
class AlarmThresholds:
    """[alarm]: each sign fires at or above its threshold."""

    enabled: bool = True
    changed_share: float = 0.10  # changed or removed files / files of the parent
    lost_compression: int = 10  # files that no longer compress
    lost_compression_share: float = 0.01  # ... and at least this share of the parent's files
    changed_share_alone: float = 0.5  # changed share suspect on its own from this on...
    changed_share_alone_min_files: int = 50  # ... when the parent has at least this many files
    renamed: int = 10  # files renamed to a new extension
    note_folders: int = 5  # folders that received the same new file
    lock_days: int = 90  # object lock of the last good snapshot extended by this, while open
    alert_folder_depth: int = 0  # levels below a source folder the alert names (0: the source only)

    def __post_init__(self) -> None:
        if self.alert_folder_depth not in (0, 1, 2) or isinstance(self.alert_folder_depth, bool):
            raise ValueError(f"alarm alert_folder_depth must be 0, 1 or 2, not {self.alert_folder_depth!r}")
        for name in ("changed_share", "changed_share_alone"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ValueError(f"alarm {name} must be in ]0, 1], not {value!r}")
        if isinstance(self.lost_compression_share, bool) or not isinstance(self.lost_compression_share, (int, float)) \
                or not 0 <= self.lost_compression_share <= 1:
            raise ValueError(f"alarm lost_compression_share must be in [0, 1], not {self.lost_compression_share!r}")
        for name in ("lost_compression", "renamed", "note_folders", "lock_days", "changed_share_alone_min_files"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"alarm {name} must be a whole number >= 1, not {value!r}")


@dataclass(frozen=True, slots=True)
class FileFacts:
    """One file of a listing, as the tally needs it."""

    name: bytes
    sha256: str
    ratio: float | None  # stored / plain size of its chunks; None when unknown or too small


@dataclass
class Tally:
    files_before: int = 0  # files of the parent (from its summary)
    changed: int = 0
    removed: int = 0
    lost_compression: int = 0
    renamed: int = 0
    _folders: Counter[str] = field(default_factory=Counter)
    _note_names: dict[bytes, int] = field(default_factory=dict)
    _note_contents: dict[str, int] = field(default_factory=dict)
    _note_peak: int = 0  # the most folders one new name or content was seen in

    def folder(self, folder: str, old: Iterable[FileFacts], new: Iterable[FileFacts], *, existed: bool) -> None:
        """One folder whose listing changed: its files before (`old`) and after (`new`).
        `existed`: the folder was in the parent (notes are counted in those only)."""
        before = {f.name: f for f in old}
        after = {f.name: f for f in new}
        hits = 0
        removed = [f for name, f in before.items() if name not in after]
        was: FileFacts | None
        added = [f for name, f in after.items() if name not in before]
        for name, was in before.items():
            now = after.get(name)
            if now is not None and now.sha256 != was.sha256:
                self.changed += 1
                if _lost(was, now):
                    self.lost_compression += 1
                    hits += 1
        self.removed += len(removed)
        if removed and added:
            extensions = {_extension(name) for name in before}
            by_name = {f.name: f for f in removed}
            stems = {_stem(f.name): f for f in removed}
            for f in added:
                ext = _extension(f.name)
                if ext in extensions:
                    continue
                stem = f.name[: -len(ext)] if ext else f.name
                appended = stem in by_name  # x.docx -> x.docx.locked
                was = by_name[stem] if appended else stems.get(_stem(f.name))  # x.docx -> x.crypt
                if was is None:
                    continue
                self.renamed += 1
                hits += 1
                if appended and _lost(was, f):
                    self.lost_compression += 1
        if existed:  # each name and each content once per folder: five copies of a scan are not five notes
            for f in added:
                self._note_peak = max(self._note_peak, _count(self._note_names, f.name))
            for sha256 in {f.sha256 for f in added}:
                self._note_peak = max(self._note_peak, _count(self._note_contents, sha256))
        if hits and (folder in self._folders or len(self._folders) < MAX_KEYS):
            self._folders[folder] += hits

    @property
    def note_folders(self) -> int:
        return self._note_peak

    def counts(self) -> dict[str, Any]:
        share = (self.changed + self.removed) / self.files_before if self.files_before else 0.0
        return {"files_before": self.files_before, "changed": self.changed, "removed": self.removed,
                "changed_share": round(share, 4), "lost_compression": self.lost_compression,
                "renamed": self.renamed, "note_folders": self.note_folders,
                "folders": [name for name, _n in self._folders.most_common(MAX_FOLDERS_SHOWN)]}


@dataclass(frozen=True)
class Verdict:
    suspect: bool
    signs: tuple[str, ...]  # the signs at or above their threshold
    counts: dict[str, Any]

    def as_summary(self, *, last_good: str | None) -> dict[str, Any]:
        """The snapshot's `summary.alarm` (docs/FORMAT.md): counts and folder names only."""
        return {**self.counts, "signs": list(self.signs), "last_good": last_good}


def judge(counts: dict[str, Any], thresholds: AlarmThresholds) -> Verdict:
    signs = []
    lost = counts.get("lost_compression", 0)
    files_before = counts.get("files_before", 0)
    if lost >= thresholds.lost_compression and lost >= thresholds.lost_compression_share * files_before:
        signs.append("lost_compression")
    share = counts.get("changed_share", 0.0)
    if share >= thresholds.changed_share:
        signs.append("changed_share")
    if share >= thresholds.changed_share_alone and files_before >= thresholds.changed_share_alone_min_files:
        signs.append("changed_share_alone")
    if counts.get("renamed", 0) >= thresholds.renamed:
        signs.append("renamed")
    if counts.get("note_folders", 0) >= thresholds.note_folders:
        signs.append("note_folders")
    alone = "lost_compression" in signs or "changed_share_alone" in signs
    suspect = thresholds.enabled and (alone or len(signs) >= 2)
    return Verdict(suspect, tuple(signs), dict(counts))


def folders_for_alert(folders: Iterable[str], sources: Iterable[str], depth: int = 0) -> list[str]:
    """The folders an alert that leaves the server may name: each cut to its source folder
    and `depth` levels below it ([alarm] alert_folder_depth), without repeats, in the order
    given. By default (0) the source folders only: when a source folder is the patients'
    folder itself (/srv/partage/Patients), the level below it is a patient's name, and a
    patient's name is health data. 1 or 2 suit a practice whose top folders are kinds of
    documents (`/srv/cabinet/courriers`). A folder under no source is cut to its first
    `depth + 1` levels. The snapshot's own summary.alarm (encrypted) keeps them whole."""
    roots = sorted((tuple(p for p in source.split("/") if p) for source in sources), key=len, reverse=True)
    shown: list[str] = []
    for folder in folders:
        parts = tuple(p for p in folder.split("/") if p)
        root = next((r for r in roots if parts[: len(r)] == r), None)
        cut = "/" + "/".join(parts[: len(root) + depth if root is not None else depth + 1])
        if cut not in shown:
            shown.append(cut)
    return shown


def _count(seen: dict[Any, int], key: bytes | str) -> int:
    """Count `key` once more; returns its count. When MAX_KEYS keys are followed, those seen in
    the fewest folders are forgotten first, until half the room is free: a large import of new
    files before the attack must not leave the ransom notes uncounted (they are then met in
    many folders and survive each clearing; a note forgotten early starts counting again)."""
    if key not in seen and len(seen) >= MAX_KEYS:
        floor = 1
        while len(seen) > MAX_KEYS // 2:
            for old in [k for k, n in seen.items() if n <= floor]:
                del seen[old]
            floor += 1
    seen[key] = seen.get(key, 0) + 1
    return seen[key]


def _lost(was: FileFacts, now: FileFacts) -> bool:
    return (was.ratio is not None and now.ratio is not None
            and was.ratio <= COMPRESSED_RATIO and now.ratio >= INCOMPRESSIBLE_RATIO)


def _extension(name: bytes) -> bytes:
    """b".locked" for b"x.docx.locked"; b"" without a dot (a leading dot is no extension)."""
    dot = name.rfind(b".")
    return name[dot:].lower() if dot > 0 else b""


def _stem(name: bytes) -> bytes:
    ext = _extension(name)
    return name[: -len(ext)] if ext else name


# ---- the alarm's state from the snapshots of a repository --------------------------------


@dataclass(frozen=True)
class OpenAlarm:
    """Suspect snapshots not acknowledged, and the last good snapshot before the first of them."""

    suspects: tuple[str, ...]  # hex ids, oldest first
    last_good: str | None  # hex id; None when no snapshot before the first suspect is good


def open_alarm(snapshots: Iterable[Any], acknowledged: set[str]) -> OpenAlarm | None:
    """`snapshots` oldest first (Repository.snapshots()); `acknowledged`: hex ids a person
    acknowledged (`backupctl acknowledge`). None when no alarm is open."""
    ordered = [(s.id.hex(), SUSPECT_TAG in s.tags) for s in snapshots if s.id is not None]
    suspects = [i for i, suspect in ordered if suspect and i not in acknowledged]
    if not suspects:
        return None
    first = next(n for n, (i, _s) in enumerate(ordered) if i == suspects[0])
    # An acknowledged suspect snapshot was looked at by a person: good from then on.
    good = [i for i, suspect in ordered[:first] if not suspect or i in acknowledged]
    return OpenAlarm(tuple(suspects), good[-1] if good else None)
