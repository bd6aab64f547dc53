"""A batched region loader for training: many same-sized cutouts, fetched ahead, in a fixed order."""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from .bbox import Bbox, Request
from .read import read
from .stores.lru import ChunkLRU, LRUStore
from .errors import RequestError

if TYPE_CHECKING:
    from .volume import Volume


class RegionLoader:
    """Iterates ``(B, sx, sy, sz, C)`` batches of the regions at ``locations`` (corner points).

    At most ``num_workers * prefetch_factor`` batches are in flight, so memory stays bounded.
    Chunks shared by nearby regions are fetched once: through the Volume's LRU when it has
    one, else through a loader-owned LRU of ``lru_bytes``. The order is the order of
    ``locations``, or a permutation fixed by ``seed`` when ``shuffle`` is set; a second pass
    with ``shuffle`` draws a new permutation from the same seeded stream.
    """

    def __init__(self, vol: "Volume", locations: Any, size: Sequence[int], *, batch_size: int = 1,
                 num_workers: int | None = None, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, prefetch_factor: int = 2, mip: int | None = None,
                 lru_bytes: int = 256 << 20):
        self.vol = vol
        self.mip = vol.mip if mip is None else mip
        self.locations = _as_locations(locations)
        self.size = tuple(int(s) for s in size)
        if len(self.size) != 3 or any(s < 1 for s in self.size):
            raise RequestError(f"size must be 3 positive integers, got {size!r}")
        if batch_size < 1 or prefetch_factor < 1:
            raise RequestError("batch_size and prefetch_factor must be >= 1")
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers or min(4, vol.parallel))
        if self.num_workers < 1:
            raise RequestError(f"num_workers must be >= 1, got {num_workers}")
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.prefetch_factor = int(prefetch_factor)
        self._rng = np.random.default_rng(seed)
        base = vol.chunk_store(self.mip)
        self._store = base if vol.lru is not None else LRUStore(base, ChunkLRU(lru_bytes))
        self._scale = vol.scales[self.mip]
        self._opts = vol.read_options
        self.in_flight_peak = 0  # most batches ever pending at once (for tests and tuning)

    def __len__(self) -> int:
        n, b = len(self.locations), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _batches(self) -> list[np.ndarray]:
        order = self._rng.permutation(len(self.locations)) if self.shuffle else np.arange(len(self.locations))
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)][: len(self)]

    def _load(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), *self.size, self.vol.num_channels), dtype=self.vol.dtype)
        for b, i in enumerate(idx):
            lo = self.locations[i]
            box = Bbox(lo, lo + np.asarray(self.size))
            req = Request(box, (1, 1, 1), slice(0, self.vol.num_channels, 1))
            out[b] = read(self.vol.runtime, self._scale, self._store, req, self._opts, self.mip)
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        batches = self._batches()
        limit = self.num_workers * self.prefetch_factor
        pending: deque[Future] = deque()
        # batches read through the io lane, so they are loaded on the tasks lane, at most
        # num_workers at once (the rest of the prefetched ones wait their turn)
        pool = self.vol.runtime.lane("tasks")
        turns = threading.BoundedSemaphore(self.num_workers)

        def load(idx: np.ndarray) -> np.ndarray:
            with turns:
                return self._load(idx)

        try:
            it = iter(batches)
            for idx in it:
                pending.append(pool.submit(load, idx))
                if len(pending) >= limit:
                    break
            self.in_flight_peak = max(self.in_flight_peak, len(pending))
            while pending:
                batch = pending.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(pool.submit(load, nxt))
                    self.in_flight_peak = max(self.in_flight_peak, len(pending))
                yield batch
        finally:
            for f in pending:
                f.cancel()


def _as_locations(locations: Any) -> np.ndarray:
    arr = np.asarray(list(locations) if not isinstance(locations, np.ndarray) else locations)
    if arr.size == 0:
        return np.zeros((0, 3), np.int64)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.dtype.kind not in "iu":
        raise RequestError(f"locations must be integer corner points of shape (N, 3), got {arr.shape} {arr.dtype}")
    return arr.astype(np.int64)
