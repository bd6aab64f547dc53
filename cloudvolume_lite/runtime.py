"""The threads and limits a Volume owns: one Runtime, several lanes, one way to run work.

Lanes are thread pools kept apart by what waits on what, so that no lane can fill up with
work that waits for the same lane:

- ``io``: the loops of :meth:`Runtime.run` (each fetches, decodes and pastes chunks), up to
  ``parallel`` of them, since a loop may wait on the network;
- ``fetch``: requests that the streaming fetcher hands back to be done the careful way (retries,
  redirects), which a loop holding the stream waits for;
- ``cpu``: finishing work (decompression, hash checks) that the fetcher moves off its thread,
  ``decode_threads`` of them;
- ``tasks``: work that itself reads or writes through the Volume (a batch of regions, a group
  of chunks to downsample), which therefore must not sit in the ``io`` lane it waits on.

Pools are made on first use, so opening a Volume starts no thread; a forked child (a PyTorch
DataLoader worker, say) makes its own, since the parent's have no threads there.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
_DONE = object()
#: threads the fetcher may use for careful re-requests at once
FETCH_THREADS = 8


def usable_cpus() -> int:
    """The cores this process may run on: its CPU affinity where the OS has one (a syscall,
    ~0.5 us, against ~6 us for ``os.cpu_count``, which reads sysfs and ignores ``taskset``
    and cpusets), else ``os.cpu_count``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 2)


class Runtime:
    """Lanes of threads and the limits they run under, for one Volume (and its scale stores).

    ``parallel`` is the most requests in flight (and ``io`` loops); ``decode_threads`` the number
    of threads for CPU-bound work (default: one per core); ``progress`` whether long work shows
    bars (True, False, or None: on a terminal, for long work).
    """

    def __init__(self, parallel: int, decode_threads: int | None = None, progress: bool | None = False):
        self.parallel = max(1, int(parallel))
        self._decode_threads = None if decode_threads is None else max(1, int(decode_threads))
        self.progress = progress
        self._lock = threading.Lock()
        self._lanes: dict[str, ThreadPoolExecutor] = {}
        self._pid = os.getpid()

    @property
    def decode_threads(self) -> int:
        """Threads for CPU-bound work: as given, else one per core this process may run on
        (asked when first needed)."""
        if self._decode_threads is None:
            self._decode_threads = usable_cpus()
        return self._decode_threads

    def __getstate__(self) -> dict:
        return {"parallel": self.parallel, "decode_threads": self._decode_threads, "progress": self.progress}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["parallel"], state["decode_threads"], state["progress"])  # type: ignore[misc]

    def _sizes(self) -> dict[str, int]:
        return {"io": self.parallel, "fetch": min(FETCH_THREADS, self.parallel), "cpu": self.decode_threads,
                "tasks": self.parallel}  # threads are made as tasks come: callers bound their own number

    def lane(self, name: str) -> ThreadPoolExecutor:
        """The pool named ``name`` (``io``, ``fetch``, ``cpu`` or ``tasks``), made on first use."""
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's pools have no threads here
                self._lanes, self._pid = {}, os.getpid()
            pool = self._lanes.get(name)
            if pool is None:
                size = self._sizes()[name]  # KeyError: not a lane
                pool = self._lanes[name] = ThreadPoolExecutor(size, thread_name_prefix=f"cvl-{name}")
            return pool

    @property
    def workers_for_cpu(self) -> int:
        """Loops worth running over CPU-bound work: one per decode thread, at most ``parallel``."""
        return min(self.parallel, self.decode_threads)

    def run(self, fn: Callable[[T], object], items: Iterable[T], limit: int, n: int | None = None,
            lane: str = "io") -> None:
        """Apply ``fn`` to every item with at most ``limit`` loops pulling from one shared iterator.

        The calling thread is one of the loops, and never more loops start than there are items
        (``n``, or ``len(items)``, when known). Helpers that have not started when the work runs
        out are cancelled rather than waited for, so a full lane slows work down but cannot
        deadlock it. An iterator marked ``concurrent_next`` is advanced without a lock (its
        ``next`` is thread-safe and does its work outside its own lock); any other is advanced
        by one loop at a time. The first error stops every loop and is raised here.
        """
        if n is None:
            try:
                n = len(items)  # type: ignore[arg-type]
            except TypeError:
                n = None
        workers = max(1, min(int(limit), n if n is not None else int(limit)))
        it = iter(items)
        shared = getattr(items, "concurrent_next", False)
        lock = threading.Lock()
        errors: list[BaseException] = []

        def loop() -> None:
            while not errors:
                try:
                    if shared:
                        item = next(it, _DONE)
                    else:
                        with lock:  # the iterator may do work too (a streaming store fetches in next())
                            item = next(it, _DONE)
                    if item is _DONE:
                        return
                    fn(item)  # type: ignore[arg-type]
                except BaseException as e:  # noqa: BLE001 - re-raised in the caller below
                    errors.append(e)
                    return

        if workers <= 1:
            loop()
        else:
            pool = self.lane(lane)
            helpers: list[Future] = [pool.submit(loop) for _ in range(workers - 1)]
            loop()
            for f in helpers:
                f.cancel()  # not started yet: not needed any more
            wait([f for f in helpers if not f.cancelled()])
        if errors:
            raise errors[0]

    def close(self) -> None:
        """Stop the lanes (waiting for running work); they are made again on next use."""
        with self._lock:
            lanes, self._lanes = self._lanes, {}
            forked = self._pid != os.getpid()
        if not forked:
            for pool in lanes.values():
                pool.shutdown(wait=True)


__all__ = ["FETCH_THREADS", "Runtime", "usable_cpus"]
