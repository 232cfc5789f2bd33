"""agent.repo.cache and the opening over a network: requests and round trips counted, not timed.

A store that looks remote (it has S3 options) records each request and the round it belongs
to: a request's round is one more than the highest round among the requests that had
finished when it started, so requests issued together (in flight at once) share a round, and
a request that waited for another's answer starts the next. Each request takes LATENCY, far
longer than issuing requests from threads, so "together" is unambiguous. A write is a PUT and
its verification (S3's HEAD), one after the other, as on S3 (agent/storage/s3.py), but for
a lock, which S3Storage writes unverified."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import stat
import threading
import time

import pytest

from agent.crypto.kdf import KdfParams
from agent.engine.restore import RestoreEngine
from agent.repo import layout
from agent.repo.cache import CacheRoot
from agent.repo.pack import BLOB_DATA, BLOB_TREE
from agent.repo.repository import Repository
from agent.repo.snapshot import Snapshot
from agent.repo.tree import DIR, FILE, Node, encode_tree
from agent.state.layout import StateLayout
from agent.storage.memory import MemoryStorage

LATENCY = 0.04
PASSPHRASE = b"phrase"


class RoundStore(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.max_concurrency = 8  # a NetworkStorage (agent/storage/base.py), as S3 is
        self.log: list[tuple[int, str, str]] = []  # (round, request, name)
        self._finished: list[int] = []
        self._rounds = threading.Lock()
        self.counting = False
        self.latency = 0.0  # LATENCY where rounds are counted

    def _request(self, what: str, name: str, call):
        if not self.counting:
            return call()
        with self._rounds:
            round_ = 1 + max(self._finished, default=0)
            self.log.append((round_, what, name))
        time.sleep(self.latency)
        try:
            return call()
        finally:
            with self._rounds:
                self._finished.append(round_)

    def start(self) -> None:
        self.log, self._finished, self.counting = [], [], True

    def rounds(self) -> int:
        return max((r for r, _w, _n in self.log), default=0)

    def exists(self, name):
        return self._request("HEAD", name, lambda: super(RoundStore, self).exists(name))

    def read(self, name, *, max_size=None):
        return self._request("GET", name, lambda: super(RoundStore, self).read(name, max_size=max_size))

    def read_range(self, name, offset, length):
        return self._request("GET range", name, lambda: MemoryStorage.read(self, name)[offset:offset + length])

    def write(self, name, data, *, exclusive=False, ephemeral=False, **options):
        self._request("PUT", name, lambda: super(RoundStore, self).write(name, data, exclusive=exclusive,
                                                                          ephemeral=ephemeral, **options))
        if not ephemeral:
            self._request("HEAD", name, lambda: None)  # the upload's verification

    def delete(self, name, *, ephemeral=False):
        return self._request("DELETE", name, lambda: super(RoundStore, self).delete(name, ephemeral=ephemeral))

    def list(self, prefix):
        return iter(self._request("LIST", prefix, lambda: list(super(RoundStore, self).list(prefix))))



def _cache(state: str) -> CacheRoot:
    """The metadata caches of a state directory, where a command finds them."""
    return CacheRoot(StateLayout(state).cache_root())

def _node(name: bytes, **fields) -> Node:
    return Node(name=name, mode=0o755 if fields.get("type") == DIR else 0o640, uid=os.getuid(), gid=os.getgid(),
                mtime_ns=10**18, **fields)


def _backup(repo: Repository, content: bytes, when: int) -> Snapshot:
    """A snapshot of /a/b/c/file.txt (three folders down) beside some other letters."""
    chunk, _ = repo.store_blob(BLOB_DATA, content)
    other, _ = repo.store_blob(BLOB_DATA, b"other letter %d" % when)
    leaf = [_node(b"file.txt", type=FILE, size=len(content), chunks=[chunk],
                  sha256=hashlib.sha256(content).hexdigest()),
            _node(b"other.txt", type=FILE, size=len(b"other letter %d" % when), chunks=[other],
                  sha256=hashlib.sha256(b"other letter %d" % when).hexdigest())]
    tree = repo.store_blob(BLOB_TREE, encode_tree(leaf))[0]
    for folder in (b"c", b"b", b"a"):
        tree = repo.store_blob(BLOB_TREE, encode_tree([_node(folder, type=DIR, subtree=tree)]))[0]
    repo.flush()
    snapshot = Snapshot(time=dt.datetime(2026, 12, when, tzinfo=dt.timezone.utc), host="h", user="u", paths=["/"],
                        tree=tree)
    snapshot.id = repo.save_snapshot(snapshot)
    return snapshot


@pytest.fixture
def store() -> RoundStore:
    store = RoundStore()
    repo = Repository.init(store, PASSPHRASE, cipher="xchacha20-poly1305", compression_level=3,
                           kdf_params=KdfParams(memory_kib=8192, iterations=1))
    for day in (1, 2, 3):  # three snapshots, three index files
        _backup(repo, b"letter of day %d " % day * 100, day)
    store.key_id = repo.key_id
    return store


def _restore_one_file(store: RoundStore, state: str, target, *, cache: bool = True) -> Repository:
    """What `backupctl restore latest --include a/b/c/file.txt` does, counted."""
    store.start()
    repo = Repository.open(store, PASSPHRASE, try_first=[store.key_id], cache=_cache(state) if cache else None)
    latest = repo.snapshots()[-1]
    report = RestoreEngine(repo, latest, str(target), includes=["a/b/c/file.txt"]).run()
    store.counting = False
    assert report.failures == [] and report.verified == 1
    assert (target / "a/b/c/file.txt").read_bytes() == b"letter of day 3 " * 100
    return repo


def _rounds_before(store: RoundStore, what: str) -> int:
    return min(r for r, w, _n in store.log if w == what) - 1


def test_a_warm_one_file_restore_takes_three_rounds_before_the_files_bytes(store, tmp_path):
    """Cold: the snapshots and index files are read together (one round each kind, not one
    per object) and the listings a level at a time. Warm: the listings of keys/ and
    snapshots/ and the config (one round, while the key is derived), the lock's PUT, then
    the listings of the other locks and of index/ (one round; the index files and folder
    listings then come from the cache), then the file's own ranged read, then the lock's
    DELETE. No key file, snapshot, index file or folder listing is read again, our own lock
    is not read back, data/ is not listed."""
    state = str(tmp_path / "state")
    store.latency = LATENCY
    _restore_one_file(store, state, tmp_path / "cold")
    cold = list(store.log)
    assert sum(1 for _r, w, n in cold if w == "GET" and n.startswith("snapshots/")) == 3
    assert len({r for _r2, w, n in cold for r in [_r2] if w == "GET" and n.startswith(("snapshots/", "index/"))}) == 2

    _restore_one_file(store, state, tmp_path / "warm")
    warm = store.log
    requests = sorted((w, n.split("/")[0] + "/" if "/" in n else n) for _r, w, n in warm)
    assert requests == sorted([("LIST", "keys/"), ("GET", "config"), ("LIST", "snapshots/"), ("LIST", "index/"),
                               ("PUT", "locks/"), ("LIST", "locks/"), ("GET range", "data/"),
                               ("DELETE", "locks/")]), warm
    assert _rounds_before(store, "GET range") == 3, warm
    put = next(r for r, w, _n in warm if w == "PUT")
    assert [r for r, w, n in warm if w == "LIST" and n == "index/"] == [put + 1]  # as of the lock
    assert store.rounds() == 5, warm  # then the file's read, then the lock's DELETE
    assert len(cold) > len(warm) + 8  # key file twice, 3 snapshots, 3 index files, 4 listings, data/


def test_a_local_repository_is_opened_as_before_without_cache(store, tmp_path):
    """No cache (a file:// repository, a rotated disk): nothing in the state directory, and
    the key file is read from the storage (twice, until two reads agree)."""
    state = tmp_path / "state"
    _restore_one_file(store, str(state), tmp_path / "t", cache=False)
    assert not state.exists()
    assert sum(1 for _r, w, n in store.log if w == "GET" and n.startswith("keys/")) == 2


def test_the_cache_holds_ciphertext_in_private_files(store, tmp_path):
    state = tmp_path / "state"
    repo = _restore_one_file(store, str(state), tmp_path / "t")
    root = state / "cache" / repo.config.repository_id.hex() / "repository"
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path
    for name in ("snapshots", "index"):
        for path in (root / name).iterdir():
            assert path.read_bytes() == store.objects[f"{name}/{path.name}"]
    assert len(list((root / "trees").iterdir())) == 4  # the root, a, b, c
    assert not any(b"letter of day" in p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_a_corrupt_cache_entry_is_dropped_and_read_again(store, tmp_path):
    state = str(tmp_path / "state")
    repo = _restore_one_file(store, state, tmp_path / "t1")
    root = tmp_path / "state" / "cache" / repo.config.repository_id.hex() / "repository"
    snapshot = sorted((root / "snapshots").iterdir())[0]
    tree = sorted((root / "trees").iterdir())[0]
    for path in (snapshot, tree):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))
    _restore_one_file(store, state, tmp_path / "t2")
    reads = [(w, n) for _r, w, n in store.log if w.startswith("GET")]
    assert ("GET", f"snapshots/{snapshot.name}") in reads
    assert sum(1 for w, _n in reads if w == "GET range") == 2  # the listing again, and the file
    assert snapshot.read_bytes() == store.objects[f"snapshots/{snapshot.name}"]  # cached again, intact


def test_another_snapshots_bytes_under_a_name_are_refused_like_a_forged_object(store, tmp_path):
    """The snapshot's own id is in its associated data: the newest snapshot's cache entry
    replaced by the oldest's bytes (a consistent, well-formed object of the repository)
    fails to open as the newest, is dropped and read from the storage: the restore
    still brings back the newest snapshot's letter."""
    state = str(tmp_path / "state")
    repo = _restore_one_file(store, state, tmp_path / "t1")
    root = tmp_path / "state" / "cache" / repo.config.repository_id.hex() / "repository"
    by_time = sorted(repo.snapshots(), key=lambda s: s.time)
    oldest, newest = (root / layout.snapshot_name(s.id) for s in (by_time[0], by_time[-1]))
    newest.write_bytes(oldest.read_bytes())
    _restore_one_file(store, state, tmp_path / "t2")  # asserts the newest letter came back
    assert ("GET", layout.snapshot_name(by_time[-1].id)) in [(w, n) for _r, w, n in store.log]
    assert newest.read_bytes() == store.objects[layout.snapshot_name(by_time[-1].id)]


def test_entries_forget_and_prune_removed_leave_the_cache(store, tmp_path):
    """Another machine forgets a snapshot and deletes an index file: the next listing here
    drops their copies; a folder listing no index lists any more is dropped too."""
    state = str(tmp_path / "state")
    repo = _restore_one_file(store, state, tmp_path / "t1")
    root = tmp_path / "state" / "cache" / repo.config.repository_id.hex() / "repository"
    oldest = min(repo.snapshots(), key=lambda s: s.time)
    gone_snapshot = layout.snapshot_name(oldest.id)
    gone_index = sorted(n for n in store.objects if n.startswith("index/"))[0]
    (root / "trees" / ("00" * 32)).write_bytes(b"a listing no index holds")
    other = Repository.open(store, PASSPHRASE)  # the other machine: no cache
    other.delete_snapshot(oldest.id)
    store.delete(gone_index)
    reopened = Repository.open(store, PASSPHRASE, try_first=[store.key_id], cache=_cache(state))
    reopened.snapshots()
    reopened.load_index()
    assert not (root / gone_snapshot).exists() and not (root / gone_index).exists()
    assert not (root / "trees" / ("00" * 32)).exists()
    assert len(list((root / "snapshots").iterdir())) == 2


def test_a_removed_key_opens_nothing_from_the_cache(store, tmp_path):
    state = str(tmp_path / "state")
    repo = _restore_one_file(store, state, tmp_path / "t1")
    second = repo.add_key(b"another phrase", params=KdfParams(memory_kib=8192, iterations=1))
    cached = tmp_path / "state" / "cache" / repo.config.repository_id.hex() / "repository" / "keys"
    assert (cached / store.key_id.hex()).exists()
    store.delete(layout.key_name(store.key_id))  # `key remove` of the key this machine used
    from agent.errors import WrongPassphrase

    with pytest.raises(WrongPassphrase):
        Repository.open(store, PASSPHRASE, try_first=[store.key_id], cache=_cache(state))
    assert not (cached / store.key_id.hex()).exists()
    assert Repository.open(store, b"another phrase", try_first=[second], cache=_cache(state)).key_id == second


def test_a_backup_fills_the_cache_as_it_writes(store, tmp_path):
    """A backup made with the cache leaves its snapshot, index file and listings there: the
    restore that follows reads none of them from the storage."""
    state = str(tmp_path / "state")
    repo = Repository.open(store, PASSPHRASE, try_first=[store.key_id], cache=_cache(state))
    repo.load_index()  # reads (and caches) the index files there are
    new = _backup(repo, b"letter of day 3 " * 100, 4)
    _restore_one_file(store, state, tmp_path / "t")
    names = [n for _r, w, n in store.log if w.startswith("GET")]
    assert layout.snapshot_name(new.id) not in names  # the older three, never seen here, are read
    assert not [n for n in names if n.startswith("index/")], names
    assert sum(1 for _r, w, _n in store.log if w == "GET range") == 1  # the file's content alone


def test_a_lock_taken_after_opening_lists_the_snapshots_again(store, tmp_path):
    """The listing of snapshots/ made while opening is not what a lock's holder reads: a
    snapshot saved by another machine between this one's opening and its prune's lock
    would otherwise be missing from the prune's view, and its data taken for garbage."""
    from agent.repo.lock import RepositoryLock

    repo = Repository.open(store, PASSPHRASE, try_first=[store.key_id], cache=_cache(str(tmp_path / "s")))
    other = Repository.open(store, PASSPHRASE)
    other.load_index()
    saved = _backup(other, b"saved meanwhile", 9)
    with RepositoryLock(repo, "prune", exclusive=True):
        assert saved.id in repo.list_snapshot_ids()


def test_folder_listings_past_the_bound_go_oldest_first(tmp_path):
    from agent.repo.cache import MetadataCache

    cache = MetadataCache(str(tmp_path / "c"))
    ids = [bytes([i]) * 32 for i in range(4)]
    for age, chunk_id in enumerate(ids):
        cache.put_tree(chunk_id, b"x" * 100)
        os.utime(tmp_path / "c" / "trees" / chunk_id.hex(), (1000 + age, 1000 + age))
    cache.trim_trees(lambda chunk_id: chunk_id != ids[3], limit=150)  # ids[3] no longer indexed
    assert [cache.get_tree(i) is not None for i in ids] == [False, False, True, False]


def test_only_object_names_of_the_repository_are_cached(tmp_path):
    from agent.repo.cache import MetadataCache

    cache = MetadataCache(str(tmp_path / "c"))
    for name in ("../../etc/passwd", "data/00/" + "00" * 32, "locks/" + "00" * 16, "snapshots/x"):
        with pytest.raises(ValueError):
            cache.put(name, b"x")
    assert not (tmp_path / "c").exists()


def test_a_cached_copy_of_another_key_under_a_keys_name_is_dropped(store, tmp_path):
    """The cached keys/<A> holds key file B (same repository, same passphrase): it is not
    taken for A (the machine would then note and use a key it did not choose); the copy is
    dropped and A is read from the storage and cached again."""
    state = str(tmp_path / "state")
    repo = _restore_one_file(store, state, tmp_path / "t1")
    second = repo.add_key(PASSPHRASE, params=KdfParams(memory_kib=8192, iterations=1))
    cached = tmp_path / "state" / "cache" / repo.config.repository_id.hex() / "repository" / "keys"
    (cached / store.key_id.hex()).write_bytes(store.objects[layout.key_name(second)])
    opened = Repository.open(store, PASSPHRASE, try_first=[store.key_id], cache=_cache(state))
    assert opened.key_id == store.key_id
    assert (cached / store.key_id.hex()).read_bytes() == store.objects[layout.key_name(store.key_id)]


@pytest.mark.parametrize("first_copy", ["damaged", "of another passphrase"])
def test_every_cached_copy_of_a_key_is_tried_before_the_storage(store, tmp_path, monkeypatch, first_copy):
    """Another repository's cache folder holds a copy under the same key name, scanned
    first: it fails, and the next copy (this repository's) still opens with no key file read."""
    from agent.crypto.keys import MasterKey, wrap_master_key
    from agent.repo import cache as cache_module

    state = str(tmp_path / "state")
    _restore_one_file(store, state, tmp_path / "t1")
    name = layout.key_name(store.key_id)
    other = bytes(16)
    if first_copy == "damaged":
        data = b"not a key file"
    else:
        data = wrap_master_key(MasterKey.generate(), b"another phrase", repository_id=other, key_id=store.key_id,
                               params=KdfParams(memory_kib=8192, iterations=1), created="2026-12-01", host="h")
    _cache(state).repository(other).put(name, data)
    scandir = os.scandir
    monkeypatch.setattr(cache_module.os, "scandir", lambda path: sorted(scandir(path), key=lambda e: e.name))
    assert [repository_id for repository_id, _ in _cache(state).key_files(name)][0] == other
    store.start()
    Repository.open(store, PASSPHRASE, try_first=[store.key_id], cache=_cache(state))
    store.counting = False
    assert not [n for _r, w, n in store.log if w == "GET" and n.startswith(layout.KEYS_PREFIX)], store.log


def test_a_folder_listing_read_alone_is_kept_and_read_from_the_cache_next_time(store, tmp_path):
    """load_blob (one listing, as `ls` and `find` read them) keeps what it read, like load_blobs."""
    state = str(tmp_path / "state")
    repo = Repository.open(store, PASSPHRASE, try_first=[store.key_id], cache=_cache(state))
    repo.load_index()
    root = repo.snapshots()[-1].tree
    listing = repo.load_blob(root)
    assert repo.cache is not None and repo.cache.get_tree(root) is not None
    store.start()
    assert repo.load_blob(root) == listing
    store.counting = False
    assert not [w for _r, w, _n in store.log if w.startswith("GET")], store.log


def test_a_cached_listing_sealed_with_other_content_under_its_id_is_not_used(store, tmp_path):
    """Authentication binds a cached listing to its chunk id; its content is also checked
    against that id (keyed BLAKE3 of the plaintext): a listing sealed under the right id
    with other content (a writer's bug) is dropped and read from the pack."""
    state = str(tmp_path / "state")
    repo = _restore_one_file(store, state, tmp_path / "t1")
    root = repo.snapshots()[-1].tree
    real = repo.load_blob(root)
    other = real.replace(b'"a"', b'"z"')  # same length, another folder's name
    assert other != real and len(other) == len(real)
    path = tmp_path / "state" / "cache" / repo.config.repository_id.hex() / "repository" / "trees" / root.hex()
    path.write_bytes(bytes(repo.sealer.seal_blob(BLOB_TREE, root, other)))
    reopened = Repository.open(store, PASSPHRASE, try_first=[store.key_id], cache=_cache(state))
    reopened.load_index()
    assert reopened.load_blob(root) == real
    assert path.read_bytes() != bytes(repo.sealer.seal_blob(BLOB_TREE, root, other))  # dropped, cached again


def test_a_snapshot_larger_than_any_snapshot_is_refused_unread_with_the_cache(store, tmp_path, monkeypatch):
    from agent.repo import repository as repository_module

    state = str(tmp_path / "state")
    repo = Repository.open(store, PASSPHRASE, try_first=[store.key_id], cache=_cache(state))
    monkeypatch.setattr(repository_module, "MAX_SNAPSHOT_SIZE", 10)
    assert repo.snapshots() == []
    assert len(repo.snapshot_problems) == 3
    assert all("more than any such object" in problem for problem in repo.snapshot_problems), repo.snapshot_problems
