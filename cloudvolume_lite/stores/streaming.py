"""Whole-object gets streamed through a :class:`~.http_fetch.Fetcher`, with a slow lane: the
answers the fetcher cannot use are done again by the store's own careful ``get`` (retries,
redirects, SDK checks, error messages) on a few threads. Shared by the http and gs stores."""

from __future__ import annotations

import os
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Iterable, Iterator

from .http_fetch import Fetcher, Reply

#: what a ``finish`` function returns for an answer it cannot use: do that key the slow way
REDO = object()


class Later:
    """What ``finish`` returns for work too slow for the fetching thread (decompressing, say):
    ``fn()`` runs on a worker and returns the bytes, ``None`` or :data:`REDO`. While the
    fetching thread inflates one chunk, no other request moves: gzip'd raw chunks over HTTP
    at 20 ms went from 242 to 304 MB/s when their decompression moved off it."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], "bytes | None | object"]):
        self.fn = fn


class FastGets:
    """One store family's fetcher (``None`` turns streaming off, e.g. behind a proxy) and the
    threads of its slow lane. ``stats`` counts the keys streamed and the keys redone."""

    def __init__(self, fetcher: Fetcher | None, width: int):
        self.fetcher = fetcher
        self.width = width
        self.stats = {"streamed": 0, "redone": 0}
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

    def stream(self, requests: Iterable[tuple[str, str, dict[str, str]]],
               finish: Callable[[str, Reply], "bytes | None | object"], redo: Callable[[str], bytes | None],
               expected_bytes: int | None = None) -> Iterator[tuple[str, bytes | None]]:
        """``(key, data)`` for each ``(key, path, headers)`` request, as they finish.

        ``finish(key, reply)`` turns an answer into the object's bytes (``None``: absent),
        :data:`REDO` or a :class:`Later`; failures and REDOs go to ``redo(key)``, whose errors
        are raised here. ``finish`` must copy what it keeps: the reply's buffer is reused.
        """
        assert self.fetcher is not None
        pending: dict[Future, tuple[str, bool]] = {}  # future -> (key, is it a redo)

        def settle(key: str, value: object) -> Iterator[tuple[str, bytes | None]]:
            if isinstance(value, Later):
                pending[self._work_lane().submit(value.fn)] = (key, False)
            elif value is REDO:
                self._count("redone")
                pending[self._slow_lane().submit(redo, key)] = (key, True)
            else:
                self._count("streamed")
                yield key, value  # type: ignore[misc]

        def collect(done: Iterable[Future]) -> Iterator[tuple[str, bytes | None]]:
            for f in done:
                key, was_redo = pending.pop(f)
                if was_redo:
                    yield key, f.result()
                else:
                    yield from settle(key, f.result())

        try:
            for key, answer in self.fetcher.fetch(requests, expected_bytes):
                yield from settle(key, finish(key, answer) if isinstance(answer, Reply) else REDO)  # type: ignore[arg-type]
                yield from collect([f for f in pending if f.done()])
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                yield from collect(done)
        finally:
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


__all__ = ["REDO", "FastGets", "Later"]
