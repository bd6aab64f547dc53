"""The store contract: what every :class:`~cloudvolume_lite.stores.base.Store` promises.

Subclass :class:`StoreContract` in a pytest module and supply the hooks; pytest then runs every
``test_*`` method against your store. The hooks that seed and inspect data must go *around* the
store under test (its backend's own client, the files on disk, the bucket dict), so that a
store that writes and reads back its own mistakes cannot pass.

What a store can do is read from its capability properties (``supports_writes``,
``supports_listing``, ``supports_conditional_create``); what the contract cannot ask the store
(whether keys are paths, whether ranges and transport compression apply, whether it is a cache
that may serve stale data) are class attributes a subclass sets.

This module imports pytest; ``import cloudvolume_lite`` never imports it.
"""

from __future__ import annotations

import gzip
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import pytest

from ..errors import ConflictError, RequestError, UnsupportedEncodingError
from ..stores.base import ABSENT, Store, Versioned

__all__ = ["StoreContract", "payload"]

#: keys that try to leave a store's root; every store refuses them with RequestError
ESCAPING_KEYS = ("../x", "a/../../x", "/abs", "a\\b", "..")


def payload(n: int = 10_000, seed: int = 0) -> bytes:
    """``n`` incompressible-ish bytes (deterministic in ``seed``), so off-by-one slices show."""
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


