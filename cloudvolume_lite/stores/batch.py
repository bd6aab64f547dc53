"""Batched reads: what ``Store.iter_get`` returns, an iterator that many threads can share.

A reader runs a few loops over one batch (:meth:`~cloudvolume_lite.runtime.Runtime.run`), each
taking ``(key, bytes | None)`` items and decoding them. How a batch is best advanced depends on
the store, so the batch says it:

- a :class:`Gets` batch (the default) does each ``get`` in the thread that asks for the next
  item, outside any lock (``concurrent_next``): a local read fetches, decodes and pastes a
  chunk in one thread, with no hand-over between threads;
- a :class:`Groups` batch fetches a group of keys at once (a shard's chunks in a few ranged
  reads) in the thread that reaches it and hands its items to every thread that asks;
- a plain generator (a streaming store keeping many requests in flight from one thread) is
  advanced by one loop at a time while the others decode.

``width`` says how many loops are worth running over the batch.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from typing import Callable, Iterable, Iterator, Sequence

Item = tuple[str, "bytes | None"]
_END = object()


class Gets:
    """``(key, get(key))`` for each key; ``next`` is thread-safe and fetches outside its lock."""

    concurrent_next = True

    def __init__(self, get: Callable[[str], "bytes | None"], keys: Iterable[str], width: int = 1):
        self._get = get
        self._keys = list(keys)
        self._i = 0
        self._lock = threading.Lock()
        self.width = max(1, int(width))

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> "Gets":
        return self

    def __next__(self) -> Item:
        with self._lock:
            i = self._i
            if i >= len(self._keys):
                raise StopIteration
            self._i = i + 1
        key = self._keys[i]
        return key, self._get(key)

    def close(self) -> None:
        with self._lock:
            self._i = len(self._keys)


class Groups:
    """Items of groups of keys, each group fetched at once by ``fetch(group) -> {key: bytes|None}``
    in the thread that reaches it; the group's items then go to whichever threads ask next.

    So the chunks of one shard are decoded on every loop over the batch, not only on the one
    that fetched them (a read within one shard used one core). A thread fetches while groups
    are left and fewer than ``ahead`` fetched items wait (default: ``width``), else it takes
    an item; with none waiting and none left to fetch, it waits for the fetches under way,
    so the batch ends for no thread while another may still hand out items. A failed fetch
    ends the batch (the error is raised in the thread that fetched). ``width`` is cut to the
    loops that can be busy: one per group fetched at once, and at least one per core to decode.
    """

    concurrent_next = True

    def __init__(self, fetch: Callable[[Sequence[str]], "dict[str, bytes | None]"], groups: Iterable[Sequence[str]],
                 width: int = 1, ahead: int | None = None):
        self._fetch = fetch
        self._groups = [list(g) for g in groups if len(g)]
        self._n = sum(len(g) for g in self._groups)
        self._i = 0
        self._ready: deque[Item] = deque()  # fetched items no thread has taken yet
        self._fetching = 0  # fetches under way
        self._closed = False
        self._cond = threading.Condition()
        self.width = max(1, min(int(width), max(len(self._groups), os.cpu_count() or 2)))
        self._ahead = self.width if ahead is None else max(1, int(ahead))

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> "Groups":
        return self

    def _take(self) -> "Item | int":
        """A waiting item, or the index of a group for this thread to fetch (under the lock)."""
        while True:
            if self._closed:
                raise StopIteration
            left = self._i < len(self._groups)
            if self._ready and (not left or len(self._ready) >= self._ahead):
                return self._ready.popleft()
            if left:
                self._i += 1
                self._fetching += 1
                return self._i - 1
            if self._ready:
                return self._ready.popleft()
            if not self._fetching:
                raise StopIteration
            self._cond.wait()

    def __next__(self) -> Item:
        with self._cond:
            got = self._take()
        if not isinstance(got, int):
            return got
        group = self._groups[got]
        fetched: list[Item] = []
        try:
            found = self._fetch(group)
            fetched = [(k, found.get(k)) for k in group]
        except BaseException:
            self.close()  # nothing more is handed out: the error ends the batch
            raise
        finally:
            with self._cond:
                self._fetching -= 1
                if not self._closed:
                    self._ready.extend(fetched[1:])
                self._cond.notify_all()
        return fetched[0]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._ready.clear()
            self._cond.notify_all()


class Chain:
    """Batches one after another (the cache's hits, its revalidations, what the store behind
    fetched), the items of the last one passed to ``see`` first.

    Each thread walks the parts on its own: a batch of groups (the sharded store's) still hands
    a thread the rest of the group it fetched after other threads have found that batch empty,
    so no thread may decide for the others that a part is done (an earlier version did, and
    lost those items: sharded chunks behind a cache read as never delivered).
    """

    def __init__(self, parts: Sequence[Iterator[tuple[str, object]]],
                 see: Callable[[str, object], None] | None = None):
        self._parts = list(parts)
        self._see = see
        self._mine = threading.local()  # this thread's part
        self.concurrent_next = all(getattr(p, "concurrent_next", False) for p in self._parts)
        # the widest part sets the width; but a part without one (a streaming generator) next
        # to parts of width 1 leaves the choice to the reader (one loop per decode thread)
        widths = [p.width for p in self._parts if hasattr(p, "width")]
        if max(widths, default=1) > 1 or len(widths) == len(self._parts):
            self.width = max([1] + widths)
        lens = [size_of(p) for p in self._parts]
        self._len = None if None in lens else sum(lens)  # type: ignore[arg-type]

    def __len__(self) -> int:
        if self._len is None:
            raise TypeError("this batch does not know its length")
        return self._len

    def __iter__(self) -> "Chain":
        return self

    def __next__(self) -> tuple[str, object]:
        at = getattr(self._mine, "at", 0)
        last = len(self._parts) - 1
        while at <= last:
            item = next(self._parts[at], _END)
            if item is not _END:
                if at == last and self._see is not None:
                    self._see(*item)  # type: ignore[misc]
                return item  # type: ignore[return-value]
            at += 1
            self._mine.at = at
        raise StopIteration

    def close(self) -> None:
        for p in self._parts:
            close = getattr(p, "close", None)
            if close is not None:
                close()


class Serial:
    """A batch that must be advanced by one thread at a time (a streaming generator), made
    safe to share: what Runtime.run would do with its own lock, here only around this part, so
    the cache's other parts (hits, revalidations) stay concurrent."""

    concurrent_next = True

    def __init__(self, inner: Iterator[tuple[str, object]]):
        self._inner = inner
        self._lock = threading.Lock()
        if hasattr(inner, "width"):  # none: the reader decides (see Chain)
            self.width = inner.width

    def __len__(self) -> int:
        return len(self._inner)  # type: ignore[arg-type]

    def __iter__(self) -> "Serial":
        return self

    def __next__(self) -> tuple[str, object]:
        with self._lock:
            return next(self._inner)

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


class Mapped:
    """A batch whose values pass through ``fn(value)`` (``Versioned`` to bytes, say) or
    ``keyed(key, value)``; it keeps the inner batch's width, length and way of being advanced."""

    def __init__(self, inner: Iterator[tuple[str, object]], fn: Callable[[object], object] | None,
                 keyed: Callable[[str, object], object] | None = None):
        self._inner = inner
        self._fn = fn
        self._keyed = keyed
        self.concurrent_next = getattr(inner, "concurrent_next", False)
        if hasattr(inner, "width"):  # none: the reader decides (see Chain)
            self.width = inner.width

    def __len__(self) -> int:
        return len(self._inner)  # type: ignore[arg-type]

    def __iter__(self) -> "Mapped":
        return self

    def __next__(self) -> Item:
        key, value = next(self._inner)
        if self._keyed is not None:
            return key, self._keyed(key, value)  # type: ignore[return-value]
        return key, self._fn(value)  # type: ignore[misc,return-value]

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


def data_only(batch: Iterator[tuple[str, object]]) -> Mapped:
    """``(key, Versioned | None)`` items as ``(key, bytes | None)``."""
    return Mapped(batch, lambda v: None if v is None else v.data)  # type: ignore[attr-defined]


def size_of(batch: object) -> int | None:
    """How many items a batch holds, or None when it cannot say (a generator)."""
    try:
        return len(batch)  # type: ignore[arg-type]
    except TypeError:
        return None


def items(pairs: Iterable[Item], width: int = 1) -> Gets:
    """A batch of items already at hand (cache hits, say)."""
    found = dict(pairs)
    return Gets(found.__getitem__, list(found), width)


__all__ = ["Chain", "Gets", "Groups", "Mapped", "Serial", "data_only", "items", "size_of"]
