"""Whole-object gets streamed through a :class:`~.http_fetch.Fetcher`, with a slow lane: the
answers the fetcher cannot use are done again by the store's own careful ``get`` (retries,
redirects, SDK checks, error messages) on a few threads. Shared by the http and gs stores."""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Iterable, Iterator

from .http_fetch import Fetcher, Reply

#: what a ``finish`` function returns for an answer it cannot use: do that key the slow way
REDO = object()


class FastGets:
    """One store family's fetcher (``None`` turns streaming off, e.g. behind a proxy) and the
    threads of its slow lane. ``stats`` counts the keys streamed and the keys redone."""

    def __init__(self, fetcher: Fetcher | None, width: int):
        self.fetcher = fetcher
        self.width = width
        self.stats = {"streamed": 0, "redone": 0}
        self._lock = threading.Lock()
        self._slow: ThreadPoolExecutor | None = None

    def _slow_lane(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._slow is None:
                self._slow = ThreadPoolExecutor(max(1, min(8, self.width)), thread_name_prefix="cvl-redo")
            return self._slow

    def _count(self, what: str) -> None:
        with self._lock:
            self.stats[what] += 1

    def stream(self, requests: Iterable[tuple[str, str, dict[str, str]]],
               finish: Callable[[str, Reply], "bytes | None | object"], redo: Callable[[str], bytes | None],
               expected_bytes: int | None = None) -> Iterator[tuple[str, bytes | None]]:
        """``(key, data)`` for each ``(key, path, headers)`` request, as they finish.

        ``finish(key, reply)`` turns an answer into the object's bytes (``None``: absent) or
        :data:`REDO`; failures and REDOs go to ``redo(key)``, whose errors are raised here.
        ``finish`` must copy what it keeps: the reply's buffer is reused afterwards.
        """
        assert self.fetcher is not None
        slow: dict[Future, str] = {}
        try:
            for key, answer in self.fetcher.fetch(requests, expected_bytes):
                value = finish(key, answer) if isinstance(answer, Reply) else REDO  # type: ignore[arg-type]
                if value is REDO:
                    self._count("redone")
                    slow[self._slow_lane().submit(redo, key)] = key  # type: ignore[index]
                else:
                    self._count("streamed")
                    yield key, value  # type: ignore[misc]
                for f in [f for f in slow if f.done()]:
                    yield slow.pop(f), f.result()
            while slow:
                done, _ = wait(slow, return_when=FIRST_COMPLETED)
                for f in done:
                    yield slow.pop(f), f.result()
        finally:
            for f in slow:
                f.cancel()

    def close(self) -> None:
        if self.fetcher is not None:
            self.fetcher.close()
        with self._lock:
            slow, self._slow = self._slow, None
        if slow is not None:
            slow.shutdown(wait=False, cancel_futures=True)


__all__ = ["REDO", "FastGets"]
