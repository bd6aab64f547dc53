"""Whole-object reads streamed through a :class:`~.http_fetch.Fetcher`, with a slow lane: the
answers the fetcher cannot use are done again by the store's own careful ``read`` (retries,
redirects, SDK checks, error messages) on a few threads. Shared by the network stores.

The values it passes on are the stores' (:class:`~.base.Versioned` from ``finish`` and the redo
function, or ``None`` for absent); it never looks inside them."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Callable, Iterator

from ..errors import StoreError
from .http_fetch import Failure, Fetcher, Reply

if TYPE_CHECKING:
    from .base import Versioned
    from ..runtime import Runtime

#: what a ``finish`` function returns for an answer it cannot use: do that key the slow way
REDO = object()
#: this many useless answers in a row, and none usable, turn streaming off for a store
GIVE_UP = 8
#: for this long (seconds); then it tries again
PAUSE = 60.0


class Later:
    """What ``finish`` returns for work too slow for the fetching thread (decompressing, say):
    ``fn()`` runs on a worker and returns the :class:`~.base.Versioned`, ``None`` or :data:`REDO`.
    While the fetching thread inflates one chunk, no other request moves."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], "Versioned | None | object"]):
        self.fn = fn


class FastGets:
    """One store family's fetcher (``None`` turns streaming off, e.g. behind a proxy) and the
    threads of its slow lane. ``stats`` counts the keys streamed and the keys redone."""

    def __init__(self, fetcher: Fetcher | None, width: int):
        self.fetcher = fetcher
        self.width = width
        self.stats = {"streamed": 0, "redone": 0}
        self.off_until = 0.0  # streaming pauses until then (time.monotonic())
        self._lock = threading.Lock()
        self._slow: ThreadPoolExecutor | None = None
        self._work: ThreadPoolExecutor | None = None

    def _slow_lane(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._slow is None:
                self._slow = ThreadPoolExecutor(max(1, min(8, self.width)), thread_name_prefix="cvl-redo")
            return self._slow

    def _work_lane(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._work is None:
                self._work = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="cvl-finish")
            return self._work

    def _count(self, what: str) -> None:
        with self._lock:
            self.stats[what] += 1

    def sample(self, first_byte_s: float) -> None:
        """A careful request's first-byte time, for the fetcher to judge the server's latency by
        (``Fetcher.wanted``) before its own first answers."""
        if self.fetcher is not None:
            self.fetcher.window.sample(first_byte_s)

    @property
    def usable(self) -> bool:
        """False without a fetcher, or for a while after its answers proved useless (``stream``)."""
        return self.fetcher is not None and time.monotonic() >= self.off_until

    def stream(self, keys: list[str], request: Callable[[str], tuple[str, dict[str, str]]],
               finish: Callable[[str, Reply], "Versioned | None | object"],
               redo: Callable[[str], Versioned | None],
               expected_bytes: int | None = None,
               redo_until: Callable[[str, float | None], Versioned | None] | None = None,
               describe: Callable[[str], str] | None = None,
               runtime: "Runtime | None" = None) -> Iterator[tuple[str, Versioned | None]]:
        """``(key, Versioned | None)`` for each key, as they finish; ``request(key)`` is its
        (path, headers).

        ``finish(key, reply)`` turns an answer into the object's :class:`~.base.Versioned` (its
        generation from the reply's headers; ``None``: absent),
        :data:`REDO` or a :class:`Later`; failures and REDOs go to ``redo(key)``, whose errors
        are raised here. ``finish`` must copy what it keeps: the reply's buffer is reused.
        With a ``runtime``, the careful re-requests run on its ``fetch`` lane and the finishing
        work on its ``cpu`` lane (else on lanes of this object's own); while the answers waiting
        for that work pass the fetcher's ``max_bytes``, no more are taken in (they wait in the
        kernel). ``redo_until(key, until)``, when given, is used instead of ``redo`` and told when
        the key's time (the fetcher's ``deadline``, counted from its first try) runs out. A key
        that ran out of time on the fetcher is a :class:`StoreError` naming ``describe(key)``.

        If the first :data:`GIVE_UP` answers are all failures or REDOs (a proxy that refuses us,
        an endpoint in another region, credentials the fetcher cannot use), the rest of the keys
        go straight to ``redo`` and this store stops streaming for :data:`PAUSE` seconds: every key
        would otherwise cost a wasted round trip first.
        """
        assert self.fetcher is not None
        pending: dict[Future, tuple[str, bool]] = {}  # future -> (key, is it a redo)
        # futures as they finish: taking them costs the same however many are pending (asking
        # each pending one whether it is done, or wait() on all, cost time in their number,
        # and a fast network leaves hundreds of chunks pending for the decoders)
        finished: SimpleQueue[Future] = SimpleQueue()
        later = [0]  # bytes of the answers whose Laters are pending
        held: dict[Future, int] = {}  # a pending Later -> the bytes of its answer
        answered: set[str] = set()
        tally = [0, 0]  # this call's keys streamed, redone
        deadline = self.fetcher.deadline
        sent: dict[str, float] = {}  # key -> when its first try went out
        budget = self.fetcher.max_bytes

        def ask(key: str) -> tuple[str, str, dict[str, str]]:
            sent[key] = time.monotonic()
            return (key, *request(key))

        slow = (lambda: runtime.lane("fetch")) if runtime is not None else self._slow_lane
        work = (lambda: runtime.lane("cpu")) if runtime is not None else self._work_lane

        def again(key: str) -> Future:
            if redo_until is None:
                return slow().submit(redo, key)
            until = None if deadline is None else sent.get(key, time.monotonic()) + deadline
            return slow().submit(redo_until, key, until)

        def track(f: Future, key: str, was_redo: bool) -> None:
            pending[f] = (key, was_redo)
            f.add_done_callback(finished.put)

        def settle(key: str, value: object, size: int = 0) -> Iterator[tuple[str, Versioned | None]]:
            if isinstance(value, Later):
                f = work().submit(value.fn)
                later[0] += size
                held[f] = size
                track(f, key, False)
            elif value is REDO:
                self._count("redone")
                tally[1] += 1
                track(again(key), key, True)
            else:
                self._count("streamed")
                tally[0] += 1
                yield key, value  # type: ignore[misc]

        def collect(block: bool) -> Iterator[tuple[str, Versioned | None]]:
            """What has finished (``block``: wait for one first)."""
            while pending:
                try:
                    f = finished.get() if block else finished.get_nowait()
                except Empty:
                    return
                block = False
                key, was_redo = pending.pop(f)
                if was_redo:
                    yield key, f.result()
                else:
                    later[0] -= held.pop(f, 0)
                    yield from settle(key, f.result())

        fetch = self.fetcher.fetch((ask(k) for k in keys), expected_bytes)
        try:
            for key, answer in fetch:
                answered.add(key)  # type: ignore[arg-type]
                if isinstance(answer, Failure) and answer.final:
                    name = describe(key) if describe is not None else key  # type: ignore[arg-type]
                    raise StoreError(f"GET {name} failed: {answer.reason}; the server sends too slowly: try again "
                                     "later, or allow more time with Volume(..., timeout=SECONDS)")
                if isinstance(answer, Reply):
                    yield from settle(key, finish(key, answer), len(answer.body))  # type: ignore[arg-type]
                else:
                    yield from settle(key, REDO)  # type: ignore[arg-type]
                if tally[1] >= GIVE_UP and not tally[0]:
                    self.off_until = time.monotonic() + PAUSE
                    fetch.close()
                    for k in keys:
                        if k not in answered:
                            yield from settle(k, REDO)
                    break
                yield from collect(False)
                # the decoders are far behind: the answers wait in the kernel, not in memory
                while later[0] > budget:
                    yield from collect(True)
            while pending:
                yield from collect(True)
        finally:
            fetch.close()
            for f in pending:
                f.cancel()

    def close(self) -> None:
        if self.fetcher is not None:
            self.fetcher.close()
        with self._lock:
            lanes, self._slow, self._work = (self._slow, self._work), None, None
        for lane in lanes:
            if lane is not None:
                lane.shutdown(wait=False, cancel_futures=True)


__all__ = ["GIVE_UP", "PAUSE", "REDO", "FastGets", "Later"]
