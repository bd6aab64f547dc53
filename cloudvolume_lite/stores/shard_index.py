"""The shard file format: minishard index tables (parse, encode) and whole shard files.

Layout (spec section 7): ``[shard index][minishard 0 data][minishard 0 index]...``; the shard
index holds one (start, end) pair per minishard, a minishard index the delta-encoded ids,
offsets and sizes of its chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .. import compression
from ..errors import DecodeError
from ..sharding import ShardLayout

MAX_RANGE = 1 << 32  # no single chunk or minishard index is larger than 4 GiB

# -- minishard indices ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MinishardIndex:
    """Sorted chunk ids with absolute byte ranges in the shard file."""

    ids: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray

    @property
    def nbytes(self) -> int:
        return 24 * len(self.ids) + 64

    def find(self, chunk_id: int) -> tuple[int, int] | None:
        i = int(np.searchsorted(self.ids, np.uint64(chunk_id)))
        if i < len(self.ids) and self.ids[i] == np.uint64(chunk_id):
            return int(self.starts[i]), int(self.starts[i] + self.sizes[i])
        return None


def parse_minishard_index(data: bytes, index_bytes: int, where: str) -> MinishardIndex:
    if len(data) % 24:
        raise DecodeError(f"minishard index in {where} is {len(data)} bytes, not a multiple of 24; the shard is corrupt")
    n = len(data) // 24
    arr = np.frombuffer(data, dtype="<u8").reshape(3, n)
    with np.errstate(over="ignore"):
        ids = np.cumsum(arr[0], dtype=np.uint64)
        sizes = arr[2].astype(np.uint64)
        gaps = arr[1].astype(np.uint64)
        # start_i = end_{i-1} + delta_i; start_0 = index_bytes + delta_0
        prev_ends = np.concatenate([[np.uint64(0)], np.cumsum(sizes, dtype=np.uint64)[:-1]])
        starts = np.uint64(index_bytes) + np.cumsum(gaps, dtype=np.uint64) + prev_ends
    if n and (np.any(sizes > MAX_RANGE) or np.any(starts > np.uint64(1 << 62))):
        raise DecodeError(f"minishard index in {where} has implausible offsets or sizes; the shard is corrupt")
    order = np.argsort(ids, kind="stable")
    return MinishardIndex(ids[order], starts[order], sizes[order])


def encode_minishard_index(ids: np.ndarray, starts: np.ndarray, sizes: np.ndarray, index_bytes: int) -> bytes:
    """The [3, n] delta-encoded table for chunks already sorted by id and laid out in that order."""
    ids = np.asarray(ids, np.uint64)
    starts = np.asarray(starts, np.uint64)
    sizes = np.asarray(sizes, np.uint64)
    prev_ends = np.concatenate([[np.uint64(index_bytes)], starts[:-1] + sizes[:-1]])
    with np.errstate(over="ignore"):
        rows = np.stack([np.diff(ids, prepend=np.uint64(0)), starts - prev_ends, sizes])
    return rows.astype("<u8").tobytes()


def build_shard(chunks: Mapping[int, bytes], layout: ShardLayout) -> bytes:
    """A whole shard file from chunk id -> encoded chunk bytes (``data_encoding`` applied here).

    Layout, as TensorStore writes it: [shard index][minishard 0 data][minishard 0 index]...
    """
    s = layout.sharding
    ids = np.array(sorted(chunks), dtype=np.uint64)
    _, minis = layout.locate(ids)
    index = np.zeros((1 << s.minishard_bits, 2), dtype="<u8")
    body: list[bytes] = []
    pos = layout.index_bytes
    for m in np.unique(minis):
        sel = ids[minis == m]
        starts, sizes = [], []
        for cid in sel:
            payload = compression.compress(chunks[int(cid)], "gzip" if s.data_encoding == "gzip" else None, level=9)
            starts.append(pos)
            sizes.append(len(payload))
            body.append(payload)
            pos += len(payload)
        idx = encode_minishard_index(sel, np.array(starts, np.uint64), np.array(sizes, np.uint64), layout.index_bytes)
        if s.minishard_index_encoding == "gzip":
            idx = compression.compress(idx, "gzip", level=9)
        index[int(m)] = (pos - layout.index_bytes, pos - layout.index_bytes + len(idx))
        body.append(idx)
        pos += len(idx)
    return index.tobytes() + b"".join(body)



@dataclass(frozen=True)
class ShardIndex:
    """A shard's index: one (start, end) pair of its minishard indices per minishard."""

    entries: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.entries.nbytes)
