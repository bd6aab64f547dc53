"""In-memory chunk cache: a byte-bounded LRU with request coalescing, as a store wrapper."""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from cachetools import LRUCache

from ..errors import ConflictError
from .base import ByteRange, Store, Update, Versioned, WrapperStore, iter_through_cache, whole_reader
from .batch import data_only
from .recheck import Recheck, RecheckSetting
from .url import StoreURL

if TYPE_CHECKING:
    from ..runtime import Runtime

_MISSING = object()


class ForkSafe:
    """A lock that a forked child does not inherit held: the parent's threads (a load in
    flight, a held lock) do not exist in the child, so its first use there starts afresh
    (``_forked``). One ``os.getpid()`` per use (a quarter of a microsecond) and no
    process-wide registry."""

    def _init_fork_safe(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _forked(self) -> None:
        """Reset what the parent's threads held; subclasses add their own state."""

    def _here(self) -> threading.Lock:
        if self._pid != os.getpid():
            self._lock, self._pid = threading.Lock(), os.getpid()
            self._forked()
        return self._lock


class ChunkLRU(ForkSafe):
    """Thread-safe LRU bounded in bytes (``sizeof`` of each value; ``len`` by default, which
    counts a :class:`Cached` entry as its bytes).

    Holds chunks as fetched: transport compression removed, codec encoding kept, so a
    compressed_segmentation chunk stays small. ``fetch`` coalesces: N threads asking for the
    same absent key cause one load, and the others wait for its result.
    """

    def __init__(self, max_bytes: int, sizeof: Callable[[Any], int] = len):
        self.max_bytes = int(max_bytes)
        self._sizeof = sizeof
        self._lru: LRUCache = LRUCache(maxsize=max(1, self.max_bytes), getsizeof=sizeof)
        self._loading: dict[str, Future] = {}
        # bumped by every discard: a fill that began before one may not land after it
        self._epoch = 0
        self.hits = 0  # served from memory
        self.misses = 0  # loaded
        self.coalesced = 0  # waited for another thread's load of the same key
        self._init_fork_safe()

    def _forked(self) -> None:
        """In a forked child: a load in flight in the parent (its future) never finishes here,
        so start with no loads (the cached values stay)."""
        self._loading = {}

    @property
    def epoch(self) -> int:
        """A mark to hand to :meth:`put` for data fetched from now on."""
        with self._here():
            return self._epoch

    @property
    def nbytes(self) -> int:
        with self._here():
            return int(self._lru.currsize)

    def __len__(self) -> int:
        with self._here():
            return len(self._lru)

    def get(self, key: Any) -> Any:
        with self._here():
            return self._lru.get(key)

    def lookup(self, key: Any) -> Any:
        """``get``, counted as a hit or a miss (what a batched read of the misses then loads)."""
        with self._here():
            value = self._lru.get(key)
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
            return value

    def put(self, key: Any, value: Any, since: int | None = None) -> None:
        """Keep ``value``; with ``since`` (an :attr:`epoch`), only if nothing was discarded
        since then: bytes fetched before a write must not outlive it."""
        if self._sizeof(value) > self.max_bytes:
            return  # larger than the whole cache: never worth evicting everything for it
        with self._here():
            if since is None or since == self._epoch:
                self._lru[key] = value

    def replace(self, key: Any, old: Any, new: Any, since: int) -> bool:
        """Put ``new`` in place of ``old`` (a revalidated copy), only if nothing was discarded
        since ``since`` and the key holds ``old`` still, or nothing: a copy that another thread
        replaced meanwhile is not overwritten with an older answer. Whether it was kept."""
        if self._sizeof(new) > self.max_bytes:
            return False
        with self._here():
            now = self._lru.get(key, _MISSING)
            if since != self._epoch or (now is not old and now is not _MISSING):
                return False
            self._lru[key] = new
            return True

    def drop(self, key: Any, old: Any = _MISSING) -> None:
        """Forget ``key`` (only if it still holds ``old``, when given): the object is gone from
        the store. Loads in flight may finish; an older revalidation may not put it back."""
        with self._here():
            if key in self._lru and (old is _MISSING or self._lru.get(key) is old):
                del self._lru[key]
                self._epoch += 1

    def discard(self, key: Any) -> None:
        """Forget ``key`` (it is being written), and any load of it already under way."""
        with self._here():
            self._lru.pop(key, None)
            self._loading.pop(key, None)  # later readers load afresh rather than join it
            self._epoch += 1

    def clear(self) -> None:
        with self._here():
            self._lru.clear()
            self._epoch += 1

    def fetch(self, key: Any, load: Callable[[], Any]) -> Any:
        """The cached value, or ``load()`` run once however many threads ask at the same time."""
        return self.fetch_hit(key, load)[0]

    def fetch_hit(self, key: Any, load: Callable[..., Any], *args: Any) -> tuple[Any, bool]:
        """:meth:`fetch` (of ``load(*args)``), and whether the value was found in the cache
        (False: it was loaded just now, by this thread or one it waited for)."""
        with self._here():
            value = self._lru.get(key)
            if value is not None:
                self.hits += 1
                return value, True
            fut = self._loading.get(key)
            owner = fut is None
            if owner:
                fut = Future()
                self._loading[key] = fut
                self.misses += 1
                since = self._epoch
            else:
                self.coalesced += 1
        if not owner:
            return fut.result(), False
        try:
            value = load(*args)
        except BaseException as e:
            fut.set_exception(e)
            raise
        else:
            if value is not None:
                self.put(key, value, since)
            fut.set_result(value)
            return value, False
        finally:
            with self._here():
                if self._loading.get(key) is fut:
                    del self._loading[key]


class Cached:
    """An LRU entry of :class:`LRUStore`: the object (bytes and generation) and when it was
    last fetched or checked against the store (``time.time()``). ``len`` is the bytes', so
    :class:`ChunkLRU`'s default ``sizeof`` counts what it holds."""

    __slots__ = ("value", "checked_at")

    def __init__(self, value: Versioned, checked_at: float):
        self.value = value
        self.checked_at = checked_at

    @property
    def data(self) -> bytes:
        return self.value.data  # type: ignore[return-value]

    @property
    def generation(self) -> str | None:
        return self.value.generation

    def __len__(self) -> int:
        return len(self.value.data)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"Cached({len(self)} bytes, generation={self.generation!r}, checked_at={self.checked_at})"


def as_recheck(recheck: "Recheck | RecheckSetting | None") -> Recheck:
    """``recheck`` as a :class:`Recheck` (``None``: ``"open"`` from now)."""
    if isinstance(recheck, Recheck):
        return recheck
    return Recheck("open" if recheck is None else recheck)


def trusted_from(recheck: Recheck) -> float | None:
    """A time from which copies are fit to serve whatever the clock says now (``"open"``: the
    opening; ``False``: always), so a hit costs a comparison, not ``time.time()``; None when
    only :meth:`Recheck.due` can tell."""
    if recheck.never:
        return float("-inf")
    if recheck.setting == "open":
        return recheck.opened
    return None


class LRUStore(WrapperStore):
    """Serves whole-object gets from a :class:`ChunkLRU`; ranges and writes pass through.

    Entries remember their generation and when they were last checked; a hit that ``recheck``
    says is due is revalidated first (``read(key, if_none_match=generation)``: nothing is sent
    if it is unchanged). ``read`` is the store's own answer (what a compare-and-swap starts
    from), and refreshes the entry.
    """

    def __init__(self, inner: Store, lru: ChunkLRU, namespace: str | None = None,
                 recheck: "Recheck | RecheckSetting | None" = None):
        super().__init__(inner)
        self.lru = lru
        self._ns = (namespace if namespace is not None else str(inner.url)) + "/"
        self.recheck = as_recheck(recheck)
        self._trusted_from = trusted_from(self.recheck)
        self._load_one = whole_reader(inner)
        # a due entry with a generation is checked by a conditional read, else fetched again,
        # from the store itself (through a cache below, not from its copy)
        self._conditional = inner.supports_generations
        self._refetch = inner.read if hasattr(inner, "cached_read") else self._load_one

    # -- entries --------------------------------------------------------------------------------
    def _now(self) -> float:
        """``time.time()``, never before the opening: under "open", nothing this store caches
        is ever due, even if the clock steps back."""
        t, opened = time.time(), self.recheck.opened
        return t if t > opened else opened

    def _fresh(self, entry: Cached) -> bool:
        t = self._trusted_from
        if t is not None and entry.checked_at >= t:
            return True
        return not self.recheck.due(entry.checked_at)

    def _load(self, key: str) -> Cached | None:
        started = self._now()
        got = self._load_one(key)
        return None if got is None else Cached(got, started)

    def _entry(self, key: str) -> Cached | None:
        """The entry for ``key``: cached and fit to serve, revalidated, or loaded."""
        entry, hit = self.lru.fetch_hit(self._ns + key, self._load, key)
        if hit:  # (the hot path: a comparison under "open" and False)
            t = self._trusted_from
            if (t is None or entry.checked_at < t) and self.recheck.due(entry.checked_at):
                return self._revalidated(key, entry)
        return entry  # type: ignore[no-any-return]

    def _revalidated(self, key: str, entry: Cached) -> Cached | None:
        """A due entry checked with the store: unchanged (the same bytes, checked now), changed
        (the new bytes) or gone (None). It is kept only if no write or discard came meanwhile."""
        k = self._ns + key
        since = self.lru.epoch
        started = self._now()
        if entry.generation is None or not self._conditional:
            got = self._refetch(key)  # no generation to ask about: fetch it again
        else:
            got = self.inner.read(key, if_none_match=entry.generation)
        if got is None:
            self.lru.drop(k, entry)
            return None
        new = Cached(entry.value if got.data is None else got, started)
        self.lru.replace(k, entry, new, since)
        return new

    def _revalidate(self, key: str, entry: object) -> Versioned | None:
        got = self._revalidated(key, entry)  # type: ignore[arg-type]
        return None if got is None else got.value

    def _lookup(self, key: str) -> tuple[Versioned, object] | None:
        entry = self.lru.lookup(self._ns + key)
        if entry is None:
            return None
        return entry.value, (None if self._fresh(entry) else entry)

    # -- reading --------------------------------------------------------------------------------
    def get(self, key: str, byte_range: ByteRange | None = None) -> bytes | None:
        if byte_range is not None:
            return self.inner.get(key, byte_range)
        entry = self._entry(key)
        return None if entry is None else entry.value.data

    def cached_read(self, key: str) -> Versioned | None:
        """The whole object as this cache serves it (``recheck`` applied), with its generation."""
        entry = self._entry(key)
        return None if entry is None else entry.value

    def read(self, key: str, byte_range: ByteRange | None = None, *, if_match: str | None = None,
             if_none_match: str | None = None) -> Versioned | None:
        """The inner store's answer, conditions and all (what a read-modify-write may trust);
        a whole read refreshes the entry."""
        if byte_range is not None:
            return self.inner.read(key, byte_range, if_match=if_match, if_none_match=if_none_match)
        k = self._ns + key
        since = self.lru.epoch
        started = self._now()
        try:
            got = self.inner.read(key, if_match=if_match, if_none_match=if_none_match)
        except ConflictError:
            self.lru.drop(k)  # not at the generation the caller knew: neither, perhaps, is ours
            raise
        if got is None:
            self.lru.drop(k)
        elif got.data is not None:
            self.lru.put(k, Cached(got, started), since)
        else:  # unchanged since if_none_match: our copy too, if it is of that generation
            entry = self.lru.get(k)
            if entry is not None and entry.generation == got.generation:
                self.lru.replace(k, entry, Cached(entry.value, started), since)
        return got

    def get_decoded_ranges(self, key: str, ranges: Sequence[ByteRange]) -> list[bytes] | None:
        """From memory when cached; a local inner store reads just the ranges (cheaper than
        filling the cache); a remote one is fetched whole once and kept."""
        entry = self.lru.get(self._ns + key)
        if entry is not None and self._fresh(entry):
            data: bytes | None = entry.data
        elif entry is None and not self.inner.latency_bound:
            return self.inner.get_decoded_ranges(key, ranges)
        else:
            data = self.get(key)
        return None if data is None else [data[a:b] for a, b in ranges]

    def iter_read(self, keys: Iterable[str], expected_bytes: int | None = None,
                  runtime: "Runtime | None" = None) -> Iterator[tuple[str, Versioned | None]]:
        """Cached chunks first, then the due ones revalidated at once, then the rest as the
        inner store delivers them (with their generations)."""
        since = self.lru.epoch  # what this batch fetches is kept only if nothing was written meanwhile
        started = self._now()
        def ask(entry: object) -> str | None:
            return entry.generation if self._conditional else None  # type: ignore[attr-defined]

        def settle(key: str, entry: object, got: Versioned | None) -> Versioned | None:
            """The store's answer to a check of a due entry (asked after ``since``)."""
            k = self._ns + key
            if got is None:
                self.lru.drop(k, entry)
                return None
            new = Cached(entry.value if got.data is None else got, started)  # type: ignore[attr-defined]
            self.lru.replace(k, entry, new, since)
            return new.value

        return iter_through_cache(keys, self._lookup, self._revalidate,
                                  lambda k, v: self.lru.put(self._ns + k, Cached(v, started), since),
                                  self.inner, expected_bytes, runtime, read=self.cached_read, ask=ask, settle=settle)

    def iter_get(self, keys: Iterable[str], expected_bytes: int | None = None,
                 runtime: "Runtime | None" = None) -> Iterator[tuple[str, bytes | None]]:
        """:meth:`iter_read` without the generations."""
        return data_only(self.iter_read(keys, expected_bytes, runtime))

    def exists(self, key: str) -> bool:
        entry = self.lru.get(self._ns + key)
        return (entry is not None and self._fresh(entry)) or self.inner.exists(key)

    # -- writing --------------------------------------------------------------------------------
    def put(self, key: str, data: bytes, *, content_type: str | None = None, content_encoding: str | None = None,
            if_generation: str | None = None) -> str | None:
        # before and after: a read that fetched the old bytes while the write ran cannot keep them
        k = self._ns + key
        cond = {} if if_generation is None else {"if_generation": if_generation}  # plug-ins of old signatures
        self.lru.discard(k)
        try:
            return self.inner.put(key, data, content_type=content_type, content_encoding=content_encoding, **cond)
        finally:
            self.lru.discard(k)

    def put_many(self, items: Mapping[str, bytes | None], *, content_type: str | None = None,
                 content_encoding: str | None = None) -> None:
        for key in items:
            self.lru.discard(self._ns + key)
        try:
            self.inner.put_many(items, content_type=content_type, content_encoding=content_encoding)
        finally:
            for key in items:  # after as well as before, as in put
                self.lru.discard(self._ns + key)

    def update_many(self, items: Mapping[str, "bytes | None | Update"], *, content_type: str | None = None,
                    content_encoding: str | None = None) -> None:
        """The inner store's read-modify-writes (it reads what is stored, not this cache's
        copies), the cached copies dropped before and after."""
        for key in items:
            self.lru.discard(self._ns + key)
        try:
            self.inner.update_many(items, content_type=content_type, content_encoding=content_encoding)
        finally:
            for key in items:
                self.lru.discard(self._ns + key)

    def delete(self, key: str) -> None:
        self.lru.discard(self._ns + key)
        try:
            self.inner.delete(key)
        finally:
            self.lru.discard(self._ns + key)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """The inner store's conditional create; the cached copy, if any, is dropped."""
        self.lru.discard(self._ns + key)
        try:
            return self.inner.create_exclusive(key, data)
        finally:
            self.lru.discard(self._ns + key)

    def _with_url(self, url: StoreURL) -> "LRUStore":
        return LRUStore(self.inner._with_url(url), self.lru, recheck=self.recheck)
