"""In-memory chunk cache: a byte-bounded LRU with request coalescing, as a store wrapper."""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
import threading
from concurrent.futures import Future
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from cachetools import LRUCache

from .base import ByteRange, Store, WrapperStore, iter_through_cache
from .url import StoreURL

if TYPE_CHECKING:
    from ..runtime import Runtime


class ChunkLRU:
    """Thread-safe LRU bounded in bytes (``sizeof`` of each value; ``len`` for bytes).

    Holds chunks as fetched: transport compression removed, codec encoding kept, so a
    compressed_segmentation chunk stays small. ``fetch`` coalesces: N threads asking for the
    same absent key cause one load, and the others wait for its result.
    """

    def __init__(self, max_bytes: int, sizeof: Callable[[Any], int] = len):
        self.max_bytes = int(max_bytes)
        self._sizeof = sizeof
        self._lru: LRUCache = LRUCache(maxsize=max(1, self.max_bytes), getsizeof=sizeof)
        self._lock = threading.Lock()
        self._loading: dict[str, Future] = {}
        # bumped by every discard: a fill that began before one may not land after it
        self._epoch = 0
        self._pid = os.getpid()
        self.hits = 0  # served from memory
        self.misses = 0  # loaded
        self.coalesced = 0  # waited for another thread's load of the same key

    def _here(self) -> threading.Lock:
        """The lock, after making sure this is not a forked child still holding the parent's
        state: a load in flight in the parent (its future, its held lock) never finishes here."""
        if self._pid != os.getpid():
            self._lock, self._loading, self._pid = threading.Lock(), {}, os.getpid()
        return self._lock

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
        with self._here():
            value = self._lru.get(key)
            if value is not None:
                self.hits += 1
                return value
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
            return fut.result()
        try:
            value = load()
        except BaseException as e:
            fut.set_exception(e)
            raise
        else:
            if value is not None:
                self.put(key, value, since)
            fut.set_result(value)
            return value
        finally:
            with self._here():
                if self._loading.get(key) is fut:
                    del self._loading[key]


class LRUStore(WrapperStore):
    """Serves whole-object gets from a :class:`ChunkLRU`; ranges and writes pass through."""

    def __init__(self, inner: Store, lru: ChunkLRU, namespace: str | None = None):
        super().__init__(inner)
        self.lru = lru
        self._ns = (namespace if namespace is not None else str(inner.url)) + "/"

    def get(self, key: str, byte_range: ByteRange | None = None) -> bytes | None:
        if byte_range is not None:
            return self.inner.get(key, byte_range)
        return self.lru.fetch(self._ns + key, lambda: self.inner.get(key))

    def put(self, key: str, data: bytes, *, content_type: str | None = None, content_encoding: str | None = None) -> None:
        # before and after: a read that fetched the old bytes while the write ran cannot keep them
        self.lru.discard(self._ns + key)
        self.inner.put(key, data, content_type=content_type, content_encoding=content_encoding)
        self.lru.discard(self._ns + key)

    def get_decoded_ranges(self, key: str, ranges: Sequence[ByteRange]) -> list[bytes] | None:
        """From memory when cached; a local inner store reads just the ranges (cheaper than
        filling the cache); a remote one is fetched whole once and kept."""
        data = self.lru.get(self._ns + key)
        if data is None and not self.inner.latency_bound:
            return self.inner.get_decoded_ranges(key, ranges)
        if data is None:
            data = self.get(key)
        return None if data is None else [data[a:b] for a, b in ranges]

    def iter_get(self, keys: Iterable[str], expected_bytes: int | None = None,
                 runtime: "Runtime | None" = None) -> Iterator[tuple[str, bytes | None]]:
        """Cached chunks first, then the rest as the inner store delivers them."""
        since = self.lru.epoch  # what this batch fetches is kept only if nothing was written meanwhile
        return iter_through_cache(keys, lambda k: self.lru.lookup(self._ns + k),
                                  lambda k, v: self.lru.put(self._ns + k, v, since),
                                  self.inner, expected_bytes, runtime, get=self.get)

    def put_many(self, items: Mapping[str, bytes | None], *, content_type: str | None = None,
                 content_encoding: str | None = None) -> None:
        for key in items:
            self.lru.discard(self._ns + key)
        self.inner.put_many(items, content_type=content_type, content_encoding=content_encoding)
        for key in items:  # after as well as before, as in put
            self.lru.discard(self._ns + key)

    def delete(self, key: str) -> None:
        self.lru.discard(self._ns + key)
        self.inner.delete(key)
        self.lru.discard(self._ns + key)

    def exists(self, key: str) -> bool:
        return self.lru.get(self._ns + key) is not None or self.inner.exists(key)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """The inner store's conditional create; the cached copy, if any, is dropped."""
        self.lru.discard(self._ns + key)
        return self.inner.create_exclusive(key, data)

    def _with_url(self, url: StoreURL) -> "LRUStore":
        return LRUStore(self.inner._with_url(url), self.lru)
