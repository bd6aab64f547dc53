"""The caches' staleness setting (``recheck``): generations through the LRU and the disk cache.

Contract runs with ``recheck=True`` (a cache that sees every change behind its back), then each
setting: "open" (what this store cached is trusted; what was cached before it opened is checked
once), True (every use checks), seconds (checked past an age), False (never); the disk cache's
file header (and files without one); and revalidations racing writes through the same store.
"""

from __future__ import annotations

import functools
import gzip
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Iterable, Iterator

import pytest

from cloudvolume_lite import compression
from cloudvolume_lite.errors import ConflictError
from cloudvolume_lite.runtime import Runtime
from cloudvolume_lite.stores import open_store
from cloudvolume_lite.stores import cache_dir as cache_dir_module
from cloudvolume_lite.stores import disk_cache as disk_cache_module
from cloudvolume_lite.stores import lru as lru_module
from cloudvolume_lite.stores import recheck as recheck_module
from cloudvolume_lite.stores.base import Store, Versioned, WrapperStore
from cloudvolume_lite.stores.batch import Gets, Groups, data_only
from cloudvolume_lite.stores.disk_cache import MAGIC, CachedCopy, DiskCache, DiskCacheStore, encode_header
from cloudvolume_lite.stores.lru import Cached, ChunkLRU, LRUStore
from cloudvolume_lite.stores.memory import BUCKETS, MemoryStore
from cloudvolume_lite.stores.url import StoreURL, parse_url
from test_store_contract import MemoryBacked, _mem_path

GUNZIP_GIVES_BYTEARRAY = type(compression.decompress(gzip.compress(b"x"), "gzip")) is not bytes


# -- helpers -----------------------------------------------------------------------------------------
class Counting(WrapperStore):
    """Records every request that reaches the store below: ``("get", key)``, ``("read", key,
    if_none_match, sent)`` (``sent``: bytes came back), ``("batch", keys)``; ``delay`` makes each
    read slow, like a network, and the peak number of reads in flight is kept."""

    def __init__(self, inner: Store, log: list | None = None, delay: float = 0.0, generator_batches: bool = False,
                 group_batches: bool = False):
        super().__init__(inner)
        self.log: list[tuple] = [] if log is None else log
        self.delay = delay
        self.generator_batches = generator_batches
        self.group_batches = group_batches
        self._lock = threading.Lock()
        self._now = 0
        self.peak = 0

    def _note(self, *entry: object) -> None:
        with self._lock:
            self.log.append(entry)

    def requests(self) -> list[tuple]:
        with self._lock:
            return [e for e in self.log if e[0] in ("get", "read")]

    def clear(self) -> None:
        with self._lock:
            self.log.clear()

    def get(self, key: str, byte_range=None):  # noqa: ANN001, ANN201
        self._note("get", key)
        return self.inner.get(key, byte_range)

    def read(self, key: str, byte_range=None, *, if_match=None, if_none_match=None):  # noqa: ANN001, ANN201
        with self._lock:
            self._now += 1
            self.peak = max(self.peak, self._now)
        try:
            if self.delay:
                time.sleep(self.delay)
            got = self.inner.read(key, byte_range, if_match=if_match, if_none_match=if_none_match)
        finally:
            with self._lock:
                self._now -= 1
        self._note("read", key, if_none_match, got is not None and got.data is not None)
        return got

    def iter_read(self, keys: Iterable[str], expected_bytes=None, runtime=None):  # noqa: ANN001, ANN201
        keys = list(keys)
        self._note("batch", tuple(keys))
        if self.generator_batches:  # like a streaming store: advanced by one thread at a time
            return ((k, self.read(k)) for k in keys)
        if self.group_batches:  # like the sharded store: a thread fetches a group, then hands out its items
            groups = [keys[i : i + 4] for i in range(0, len(keys), 4)]
            return Groups(lambda g: {k: self.read(k) for k in g}, groups, self.batch_width(runtime))
        return Gets(self.read, keys, self.batch_width(runtime))

    def iter_get(self, keys: Iterable[str], expected_bytes=None, runtime=None):  # noqa: ANN001, ANN201
        return data_only(self.iter_read(keys, expected_bytes, runtime))

    def put(self, key: str, data: bytes, **kw):  # noqa: ANN003, ANN201
        self._note("put", key)
        return self.inner.put(key, data, **kw)

    def delete(self, key: str) -> None:
        self._note("delete", key)
        self.inner.delete(key)

    def _with_url(self, url: StoreURL) -> "Counting":
        return Counting(self.inner._with_url(url), self.log, self.delay, self.generator_batches, self.group_batches)