class StoreContract:
    """Contract tests for a :class:`Store`. Subclasses implement the hooks below.

    Hooks: :meth:`make_store` (a fresh, empty store for one test), :meth:`seed` and
    :meth:`stored` (write and read *bypassing the store under test*); optionally
    :meth:`stored_encoding`, :meth:`key` and :meth:`capability`. A subclass that needs pytest
    fixtures to build its store takes them in an ``autouse`` fixture of its own and keeps what
    it needs on ``self`` (pytest makes one instance per test).
    """

    #: keys are ``/``-separated paths: list prefixes, nested keys and ``child("a").get("k") ==
    #: get("a/k")`` make sense. False for stores of a fixed key space (a sharded scale's chunk
    #: names); the contract then names its keys through :meth:`key`.
    hierarchical_keys: bool = True
    #: ``get(key, (start, end))`` and ``get_ranges`` work; when False they raise RequestError
    byte_ranges: bool = True
    #: ``put(..., content_encoding="gzip")`` keeps the object compressed at rest (object
    #: metadata, a ``.gz`` sibling): whole gets undo it, ranged gets see the stored bytes
    transport_compression: bool = True
    #: a change made behind the store's back (through :meth:`seed`) is seen by the next get.
    #: False for caches, which may serve what they hold until it is written through them or
    #: evicted; writes *through* the store are always visible.
    sees_external_writes: bool = True
    #: size of the object the ``get_ranges`` test reads from
    large_object_bytes: int = 2_000_000

    # -- hooks -------------------------------------------------------------------------------------
    def make_store(self) -> Store:
        """A new store, empty, rooted where :meth:`seed` and :meth:`stored` can reach."""
        raise NotImplementedError

    def seed(self, store: Store, key: str, data: bytes, content_encoding: str | None = None) -> None:
        """Put ``data`` at ``key`` of ``store`` without using ``store`` (``content_encoding``:
        the bytes are already compressed so, stored the way the backend marks that)."""
        raise NotImplementedError

    def stored(self, store: Store, key: str) -> bytes | None:
        """The bytes at rest at ``key`` of ``store`` (still transport-compressed), read without
        using ``store``; None if absent."""
        raise NotImplementedError

    def stored_encoding(self, store: Store, key: str) -> str | None:
        """The transport encoding ``key`` is kept in at rest (None: plain). Optional: the
        checks that need it are skipped when a subclass does not implement it."""
        raise NotImplementedError

    def key(self, name: str) -> str:
        """The store key the contract calls ``name`` (identity for path-keyed stores)."""
        return name

    def capability(self, store: Store, name: str) -> bool:
        """Whether ``store`` declares capability ``name`` (its property, with the Store defaults)."""
        if name == "supports_conditional_create":
            default = type(store).create_exclusive is not Store.create_exclusive
        else:
            default = True
        return bool(getattr(store, name, default))

    # -- fixtures and helpers ----------------------------------------------------------------------
    @pytest.fixture
    def store(self) -> Iterator[Store]:
        """The store under test (``make_store``), closed afterwards."""
        s = self.make_store()
        yield s
        s.close()

    def _writable(self, store: Store) -> bool:
        return self.capability(store, "supports_writes")

    def _require_writes(self, store: Store) -> None:
        if not self._writable(store):
            pytest.skip(f"{type(store).__name__} is read-only (supports_writes is False)")

    def _stored_encoding(self, store: Store, key: str) -> str | None:
        try:
            return self.stored_encoding(store, key)
        except NotImplementedError:
            pytest.skip("stored_encoding is not implemented for this backend")

    # -- capabilities ------------------------------------------------------------------------------
    def test_capabilities_are_booleans(self, store: Store) -> None:
        for name in ("supports_writes", "supports_listing", "supports_conditional_create", "supports_generations",
                     "supports_conditional_writes"):
            assert isinstance(getattr(store, name, True), bool), name

    # -- reading -----------------------------------------------------------------------------------
    def test_get_absent_is_none(self, store: Store) -> None:
        k = self.key
        assert store.get(k("nope")) is None
        assert store.get(k("a/b/nope")) is None
        assert not store.exists(k("nope"))
        if self.byte_ranges:
            assert store.get(k("nope"), (0, 4)) is None
            assert store.get(k("nope"), (3, 3)) is None

    def test_get_seeded_is_bytes(self, store: Store) -> None:
        k = self.key
        data = payload()
        self.seed(store, k("a/b"), data)
        self.seed(store, k("empty"), b"")
        got = store.get(k("a/b"))
        assert isinstance(got, bytes) and got == data
        assert store.get(k("empty")) == b""

    def test_get_returns_bytes(self, store: Store) -> None:
        """``bytes``, never a mutable ``bytearray`` a caller (or a cache) could change in place,
        whether or not the object was transport-compressed."""
        k = self.key
        text = b"precomputed " * 500
        self.seed(store, k("plain"), b"plain")
        self.seed(store, k("gz"), gzip.compress(text, mtime=0), content_encoding="gzip")
        for key, want in ((k("plain"), b"plain"), (k("gz"), text)):
            got = store.get(key)
            assert type(got) is bytes and got == want, (key, type(got))
        for key, data in store.iter_get([k("plain"), k("gz")]):
            assert type(data) is bytes, (key, type(data))

    def test_exists(self, store: Store) -> None:
        k = self.key
        self.seed(store, k("a/b"), b"x")
        self.seed(store, k("empty"), b"")
        assert store.exists(k("a/b")) and store.exists(k("empty"))
        assert not store.exists(k("a/nope"))
        if self.hierarchical_keys:
            assert not store.exists("a")  # a "directory" is not an object

    def test_byte_range(self, store: Store) -> None:
        k = self.key
        data = payload()
        self.seed(store, k("k"), data)
        if not self.byte_ranges:
            with pytest.raises(RequestError):
                store.get(k("k"), (0, 10))
            with pytest.raises(RequestError):
                store.get_ranges(k("k"), [(0, 10)])
            return
        n = len(data)
        assert store.get(k("k"), (10, 20)) == data[10:20]
        assert store.get(k("k"), (0, n)) == data
        assert store.get(k("k"), (n - 5, n + 100)) == data[n - 5 :]  # past the end: like slicing
        assert store.get(k("k"), (n + 10, n + 20)) == b""
        assert store.get(k("k"), (5, 5)) == b""
        assert store.get(k("k"), (0, 1)) == data[:1]

    def test_get_ranges(self, store: Store) -> None:
        if not self.byte_ranges:
            pytest.skip("no byte ranges here (test_byte_range checks they are refused)")
        k = self.key
        n = self.large_object_bytes
        data = payload(n)
        self.seed(store, k("shard"), data)
        ranges = [(100, 200), (0, 50), (150, 400), (n - 500_000, n - 499_990), (n - 10, n + 100), (7, 7)]
        assert store.get_ranges(k("shard"), ranges) == [data[s:e] for s, e in ranges]
        assert store.get_ranges(k("shard"), []) == []
        assert store.get_ranges(k("missing"), [(0, 10), (20, 30)]) == [None, None]

    def test_get_many(self, store: Store) -> None:
        items = {self.key(f"m/{i}"): payload(500 + i, seed=i) for i in range(6)}
        for key, v in items.items():
            self.seed(store, key, v)
        want = {**items, self.key("m/missing"): None}
        assert store.get_many(list(want)) == want
        with ThreadPoolExecutor(4) as ex:
            assert store.get_many(list(want), executor=ex) == want

    def test_iter_get(self, store: Store) -> None:
        items = {self.key(f"it/{i}"): payload(3000 + 7 * i, seed=i) for i in range(20)}
        for key, v in items.items():
            self.seed(store, key, v)
        text = b"precomputed " * 3000
        gz_key, missing = self.key("it/gz"), self.key("it/missing")
        self.seed(store, gz_key, gzip.compress(text, mtime=0), content_encoding="gzip")
        want = {**items, gz_key: text, missing: None}
        for expected in (None, 3000):
            got: dict[str, bytes | None] = {}
            for key, data in store.iter_get(list(want), expected):
                assert key not in got  # each key once, in any order
                got[key] = None if data is None else bytes(data)
            assert got == want
        assert dict(store.iter_get([])) == {}

    def test_get_decoded_ranges(self, store: Store) -> None:
        k = self.key
        data = payload(5000)
        self.seed(store, k("plain"), data)
        text = b"precomputed " * 500
        self.seed(store, k("gz"), gzip.compress(text, mtime=0), content_encoding="gzip")
        ranges = [(0, 5), (10, 20), (4990, 5000)]
        assert store.get_decoded_ranges(k("plain"), ranges) == [data[a:b] for a, b in ranges]
        assert store.get_decoded_ranges(k("gz"), ranges) == [text[a:b] for a, b in ranges]
        assert store.get_decoded_ranges(k("missing"), ranges) is None

    def test_transport_compression_is_undone(self, store: Store) -> None:
        """Seeded gzip'd (Content-Encoding, ``.gz`` sibling): whole reads undo it, ranged reads
        see the stored bytes, never transcoded."""
        if not self.transport_compression:
            pytest.skip("this store keeps no transport compression")
        k = self.key
        data = b"precomputed " * 5000
        gz = gzip.compress(data, mtime=0)
        self.seed(store, k("chunk"), gz, content_encoding="gzip")
        assert store.get(k("chunk")) == data
        assert store.get_many([k("chunk")]) == {k("chunk"): data}
        assert store.exists(k("chunk"))
        if self.byte_ranges:
            assert store.get(k("chunk"), (0, 10)) == gz[:10]
            assert store.get(k("chunk"), (20, 50)) == gz[20:50]

    def test_sees_writes_behind_its_back(self, store: Store) -> None:
        if not self.sees_external_writes:
            pytest.skip("a cache: data changed behind its back may be served stale (documented)")
        k = self.key
        assert store.get(k("late")) is None
        self.seed(store, k("late"), b"arrived")
        assert store.get(k("late")) == b"arrived" and store.exists(k("late"))
        self.seed(store, k("v"), payload(700, seed=1))
        assert store.get(k("v")) == payload(700, seed=1)
        self.seed(store, k("v"), payload(900, seed=2))  # a different size moves what follows it
        assert store.get(k("v")) == payload(900, seed=2)
        assert store.get(k("late")) == b"arrived"

    # -- writing -----------------------------------------------------------------------------------
    def test_read_only_refuses_writes(self, store: Store) -> None:
        if self._writable(store):
            pytest.skip("the store is writable")
        with pytest.raises(UnsupportedEncodingError, match="read-only"):
            store.put(self.key("c"), b"new")
        with pytest.raises(UnsupportedEncodingError, match="read-only"):
            store.delete(self.key("x"))
        with pytest.raises(UnsupportedEncodingError, match="read-only"):
            store.put_many({self.key("c"): b"new"})

    def test_put_get_round_trip(self, store: Store) -> None:
        self._require_writes(store)
        k = self.key
        data = payload()
        store.put(k("a/b"), data)
        store.put(k("empty"), b"")
        assert store.get(k("a/b")) == data and store.get(k("empty")) == b""
        assert self.stored(store, k("a/b")) == data  # it really landed in the backend
        assert self.stored(store, k("empty")) == b""
        assert store.exists(k("a/b")) and store.exists(k("empty"))

    def test_overwrite(self, store: Store) -> None:
        self._require_writes(store)
        k = self.key
        store.put(k("o"), b"first")
        assert store.get(k("o")) == b"first"  # warms any cache
        store.put(k("o"), b"second, longer")
        assert store.get(k("o")) == b"second, longer"
        assert self.stored(store, k("o")) == b"second, longer"

    def test_put_with_content_encoding(self, store: Store) -> None:
        self._require_writes(store)
        k = self.key
        data = b"precomputed " * 2000
        gz = gzip.compress(data, mtime=0)
        store.put(k("c"), gz, content_encoding="gzip")
        assert store.get(k("c")) == data
        assert store.get_many([k("c")]) == {k("c"): data}
        if not self.transport_compression:
            assert self.stored(store, k("c")) == data  # decompressed on the way in
            return
        assert self.stored(store, k("c")) == gz
        if self.byte_ranges:
            assert store.get(k("c"), (0, 10)) == gz[:10]
        assert self._stored_encoding(store, k("c")) == "gzip"

    def test_put_overwrites_encoding(self, store: Store) -> None:
        self._require_writes(store)
        k = self.key
        store.put(k("c"), gzip.compress(b"old" * 100), content_encoding="gzip")
        assert store.get(k("c")) == b"old" * 100
        store.put(k("c"), b"new")
        assert store.get(k("c")) == b"new"
        assert self.stored(store, k("c")) == b"new"
        if self.byte_ranges:
            assert store.get(k("c"), (0, 3)) == b"new"
        if self.transport_compression:
            assert self._stored_encoding(store, k("c")) is None

    def test_delete(self, store: Store) -> None:
        self._require_writes(store)
        k = self.key
        store.put(k("x"), b"1")
        store.put(k("gz"), gzip.compress(b"2"), content_encoding="gzip")
        assert store.get(k("x")) == b"1" and store.get(k("gz")) == b"2"  # warms any cache
        store.delete(k("x"))
        store.delete(k("gz"))
        store.delete(k("never-there"))  # absent is fine
        assert store.get(k("x")) is None and store.get(k("gz")) is None
        assert not store.exists(k("x")) and not store.exists(k("gz"))
        assert self.stored(store, k("x")) is None and self.stored(store, k("gz")) is None

    def test_put_many(self, store: Store) -> None:
        self._require_writes(store)
        k = self.key
        self.seed(store, k("pm/gone"), b"old")
        store.put_many({k("pm/a"): b"A", k("pm/b"): payload(300), k("pm/gone"): None})
        assert store.get(k("pm/a")) == b"A" and store.get(k("pm/b")) == payload(300)
        assert store.get(k("pm/gone")) is None and self.stored(store, k("pm/gone")) is None
        assert self.stored(store, k("pm/a")) == b"A"

    def test_writes_through_are_visible(self, store: Store) -> None:
        """Whatever a store caches, what is written through it is what it reads next."""
        self._require_writes(store)
        k = self.key
        assert store.get(k("w")) is None
        store.put(k("w"), b"one")
        assert store.get(k("w")) == b"one" and store.exists(k("w"))
        store.put_many({k("w"): b"two"})
        assert store.get(k("w")) == b"two"
        assert dict(store.iter_get([k("w")])) == {k("w"): b"two"}
        store.delete(k("w"))
        assert store.get(k("w")) is None and not store.exists(k("w"))
        assert dict(store.iter_get([k("w")])) == {k("w"): None}

    def test_create_exclusive(self, store: Store) -> None:
        k = self.key
        if not self.capability(store, "supports_conditional_create"):
            with pytest.raises(UnsupportedEncodingError):
                store.create_exclusive(k("lock"), b"me")
            return
        assert store.create_exclusive(k("lock"), b"me") is True
        assert store.create_exclusive(k("lock"), b"you") is False  # the second one loses
        assert store.get(k("lock")) == b"me" and self.stored(store, k("lock")) == b"me"

    # -- generations -------------------------------------------------------------------------------
    def _require_generations(self, store: Store) -> None:
        if not self.capability(store, "supports_generations"):
            pytest.skip(f"{type(store).__name__} has no generations (supports_generations is False)")

    def _require_cas(self, store: Store) -> None:
        if not (self._writable(store) and self.capability(store, "supports_conditional_writes")):
            pytest.skip(f"{type(store).__name__} cannot write conditionally (supports_conditional_writes is False)")

    def test_read_reports_the_generation(self, store: Store) -> None:
        """A read names the generation its bytes came from; it changes when the object does."""
        self._require_generations(store)
        k = self.key
        assert store.read(k("gen")) is None and store.stat(k("gen")) is None
        self.seed(store, k("gen"), payload(600, seed=3))
        first = store.read(k("gen"))
        assert isinstance(first, Versioned) and first.data == payload(600, seed=3)
        assert isinstance(first.generation, str) and first.generation
        assert store.read(k("gen")).generation == first.generation == store.stat(k("gen"))  # type: ignore[union-attr]
        self.seed(store, k("gen"), payload(600, seed=4))  # same size, other bytes
        second = store.read(k("gen"))
        assert second is not None and second.data == payload(600, seed=4)
        assert second.generation != first.generation and store.stat(k("gen")) == second.generation
        got = dict(store.iter_read([k("gen"), k("nope")]))
        assert got == {k("gen"): second, k("nope"): None}

    def test_ranged_read_reports_the_generation(self, store: Store) -> None:
        self._require_generations(store)
        if not self.byte_ranges:
            pytest.skip("no byte ranges here")
        k = self.key
        self.seed(store, k("rg"), payload(5000, seed=5))
        gen = store.stat(k("rg"))
        assert store.read(k("rg"), (10, 60)) == Versioned(payload(5000, seed=5)[10:60], gen)
        assert store.read(k("rg"), (100, 200), if_match=gen) == Versioned(payload(5000, seed=5)[100:200], gen)
        assert store.read(k("nope"), (0, 10)) is None

    def test_if_match_refuses_another_generation(self, store: Store) -> None:
        """Bytes read under ``if_match`` come from that generation or not at all: a reader
        that located something in one version never reads another version's bytes."""
        self._require_generations(store)
        k = self.key
        self.seed(store, k("m"), payload(3000, seed=6))
        old = store.stat(k("m"))
        assert store.read(k("m"), if_match=old) == Versioned(payload(3000, seed=6), old)
        self.seed(store, k("m"), payload(3000, seed=7))
        with pytest.raises(ConflictError):
            store.read(k("m"), if_match=old)
        if self.byte_ranges:
            with pytest.raises(ConflictError):
                store.read(k("m"), (0, 100), if_match=old)
        if self._writable(store):
            store.delete(k("m"))
            with pytest.raises(ConflictError):
                store.read(k("m"), if_match=old)

    def test_if_none_match_revalidates(self, store: Store) -> None:
        """``if_none_match`` answers "unchanged" without the bytes, or the new bytes."""
        self._require_generations(store)
        k = self.key
        self.seed(store, k("n"), payload(2000, seed=8))
        gen = store.stat(k("n"))
        assert store.read(k("n"), if_none_match=gen) == Versioned(None, gen)
        self.seed(store, k("n"), payload(2000, seed=9))
        fresh = store.read(k("n"), if_none_match=gen)
        assert fresh is not None and fresh.data == payload(2000, seed=9) and fresh.generation != gen

    def test_put_returns_the_generation(self, store: Store) -> None:
        self._require_generations(store)
        self._require_writes(store)
        k = self.key
        gen = store.put(k("p"), b"written")
        assert gen is None or gen == store.stat(k("p"))
        assert store.read(k("p")).data == b"written"  # type: ignore[union-attr]

    def test_conditional_put(self, store: Store) -> None:
        """``if_generation`` is compare-and-swap: the write lands only on the generation named."""
        self._require_cas(store)
        k = self.key
        gen = store.put(k("c"), b"one", if_generation=ABSENT)
        with pytest.raises(ConflictError):
            store.put(k("c"), b"two", if_generation=ABSENT)  # it exists now
        assert self.stored(store, k("c")) == b"one"
        gen = store.stat(k("c"))
        new = store.put(k("c"), b"two", if_generation=gen)
        assert self.stored(store, k("c")) == b"two" and store.get(k("c")) == b"two"
        with pytest.raises(ConflictError):
            store.put(k("c"), b"three", if_generation=gen)  # that generation is gone
        assert self.stored(store, k("c")) == b"two"
        self.seed(store, k("c"), b"behind its back")
        with pytest.raises(ConflictError):
            store.put(k("c"), b"four", if_generation=new or store.stat(k("c")) + "x")  # type: ignore[operator]
        assert self.stored(store, k("c")) == b"behind its back"

    def test_compare_and_swap_loses_no_update(self, store: Store) -> None:
        """Threads incrementing one counter by read, modify, conditional write, retried on
        conflict: every increment is kept."""
        self._require_cas(store)
        k = self.key
        store.put(k("count"), b"0")
        threads, each = 4, 6

        def bump(_: int) -> int:
            conflicts = 0
            for _ in range(each):
                while True:
                    got = store.read(k("count"))
                    assert got is not None
                    try:
                        store.put(k("count"), str(int(got.data) + 1).encode(), if_generation=got.generation)  # type: ignore[arg-type]
                        break
                    except ConflictError:
                        conflicts += 1
            return conflicts

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(bump, range(threads)))
        assert int(self.stored(store, k("count"))) == threads * each  # type: ignore[arg-type]

    # -- listing -----------------------------------------------------------------------------------
    def test_list(self, store: Store) -> None:
        if not self.capability(store, "supports_listing"):
            with pytest.raises(UnsupportedEncodingError, match="list"):
                list(store.list())
            return
        if not self.hierarchical_keys:
            keys = [self.key(f"l/{i}") for i in range(5)]
            for key in keys:
                self.seed(store, key, b"x")
            assert sorted(store.list()) == sorted(keys)
            assert list(store.list(keys[0])) == [keys[0]]
            assert list(store.list("zzz")) == []
            return
        for key in ("a/1", "a/2", "b/1", "ab", "a/sub/3"):
            self.seed(store, key, b"x")
        self.seed(store, "g", gzip.compress(b"y"), content_encoding="gzip")
        assert sorted(store.list()) == ["a/1", "a/2", "a/sub/3", "ab", "b/1", "g"]
        assert sorted(store.list("a/")) == ["a/1", "a/2", "a/sub/3"]
        assert sorted(store.list("a")) == ["a/1", "a/2", "a/sub/3", "ab"]
        assert sorted(store.list("a/s")) == ["a/sub/3"]
        assert list(store.list("zzz")) == []

    def test_list_sees_writes(self, store: Store) -> None:
        if not (self.capability(store, "supports_listing") and self._writable(store)):
            pytest.skip("needs listing and writes")
        keys = sorted(self.key(f"lw/{i}") for i in range(3))
        for key in keys:
            store.put(key, b"x")
        assert sorted(store.list()) == keys
        store.delete(keys[0])
        assert sorted(store.list()) == keys[1:]

    # -- keys and children -------------------------------------------------------------------------
    def test_keys_may_not_escape_the_root(self, store: Store) -> None:
        for bad in ESCAPING_KEYS:
            with pytest.raises(RequestError):
                store.get(bad)
            with pytest.raises(RequestError):
                store.exists(bad)
            if self._writable(store):
                with pytest.raises(RequestError):
                    store.put(bad, b"1")
                with pytest.raises(RequestError):
                    store.delete(bad)

    def test_child_round_trip(self, store: Store) -> None:
        k = self.key
        child = store.child("sub")
        assert type(child) is type(store)
        self.seed(child, k("k"), b"in the child")
        assert child.get(k("k")) == b"in the child"
        assert store.get(k("k")) is None  # the child is rooted elsewhere
        if self._writable(child):
            child.put(k("w"), b"written")
            assert self.stored(child, k("w")) == b"written"
            assert self.stored(store, k("w")) is None

    def test_child_paths(self, store: Store) -> None:
        """``child`` joins paths (``..`` allowed there, unlike in keys): a volume's parent, its
        sibling, its scale directory."""
        if not self.hierarchical_keys:
            pytest.skip("keys are not paths here")
        parent = store.child("..")
        name = str(store.url).rstrip("/").rsplit("/", 1)[-1]
        self.seed(store, "scale/k", b"in the volume")
        self.seed(parent, "other/k", b"next to the volume")
        assert store.child("scale").get("k") == b"in the volume"
        assert parent.get(f"{name}/scale/k") == b"in the volume"
        sibling = store.child("../other")
        assert sibling.get("k") == b"next to the volume"
        assert str(sibling.url) == str(parent.url).rstrip("/") + "/other"
        assert type(sibling) is type(store)

    def test_close_then_use(self, store: Store) -> None:
        k = self.key
        self.seed(store, k("k"), b"v")
        child = store.child("sub")
        store.close()
        store.close()  # twice is fine
        assert store.get(k("k")) == b"v"  # a closed store reconnects on demand
        assert child.get(k("nope")) is None
