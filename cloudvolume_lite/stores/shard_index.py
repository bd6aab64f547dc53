"""The shard file format: minishard index tables (parse, encode, check) and whole shard files
(build, parse).

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


def check_members(index: MinishardIndex, layout: ShardLayout, shard: int, mini: int, where: str) -> None:
    """Every chunk a minishard index lists must hash to that shard and minishard: another
    shard's file in this one's place (swapped, or copied over) is damage, not "missing"."""
    if not len(index.ids):
        return
    shards, minis = layout.locate(index.ids)
    if (shards != np.uint64(shard)).any() or (minis != np.uint64(mini)).any():
        raise DecodeError(
            f"{where} lists chunks of other shards or minishards in its minishard {mini}: it is another shard's "
            "file, or damaged; restore it from its source"
        )


def parse_shard(data: bytes, layout: ShardLayout, shard: int, where: str, wanted: set[int] | None = None,
                index_limit: int | None = None, data_limit: int | None = None) -> dict[int, bytes]:
    """Every chunk of a whole shard file (or those in ``wanted``), ``data_encoding`` undone,
    every index range checked against the file: a broken shard is a DecodeError naming
    ``where``, never "no chunks here". ``index_limit``/``data_limit`` bound decompression."""
    ib = layout.index_bytes
    if len(data) < ib:
        raise DecodeError(f"{where} is {len(data)} bytes, shorter than its {ib}-byte index")
    table = np.frombuffer(data[:ib], "<u8").reshape(-1, 2)
    out: dict[int, bytes] = {}
    for mini, (start, end) in enumerate(table):
        if start == end:
            continue
        if end < start or ib + int(end) > len(data):
            # an error page served in place of the shard, or a shard cut short: never "no
            # chunks here", which would read as missing (zeros) and be dropped by a rewrite
            raise DecodeError(
                f"{where} is not a valid shard: its index puts minishard {mini} at bytes "
                f"{ib + int(start)}-{ib + int(end)} of a {len(data)}-byte file; the shard is damaged "
                "(or the server sent something else in its place)"
            )
        raw = data[ib + int(start) : ib + int(end)]
        if layout.sharding.minishard_index_encoding == "gzip":
            raw = compression.decompress(raw, "gzip", f"minishard {mini} index in {where}", index_limit)
        idx = parse_minishard_index(raw, ib, where)
        check_members(idx, layout, shard, mini, where)
        for cid, st, sz in zip(idx.ids, idx.starts, idx.sizes):
            if wanted is not None and int(cid) not in wanted:
                continue
            if int(st + sz) > len(data):
                raise DecodeError(f"chunk {int(cid)} in {where} runs past the end of the file")
            payload = data[int(st) : int(st + sz)]
            if layout.sharding.data_encoding == "gzip":
                payload = compression.decompress(payload, "gzip", f"chunk {int(cid)} in {where}", data_limit)
            out[int(cid)] = payload
    return out


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