def revalidations(log: list[tuple]) -> list[tuple]:
    """Conditional reads, as ``(key, sent)``."""
    return [(e[1], e[3]) for e in log if e[0] == "read" and e[2] is not None]


def whole_fetches(log: list[tuple]) -> list[str]:
    return [e[1] for e in log if (e[0] == "read" and e[2] is None) or e[0] == "get"]


@pytest.fixture
def bucket() -> Iterator[str]:
    name = f"recheck-{uuid.uuid4().hex}"
    yield name
    BUCKETS.drop(name)


def behind(bucket: str, key: str, data: bytes) -> str:
    """Change ``vol/key`` behind every store's back (another writer); its new generation."""
    return BUCKETS.write(bucket, f"vol/{key}", data)


def counted(bucket: str, **kw: object) -> Counting:
    return Counting(open_store(f"mem://{bucket}/vol"), **kw)  # type: ignore[arg-type]


def lru_over(inner: Store, recheck: object = None, lru: ChunkLRU | None = None) -> LRUStore:
    return LRUStore(inner, lru or ChunkLRU(1 << 20), recheck=recheck)  # type: ignore[arg-type]


def disk_over(inner: Store, path: Path, recheck: object = None) -> DiskCacheStore:
    return DiskCacheStore(inner, DiskCache(str(path)), recheck=recheck)  # type: ignore[arg-type]


def maker(kind: str, tmp_path: Path):  # noqa: ANN201
    """A cache store of ``kind`` over ``inner`` (each a fresh cache)."""
    if kind == "lru":
        return lambda inner, recheck=None: lru_over(inner, recheck)
    return lambda inner, recheck=None: disk_over(inner, tmp_path / f"cache-{uuid.uuid4().hex}", recheck)


CACHES = ["lru", "disk"]


# -- the contract, with recheck=True: a cache that sees every change --------------------------------
class RecheckedContract(MemoryBacked):
    """A cache over a memory store, seeded behind its back in the bucket dict; with
    ``recheck=True`` it must see those changes, as an uncached store does."""

    sees_external_writes = True

    @pytest.fixture(autouse=True)
    def _bucket(self, tmp_path: Path) -> Iterator[None]:
        self.bucket = f"contract-{uuid.uuid4().hex}"
        self.cache_dir = tmp_path / "cache"
        yield
        BUCKETS.drop(self.bucket)

    def _memory(self, store: Store) -> MemoryStore:
        while not isinstance(store, MemoryStore):
            store = store.inner  # type: ignore[attr-defined]
        return store

    def test_deleted_behind_its_back(self, store: Store) -> None:
        self.seed(store, "gone", b"here")
        assert store.get("gone") == b"here" and dict(store.iter_get(["gone"])) == {"gone": b"here"}
        BUCKETS.bucket(self._memory(store).url.netloc).pop(_mem_path(self._memory(store).url.path, "gone"))
        assert store.get("gone") is None
        assert dict(store.iter_get(["gone"])) == {"gone": None}
        assert not store.exists("gone")


