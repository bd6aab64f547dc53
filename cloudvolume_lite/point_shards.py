"""Stored chunk bytes (``data_encoding`` not undone) from the shard files of a sharded scale on
local disk or in memory, for point reads that inflate a chunk only as far as its points need.

``ShardedStore.iter_get`` inflates every chunk whole (and copies it) before a point sees it;
for a few points per 2 MiB raw chunk that is most of the time. This reads what it needs through
the store's public parts only: its ``layout``, ranged and whole reads of its ``inner`` store,
and the shard-format parsers. A shard is read whole, in one read, when most of it is wanted
(one read is also one version of it: no generation to match); a shard where only a few
chunks are wanted is left to the store, which reads those by range through its cached indices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .stores.base import Store
from .stores.shard_index import shard_table, wanted_chunks
from .stores.sharded import ShardedStore

#: a shard is read whole when at least half of its chunks are wanted, or when it is at most
#: this many bytes per wanted chunk (reading a chunk by range costs ~15 us of calls, what copying
#: ~30-60 KiB from the page cache costs, and the store then inflates it in full) ...
WHOLE_PER_CHUNK = 64 << 10
#: ... and it is at most this big (it is held in memory until its chunks are read)
WHOLE_MOST = 64 << 20
#: shards read whole at a time hold at most this many bytes in all
BATCH_BYTES = 256 << 20


def local_shards(store: Store) -> ShardedStore | None:
    """``store`` if it is a sharded scale whose shards are cheap to read whole (local disk,
    memory: no latency), else None."""
    if isinstance(store, ShardedStore) and not store.inner.latency_bound:
        return store
    return None


class ShardFiles:
    """Whole shard files of one sharded store, read for the chunks a point read wants: those at
    grid ``cells`` ((G, 3) ints), known by their index into it."""

    def __init__(self, store: ShardedStore, cells: np.ndarray):
        self.layout, self.inner = store.layout, store.inner
        # a minishard index lists at most every chunk of the scale, 24 bytes each (as the store bounds it)
        self.index_limit = 24 * math.prod(store.layout.scale.grid_size) + (64 << 10)
        cids = self.layout.chunk_ids(np.asarray(cells, np.uint64).reshape(-1, 3))
        self.shards, self.minis = self.layout.locate(cids)
        self.cids = cids.tolist()
        self.sizes: dict[int, int] = {}  # of the shards planned whole

    def where(self, shard: int) -> str:
        return self.inner.url.key_url(self.layout.shard_name(shard))

    def plan(self) -> tuple[dict[int, dict[int, list[int]]], list[int]]:
        """The chunks (indices into ``cells``) by shard and minishard, for the shards worth
        reading whole; and the indices of the chunks left to the store."""
        by_shard: dict[int, dict[int, list[int]]] = {}
        for i, (shard, mini) in enumerate(zip(self.shards.tolist(), self.minis.tolist())):
            by_shard.setdefault(shard, {}).setdefault(mini, []).append(i)
        per_shard = -(-math.prod(self.layout.scale.grid_size) // (1 << self.layout.sharding.shard_bits))
        whole, rest = {}, []
        for shard, members in by_shard.items():
            n = sum(map(len, members.values()))
            size = self.size(shard)
            if size is not None and size <= WHOLE_MOST and (2 * n >= per_shard or size <= n * WHOLE_PER_CHUNK):
                whole[shard] = members
                self.sizes[shard] = size
            else:
                rest += [i for idx in members.values() for i in idx]
        return whole, rest

    def batches(self, shards: list[int]) -> list[list[int]]:
        """``shards`` (planned whole) in runs of at most ``BATCH_BYTES`` (at least one shard
        each): a run's files are held in memory together while their chunks are read."""
        out: list[list[int]] = []
        most = BATCH_BYTES
        total = most
        for shard in shards:
            if total + self.sizes[shard] > most:
                out.append([])
                total = 0
            out[-1].append(shard)
            total += self.sizes[shard]
        return out

    def size(self, shard: int) -> int | None:
        """A shard file's size from its index (None: absent, or an index that does not say)."""
        ib = self.layout.index_bytes
        got = self.inner.read(self.layout.shard_name(shard), (0, ib))
        if got is None or got.data is None or len(got.data) != ib:
            return None  # absent or cut short: the store says which, and how
        table = shard_table(got.data, self.layout, self.where(shard))
        return ib + int(table.max(initial=0))

    def read(self, shard: int, members: Mapping[int, list[int]]) -> dict[int, memoryview | None] | None:
        """The stored bytes of the chunks ``members`` (minishard -> indices into ``cells``) of one shard, by index (None: not in the shard); None if the shard is gone."""
        got = self.inner.read(self.layout.shard_name(shard))
        if got is None or got.data is None:
            return None
        cids = self.cids
        wanted = {mini: {cids[i] for i in idx} for mini, idx in members.items()}
        found, _, _ = wanted_chunks(memoryview(got.data), self.layout, shard, self.where(shard), wanted, {},  # type: ignore[arg-type]
                                    self.index_limit)
        return {i: found.get(cids[i]) for idx in members.values() for i in idx}  # type: ignore[misc]


def stated_size(data: memoryview | bytes) -> int:
    """The size a gzip stream's trailer states (mod 2**32)."""
    return int.from_bytes(bytes(data[-4:]), "little") if len(data) >= 4 else -1


__all__ = ["BATCH_BYTES", "WHOLE_MOST", "WHOLE_PER_CHUNK", "ShardFiles", "local_shards", "stated_size"]