def _bytearray_xfail(cls: type) -> type:
    """As in test_store_contract: gzip'd objects come back as libdeflate's bytearray there."""
    inherited = cls.test_get_returns_bytes

    @functools.wraps(inherited)
    def test(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        return inherited(self, *args, **kwargs)

    cls.test_get_returns_bytes = pytest.mark.xfail(GUNZIP_GIVES_BYTEARRAY, strict=True,  # type: ignore[attr-defined]
                                                   reason="gunzip gives a bytearray")(test)
    return cls


@_bytearray_xfail
class TestLRUStoreRechecked(RecheckedContract):
    def make_store(self) -> Store:
        return LRUStore(open_store(f"mem://{self.bucket}/vol"), ChunkLRU(64 << 20), recheck=True)


@_bytearray_xfail
class TestDiskCacheStoreRechecked(RecheckedContract):
    def make_store(self) -> Store:
        return DiskCacheStore(open_store(f"mem://{self.bucket}/vol"), DiskCache(str(self.cache_dir)), recheck=True)


@_bytearray_xfail
class TestLRUOverDiskCacheRechecked(RecheckedContract):
    """The Volume's stack: the LRU in front of the disk cache, both rechecking."""

    def make_store(self) -> Store:
        disk = DiskCacheStore(open_store(f"mem://{self.bucket}/vol"), DiskCache(str(self.cache_dir)), recheck=True)
        return LRUStore(disk, ChunkLRU(64 << 20), recheck=True)


# -- "open" ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", CACHES)
def test_open_serves_what_it_cached_without_a_request(kind: str, bucket: str, tmp_path: Path) -> None:
    inner = counted(bucket)
    behind(bucket, "a", b"A")
    behind(bucket, "b", b"B")
    store = maker(kind, tmp_path)(inner)  # "open" by default
    assert store.get("a") == b"A" and dict(store.iter_get(["a", "b"])) == {"a": b"A", "b": b"B"}
    inner.clear()
    for _ in range(3):
        assert store.get("a") == b"A"
        assert dict(store.iter_get(["a", "b"])) == {"a": b"A", "b": b"B"}
        assert store.exists("b")
    assert inner.requests() == []
    behind(bucket, "a", b"changed")  # another writer: shown in a store opened later
    assert store.get("a") == b"A"


def test_open_hits_ask_no_clock(bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under "open" (and False) a hit costs no ``time.time()``: nothing cached after the
    opening is ever due."""
    inner = counted(bucket)
    behind(bucket, "a", b"A")
    stores = [lru_over(inner), lru_over(inner, False), disk_over(inner, tmp_path / "c"),
              disk_over(inner, tmp_path / "c", False)]
    for store in stores:
        store.get("a")
    inner.clear()
    calls = []

    class Clock:
        @staticmethod
        def time() -> float:
            calls.append(1)
            return time.time()

    for module in (lru_module, disk_cache_module, cache_dir_module, recheck_module):
        monkeypatch.setattr(module, "time", Clock)
    for store in stores:
        for _ in range(100):
            assert store.get("a") == b"A"
        assert store.cached_read("a").data == b"A"  # type: ignore[union-attr]
    assert calls == []
    for store in stores:  # a batch notes when it started (for what it fetches), once
        assert dict(store.iter_get(["a"] * 50)) == {"a": b"A"}
    assert len(calls) <= len(stores) and inner.requests() == []


def test_open_checks_a_disk_copy_from_before_once(bucket: str, tmp_path: Path) -> None:
    """A cache file written before the store opened is checked on first use (a conditional
    read, nothing sent if unchanged), then trusted."""
    behind(bucket, "a", b"A")
    behind(bucket, "b", b"B")
    earlier = disk_over(counted(bucket), tmp_path / "c")
    assert dict(earlier.iter_get(["a", "b"])) == {"a": b"A", "b": b"B"}
    time.sleep(0.01)
    inner = counted(bucket)
    store = disk_over(inner, tmp_path / "c")  # a later session over the same directory
    assert store.get("a") == b"A"
    assert dict(store.iter_get(["a", "b"])) == {"a": b"A", "b": b"B"}
    assert sorted(revalidations(inner.log)) == [("a", False), ("b", False)] and whole_fetches(inner.log) == []
    inner.clear()
    assert store.get("a") == b"A" and dict(store.iter_get(["a", "b"])) == {"a": b"A", "b": b"B"}
    assert inner.requests() == []
    # the check is remembered in memory; the file is left as it was
    copy = store.cache.load(store._file("a"))
    assert copy is not None and copy.checked_at > earlier.recheck.opened


def test_open_sees_a_change_made_before_it_opened(bucket: str, tmp_path: Path) -> None:
    behind(bucket, "a", b"old")
    assert disk_over(counted(bucket), tmp_path / "c").get("a") == b"old"
    behind(bucket, "a", b"new")
    time.sleep(0.01)
    inner = counted(bucket)
    store = disk_over(inner, tmp_path / "c")
    assert store.get("a") == b"new"
    assert revalidations(inner.log) == [("a", True)]  # one conditional read, which brought the bytes
    assert store.cache.load(store._file("a")).data == b"new"  # type: ignore[union-attr]
    inner.clear()
    assert store.get("a") == b"new" and inner.requests() == []


def test_open_drops_a_copy_of_what_was_deleted(bucket: str, tmp_path: Path) -> None:
    behind(bucket, "a", b"A")
    assert disk_over(counted(bucket), tmp_path / "c").get("a") == b"A"
    BUCKETS.bucket(bucket).pop("vol/a")
    time.sleep(0.01)
    store = disk_over(counted(bucket), tmp_path / "c")
    assert store.get("a") is None
    assert not os.path.exists(store._file("a"))


def test_shared_directory_a_later_store_sees_another_stores_write(bucket: str, tmp_path: Path) -> None:
    """Two stores on one cache directory: a writer changes the object through one; a store
    opened later ("open") reads the new bytes. So does one opened later still after a change
    made by a writer that does not use the cache at all."""
    behind(bucket, "a", b"v1")
    reader = disk_over(counted(bucket), tmp_path / "shared")
    writer = disk_over(counted(bucket), tmp_path / "shared")
    assert reader.get("a") == b"v1" and writer.get("a") == b"v1"
    writer.put("a", b"v2")
    time.sleep(0.01)
    later = disk_over(counted(bucket), tmp_path / "shared")
    assert later.get("a") == b"v2"
    assert reader.get("a") == b"v2"  # the file it reads was replaced by the writer's copy
    behind(bucket, "a", b"v3")  # not through the cache
    time.sleep(0.01)
    inner = counted(bucket)
    latest = disk_over(inner, tmp_path / "shared")
    assert latest.get("a") == b"v3" and revalidations(inner.log) == [("a", True)]


# -- True --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", CACHES)
def test_true_checks_every_use(kind: str, bucket: str, tmp_path: Path) -> None:
    inner = counted(bucket)
    behind(bucket, "a", b"A")
    behind(bucket, "b", b"B")
    store = maker(kind, tmp_path)(inner, True)
    assert store.get("a") == b"A"
    assert whole_fetches(inner.log) == ["a"]
    inner.clear()
    assert store.get("a") == b"A"
    assert store.get("a") == b"A"
    # an unchanged object costs a conditional read that sends nothing
    assert revalidations(inner.log) == [("a", False), ("a", False)] and whole_fetches(inner.log) == []
    inner.clear()
    assert dict(store.iter_get(["a", "b"])) == {"a": b"A", "b": b"B"}  # a: checked, b: fetched
    assert revalidations(inner.log) == [("a", False)] and whole_fetches(inner.log) == ["b"]
    behind(bucket, "a", b"A2")
    inner.clear()
    assert dict(store.iter_get(["a", "b"])) == {"a": b"A2", "b": b"B"}
    assert sorted(revalidations(inner.log)) == [("a", True), ("b", False)]
    inner.clear()
    assert store.get("a") == b"A2" and revalidations(inner.log) == [("a", False)]


@pytest.mark.parametrize("kind", CACHES)
def test_true_revalidations_of_a_batch_run_at_once(kind: str, bucket: str, tmp_path: Path) -> None:
    """Due hits are checked by the batch's loops together, also when the misses come from a
    batch that only one thread at a time may advance (a streaming store)."""
    keys = [f"k{i}" for i in range(16)]
    for k in keys:
        behind(bucket, k, k.encode())
    inner = counted(bucket, delay=0.02, generator_batches=True)
    inner.latency_bound = True  # like a network: worth runtime.parallel loops, whatever the cores
    store = maker(kind, tmp_path)(inner, True)
    assert dict(store.iter_get(keys[:12])) == {k: k.encode() for k in keys[:12]}
    inner.clear()
    inner.peak = 0
    rt = Runtime(8)
    got: dict[str, bytes | None] = {}
    lock = threading.Lock()

    def take(item: tuple[str, bytes | None]) -> None:
        with lock:
            got[item[0]] = item[1]

    batch = store.iter_get(keys, runtime=rt)
    assert batch.width == 8
    rt.run(take, batch, batch.width)
    rt.close()
    assert got == {k: k.encode() for k in keys}
    assert sorted(revalidations(inner.log)) == [(k, False) for k in sorted(keys[:12])]
    assert sorted(whole_fetches(inner.log)) == sorted(keys[12:])
    assert inner.peak > 1  # more than one check in flight, not one after the other


@pytest.mark.parametrize("kind", CACHES)
def test_a_batch_over_grouped_fetches_loses_no_item(kind: str, bucket: str, tmp_path: Path) -> None:
    """The misses come in groups (the sharded store's batch over a network): a loop that finds
    no group left must not end the batch for a loop still handing out the group it fetched."""
    keys = [f"k{i}" for i in range(40)]
    for k in keys:
        behind(bucket, k, k.encode())
    inner = counted(bucket, delay=0.002, group_batches=True)
    inner.latency_bound = True
    store = maker(kind, tmp_path)(inner)
    rt = Runtime(6)
    got: list[str] = []
    lock = threading.Lock()

    def take(item: tuple[str, bytes | None]) -> None:
        time.sleep(0.001)
        with lock:
            got.append(item[0])

    try:
        for trial in range(5):
            fresh = keys[: 4 * trial]  # some hits in front of the misses
            for k in fresh:
                store.get(k)
            got.clear()
            batch = store.iter_get(keys, runtime=rt)
            rt.run(take, batch, batch.width)
            assert sorted(got) == sorted(keys), f"trial {trial}: {len(keys) - len(got)} items lost"
            (store.lru.clear() if kind == "lru" else store.cache.clear())  # type: ignore[attr-defined]
    finally:
        rt.close()


# -- seconds -----------------------------------------------------------------------------------------
def test_seconds_lru_checks_past_the_age(bucket: str) -> None:
    inner = counted(bucket)
    behind(bucket, "a", b"A")
    store = lru_over(inner, 30.0)
    assert store.get("a") == b"A"
    inner.clear()
    assert store.get("a") == b"A" and inner.requests() == []  # young: served
    entry = store.lru.get(store._ns + "a")
    assert isinstance(entry, Cached)
    entry.checked_at -= 60  # as if fetched a minute ago
    behind(bucket, "a", b"A2")
    assert store.get("a") == b"A2" and revalidations(inner.log) == [("a", True)]
    inner.clear()
    assert store.get("a") == b"A2" and inner.requests() == []  # checked just now


def test_seconds_lru_with_a_tiny_age(bucket: str) -> None:
    inner = counted(bucket)
    behind(bucket, "a", b"A")
    store = lru_over(inner, 0.05)
    assert store.get("a") == b"A"
    inner.clear()
    assert store.get("a") == b"A" and inner.requests() == []
    time.sleep(0.1)
    assert store.get("a") == b"A" and revalidations(inner.log) == [("a", False)]


def test_seconds_disk_checks_past_the_age(bucket: str, tmp_path: Path) -> None:
    inner = counted(bucket)
    gen = behind(bucket, "a", b"A")
    store = disk_over(inner, tmp_path / "c", 30.0)
    store.cache.keep(store._file("a"), b"A", gen, time.time() - 10)  # checked 10 s ago: young
    assert store.get("a") == b"A" and inner.requests() == []
    store.cache.keep(store._file("a"), b"A", gen, time.time() - 60)  # a minute ago: due
    assert store.get("a") == b"A" and revalidations(inner.log) == [("a", False)]
    inner.clear()
    assert store.get("a") == b"A" and inner.requests() == []  # remembered as checked now
    assert store.cache.load(store._file("a")).checked_at > time.time() - 5  # type: ignore[union-attr]


# -- False -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", CACHES)
def test_false_never_checks(kind: str, bucket: str, tmp_path: Path) -> None:
    inner = counted(bucket)
    behind(bucket, "a", b"A")
    store = maker(kind, tmp_path)(inner, False)
    assert store.get("a") == b"A"
    behind(bucket, "a", b"A2")
    inner.clear()
    assert store.get("a") == b"A" and dict(store.iter_get(["a"])) == {"a": b"A"}
    assert inner.requests() == []
    assert store.read("a").data == b"A2"  # type: ignore[union-attr]  # read asks the store, and refreshes
    assert store.get("a") == b"A2"


def test_false_serves_an_old_disk_copy_as_is(bucket: str, tmp_path: Path) -> None:
    behind(bucket, "a", b"A")
    assert disk_over(counted(bucket), tmp_path / "c").get("a") == b"A"
    behind(bucket, "a", b"A2")
    inner = counted(bucket)
    store = disk_over(inner, tmp_path / "c", False)
    assert store.get("a") == b"A" and inner.requests() == []


# -- the file header ---------------------------------------------------------------------------------
def test_header_format(bucket: str, tmp_path: Path) -> None:
    head = encode_header("gen-7", 1234.5)
    assert head[:8] == MAGIC == b"\x89CVL\r\n\x1a\n"
    assert head[8] == 1 and head[9] == 0 and int.from_bytes(head[10:12], "little") == 5
    assert head[20:] == b"gen-7" and len(head) == 25
    assert len(encode_header(None, 0)) == 20
    inner = counted(bucket)
    store = disk_over(inner, tmp_path / "c")
    gen = store.put("k", b"payload")
    assert gen is not None and gen == inner.stat("k")
    raw = Path(store._file("k")).read_bytes()
    assert raw.startswith(MAGIC) and raw.endswith(b"payload")
    copy = store.cache.load(store._file("k"))
    assert copy == CachedCopy(b"payload", gen, copy.checked_at) and copy.checked_at >= store.recheck.opened
    assert store.get("k") == b"payload" and inner.requests() == []
    empty_gen = store.put("e", b"")
    assert store.cache.load(store._file("e")) == CachedCopy(b"", empty_gen, store.cache.load(store._file("e")).checked_at)  # type: ignore[union-attr]


@pytest.mark.parametrize("recheck", ["open", 30.0, True])
def test_headerless_files_of_older_versions_are_refetched_when_due(recheck: object, bucket: str,
                                                                   tmp_path: Path) -> None:
    behind(bucket, "a", b"current")
    inner = counted(bucket)
    store = disk_over(inner, tmp_path / "c", recheck)
    path = Path(store._file("a"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"what an older version kept")  # no header: generation unknown, checked at 0
    assert store.cache.load(str(path)) == CachedCopy(b"what an older version kept", None, 0.0)
    assert store.get("a") == b"current"
    assert whole_fetches(inner.log) == ["a"] and revalidations(inner.log) == []  # no generation to ask about
    assert path.read_bytes().startswith(MAGIC)  # rewritten with a header
    inner.clear()
    assert store.get("a") == b"current"
    assert whole_fetches(inner.log) == []


def test_headerless_files_are_served_as_is_under_false(bucket: str, tmp_path: Path) -> None:
    behind(bucket, "a", b"current")
    inner = counted(bucket)
    store = disk_over(inner, tmp_path / "c", False)
    path = Path(store._file("a"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"old copy")
    assert store.get("a") == b"old copy" and dict(store.iter_get(["a"])) == {"a": b"old copy"}
    assert inner.requests() == []


def test_a_file_of_a_later_header_version_is_a_miss(bucket: str, tmp_path: Path) -> None:
    behind(bucket, "a", b"current")
    store = disk_over(counted(bucket), tmp_path / "c", False)
    path = Path(store._file("a"))
    path.parent.mkdir(parents=True)
    head = bytearray(encode_header("g", time.time()))
    head[8] = 2  # a version this one cannot read
    path.write_bytes(bytes(head) + b"who knows")
    assert store.get("a") == b"current"
    assert store.cache.load(str(path)).data == b"current"  # type: ignore[union-attr]


# -- writes, reads and generations through the caches ------------------------------------------------
@pytest.mark.parametrize("kind", CACHES)
def test_put_returns_the_generation_and_conflicts_drop_the_copy(kind: str, bucket: str, tmp_path: Path) -> None:
    inner = counted(bucket)
    store = maker(kind, tmp_path)(inner)
    gen = store.put("k", b"one")
    assert gen == inner.stat("k") == store.stat("k")
    assert store.get("k") == b"one"
    behind(bucket, "k", b"someone else's")
    assert store.get("k") == b"one"  # "open": this store's copy is trusted
    with pytest.raises(ConflictError):
        store.put("k", b"two", if_generation=gen)
    assert store.get("k") == b"someone else's"  # the failed swap dropped the copy
    got = store.read("k")
    assert got is not None and store.put("k", b"three", if_generation=got.generation) == inner.stat("k")
    assert store.get("k") == b"three"


@pytest.mark.parametrize("kind", CACHES)
def test_read_passes_through_and_refreshes(kind: str, bucket: str, tmp_path: Path) -> None:
    inner = counted(bucket)
    behind(bucket, "k", b"v1")
    store = maker(kind, tmp_path)(inner)
    assert store.get("k") == b"v1"
    g2 = behind(bucket, "k", b"v2")
    assert store.get("k") == b"v1"
    inner.clear()
    assert store.read("k") == Versioned(b"v2", g2)  # the store's answer, not the cache's
    assert whole_fetches(inner.log) == ["k"]
    assert store.read("k", if_none_match=g2) == Versioned(None, g2)
    assert store.read("k", (0, 1)) == Versioned(b"v", g2)
    inner.clear()
    assert store.get("k") == b"v2" and inner.requests() == []  # refreshed by the read
    BUCKETS.bucket(bucket).pop("vol/k")
    assert store.read("k") is None
    assert store.get("k") is None


def test_lru_counts_entries_by_their_bytes() -> None:
    lru = ChunkLRU(100)
    lru.put("a", Cached(Versioned(b"x" * 60, "1"), 0.0))
    lru.put("b", Cached(Versioned(b"y" * 30, "2"), 0.0))
    assert lru.nbytes == 90
    lru.put("c", Cached(Versioned(b"z" * 30, "3"), 0.0))  # evicts the oldest
    assert lru.nbytes == 60 and lru.get("a") is None
    lru.put("big", Cached(Versioned(b"w" * 101, "4"), 0.0))  # larger than the cache: not kept
    assert lru.get("big") is None
    other = ChunkLRU(1000, sizeof=lambda v: 64)  # a custom sizeof (the shard index cache's) still rules
    other.put("i", object())
    assert other.nbytes == 64


def test_get_only_plugins_are_read_with_get_and_still_revalidated(tmp_path: Path) -> None:
    """A store written before generations (it overrides ``get`` of a store that has them) is
    filled through its ``get``; its generation is asked first, so later checks are conditional."""
    from cloudvolume_lite.stores.local import LocalStore

    gets: list[str] = []

    class GetCounting(LocalStore):
        def get(self, key, byte_range=None):  # noqa: ANN001, ANN201
            gets.append(key)
            return super().get(key, byte_range)

    root = tmp_path / "vol"
    root.mkdir()
    (root / "a").write_bytes(b"A")
    inner = GetCounting(StoreURL("file", "", str(root)))
    assert disk_over(inner, tmp_path / "c").get("a") == b"A" and gets == ["a"]
    copy = DiskCache(str(tmp_path / "c")).load(disk_over(inner, tmp_path / "c")._file("a"))
    assert copy is not None and copy.generation == inner.stat("a")
    time.sleep(0.01)
    later = disk_over(inner, tmp_path / "c")
    assert later.get("a") == b"A" and gets == ["a"]  # checked by a conditional read, not fetched again
    lru = lru_over(inner)
    assert lru.get("a") == b"A" and lru.get("a") == b"A" and gets == ["a", "a"]


# -- revalidations racing writes through the same store ----------------------------------------------
class HeldChecks(MemoryStore):
    """A memory store whose conditional reads compute their answer, then wait for ``release``:
    a slow revalidation that saw the object as it was when it started."""

    def __init__(self, url: StoreURL):
        super().__init__(url)
        self.checking = threading.Event()
        self.release = threading.Event()

    def read(self, key, byte_range=None, *, if_match=None, if_none_match=None):  # noqa: ANN001, ANN201
        got = super().read(key, byte_range, if_match=if_match, if_none_match=if_none_match)
        if if_none_match is not None and not self.release.is_set():
            self.checking.set()
            self.release.wait(10)
        return got

    def _with_url(self, url: StoreURL) -> "HeldChecks":
        return HeldChecks(url)


@pytest.mark.parametrize("kind", CACHES)
@pytest.mark.parametrize("how", ["get", "batch"])
@pytest.mark.parametrize("answer", ["unchanged", "changed"])
def test_a_revalidation_racing_a_write_does_not_resurrect_old_bytes(kind: str, how: str, answer: str,
                                                                    bucket: str, tmp_path: Path) -> None:
    inner = HeldChecks(parse_url(f"mem://{bucket}/vol"))
    inner.put("k", b"old")
    if kind == "lru":
        lru = ChunkLRU(1 << 20)
        store: Store = LRUStore(inner, lru, recheck=True)
        trusting: Store = LRUStore(inner, lru, recheck=False)  # serves whatever the cache holds
    else:
        cache = DiskCache(str(tmp_path / "c"))
        store = DiskCacheStore(inner, cache, recheck=True)
        trusting = DiskCacheStore(inner, cache, recheck=False)
    assert store.get("k") == b"old"  # cached, at the old generation
    if answer == "changed":
        behind(bucket, "k", b"another writer's")  # so the check brings bytes back
    got: list[object] = []

    def check() -> None:
        got.append(store.get("k") if how == "get" else dict(store.iter_get(["k"]))["k"])

    reader = threading.Thread(target=check, daemon=True)
    reader.start()
    try:
        assert inner.checking.wait(5)  # the revalidation has its answer in hand
        store.put("k", b"new")  # the write lands while the check is still under way
    finally:
        inner.release.set()
    reader.join(5)
    assert not reader.is_alive()
    assert got and got[0] in (b"old", b"another writer's")  # it began before the write
    assert trusting.get("k") == b"new"  # but the cache holds the write (or nothing), not the check
    assert store.get("k") == b"new"


# -- writes through the disk cache -------------------------------------------------------------------
def test_parallel_writes_through_the_disk_cache_keep_their_copies(bucket: str, tmp_path: Path) -> None:
    """Writes of different chunks at once (the writer's loops) do not outdate each other's copies."""
    inner = counted(bucket)
    store = disk_over(inner, tmp_path / "c")
    keys = [f"w{i}" for i in range(64)]
    rt = Runtime(8)
    try:
        rt.run(lambda k: store.put(k, k.encode() * 10), keys, 8)
    finally:
        rt.close()
    for k in keys:
        copy = store.cache.load(store._file(k))
        assert copy is not None and copy.data == k.encode() * 10 and copy.generation == inner.stat(k)
    inner.clear()
    assert dict(store.iter_get(keys)) == {k: k.encode() * 10 for k in keys} and inner.requests() == []


class HeldPuts(MemoryStore):
    """A memory store whose puts of ``held`` land, then wait for ``release``."""

    def __init__(self, url: StoreURL):
        super().__init__(url)
        self.held: bytes | None = None
        self.landed = threading.Event()
        self.release = threading.Event()

    def put(self, key, data, **kw):  # noqa: ANN001, ANN003, ANN201
        gen = super().put(key, data, **kw)
        if data == self.held:
            self.landed.set()
            self.release.wait(10)
        return gen

    def _with_url(self, url: StoreURL) -> "HeldPuts":
        return HeldPuts(url)


def test_an_overtaken_write_does_not_leave_its_copy(bucket: str, tmp_path: Path) -> None:
    """Two writes of one chunk through one store: the first lands first but keeps its copy
    last; its copy must not stay (the store holds the second)."""
    inner = HeldPuts(parse_url(f"mem://{bucket}/vol"))
    store = DiskCacheStore(inner, DiskCache(str(tmp_path / "c")))
    inner.held = b"first"
    first = threading.Thread(target=store.put, args=("k", b"first"), daemon=True)
    first.start()
    try:
        assert inner.landed.wait(5)
        store.put("k", b"second")
    finally:
        inner.release.set()
    first.join(5)
    assert not first.is_alive()
    assert inner.get("k") == b"second"
    copy = store.cache.load(store._file("k"))
    assert copy is None or copy.data == b"second"
    assert store.get("k") == b"second"


def test_forgotten_write_marks_make_old_fills_give_way(tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path / "c"))
    cache.WRITE_MARKS = 4
    since = cache.epoch
    for i in range(10):  # more paths written than marks remembered
        cache.end_write(str(tmp_path / "c" / f"p{i}"))
    path = str(tmp_path / "c" / "never-written")
    cache.keep(path, b"x", "g", time.time(), since=since)  # older than a forgotten mark: not kept
    assert cache.load(path) is None
    cache.keep(path, b"x", "g", time.time(), since=cache.epoch)
    assert cache.load(path).data == b"x"  # type: ignore[union-attr]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_wait_on_the_parents_disk_cache_lock(tmp_path: Path) -> None:
    cache = DiskCache(str(tmp_path / "c"), max_bytes=1 << 20)
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with cache._lock:
            held.set()
            done.wait(10)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert held.wait(5)
    pid = os.fork()
    if pid == 0:  # the child: the thread holding the lock does not exist here
        try:
            cache.keep(str(tmp_path / "c" / "k"), b"child", "g", time.time())
            os._exit(0 if cache.load(str(tmp_path / "c" / "k")).data == b"child" else 1)  # type: ignore[union-attr]
        except BaseException:  # noqa: BLE001
            os._exit(2)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished:
                assert os.waitstatus_to_exitcode(status) == 0
                break
            time.sleep(0.02)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on the parent's disk-cache lock")
    finally:
        done.set()
        holder.join(5)
