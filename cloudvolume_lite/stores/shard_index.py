"""The shard file format: minishard index tables (parse, encode, check) and whole shard files
(build, parse, read once for a batch).

Layout (spec section 7): ``[shard index][minishard 0 data][minishard 0 index]...``; the shard
index holds one (start, end) pair per minishard, a minishard index the delta-encoded ids,
offsets and sizes of its chunks.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from itertools import pairwise
from functools import cached_property
from typing import Callable, Mapping, MutableMapping

import numpy as np

from .. import compression
from ..errors import DecodeError
from ..sharding import ShardLayout
from .shard_keep import ShardChunks, StoredChunk, shard_payload

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
    if n <= SMALL_INDEX:
        return _parse_small(arr.tolist(), index_bytes, where)
    # ids and offsets are deltas (uint64 sums wrap, as the format's do): start_i = end_{i-1} +
    # gap_i, start_0 = index_bytes + gap_0, so start_i = index_bytes + sum(gap + size)_i - size_i
    ids = np.cumsum(arr[0], dtype=np.uint64)
    sizes = arr[2].astype(np.uint64)
    starts = np.cumsum(arr[1] + sizes, dtype=np.uint64)
    starts -= sizes
    starts += np.uint64(index_bytes)
    if n and (sizes.max() > MAX_RANGE or starts.max() > (1 << 62)):
        raise _implausible(where)
    if n > 1 and (ids[1:] < ids[:-1]).any():  # deltas that wrapped past 2**64: sort them
        order = np.argsort(ids, kind="stable")
        return MinishardIndex(ids[order], starts[order], sizes[order])
    return MinishardIndex(ids, starts, sizes)


#: minishard indices of at most this many chunks are parsed in Python ints: numpy's fixed costs
#: make its route several times slower for the few entries a small volume's minishards hold
SMALL_INDEX = 48
_M64 = (1 << 64) - 1


def _implausible(where: str) -> DecodeError:
    return DecodeError(f"minishard index in {where} has implausible offsets or sizes; the shard is corrupt")


def _parse_small(rows: list[list[int]], index_bytes: int, where: str) -> MinishardIndex:
    """:func:`parse_minishard_index` of a few entries, the same sums (modulo 2**64, as numpy's
    uint64 ones) and checks in Python ints."""
    ids, starts, sizes = [], [], rows[2]
    cid = end = 0
    for d, gap, size in zip(*rows):
        cid = (cid + d) & _M64
        end = (end + gap + size) & _M64
        ids.append(cid)
        starts.append((end - size + index_bytes) & _M64)
    if sizes and (max(sizes) > MAX_RANGE or max(starts) > (1 << 62)):
        raise _implausible(where)
    if any(b < a for a, b in pairwise(ids)):  # deltas that wrapped past 2**64: sort them
        order = sorted(range(len(ids)), key=ids.__getitem__)  # stable, as numpy's is
        ids, starts, sizes = [ids[i] for i in order], [starts[i] for i in order], [sizes[i] for i in order]
    return MinishardIndex(np.array(ids, np.uint64), np.array(starts, np.uint64), np.array(sizes, np.uint64))


def check_members(indices: Mapping[int, MinishardIndex], layout: ShardLayout, shard: int, where: str,
                  located: "Mapping[int, set[int]] | None" = None) -> None:
    """Every chunk a minishard index lists must hash to that shard and minishard: another
    shard's file in this one's place (swapped, or copied over) is damage, not "missing".
    ``indices``: minishard number -> its index; all are checked with one hashing.
    ``located``: minishard -> ids already known (hashed by the caller) to belong to it in this
    shard; a minishard listing only those is not hashed again (a read of a whole small volume
    wants every chunk its minishards list)."""
    parts = []
    for mini, index in indices.items():
        if not len(index.ids):
            continue
        known = None if located is None else located.get(mini)
        if known is not None and len(index.ids) <= len(known) and known.issuperset(index.ids.tolist()):
            continue
        parts.append((mini, index.ids))
    if not parts:
        return
    ids = np.concatenate([p[1] for p in parts])
    shards, minis = layout.locate(ids)
    want = np.repeat(np.array([p[0] for p in parts], np.uint64), [len(p[1]) for p in parts])
    bad = (shards != np.uint64(shard)) | (minis != want)
    if bad.any():
        mini = int(want[np.argmax(bad)])
        raise DecodeError(
            f"{where} lists chunks of other shards or minishards in its minishard {mini}: it is another shard's "
            "file, or damaged; restore it from its source"
        )


def shard_table(data: bytes, layout: ShardLayout, where: str) -> np.ndarray:
    """The shard index of a whole shard file: (start, end) of each minishard index, relative
    to the index's end."""
    ib = layout.index_bytes
    if len(data) < ib:
        raise DecodeError(f"{where} is {len(data)} bytes, shorter than its {ib}-byte index")
    return np.frombuffer(data, "<u8", count=ib // 8).reshape(-1, 2)


def minishard_in(data: bytes, table: np.ndarray, layout: ShardLayout, mini: int, where: str,
                 index_limit: int | None = None) -> MinishardIndex | None:
    """Minishard ``mini``'s index (None: it is empty) from a whole shard file, its range
    checked (its members are not: see :func:`check_members`): a broken shard is a DecodeError
    naming ``where``, never "no chunks here", which would read as missing (zeros) and be
    dropped by a rewrite."""
    ib = layout.index_bytes
    start, end = int(table[mini, 0]), int(table[mini, 1])
    if start == end:
        return None
    if end < start or ib + end > len(data):
        # an error page served in place of the shard, or a shard cut short
        raise DecodeError(
            f"{where} is not a valid shard: its index puts minishard {mini} at bytes "
            f"{ib + start}-{ib + end} of a {len(data)}-byte file; the shard is damaged "
            "(or the server sent something else in its place)"
        )
    return decode_minishard_index(data[ib + start : ib + end], layout, mini, where, index_limit)


def decode_minishard_index(raw: bytes, layout: ShardLayout, mini: int, where: str, index_limit: int | None = None
                           ) -> MinishardIndex:
    """A minishard index from its stored bytes (``minishard_index_encoding`` undone, bounded
    by ``index_limit``)."""
    if layout.sharding.minishard_index_encoding == "gzip":
        raw = compression.decompress(raw, "gzip", f"minishard {mini} index in {where}", index_limit)
    return parse_minishard_index(raw, layout.index_bytes, where)


def stored_chunks(data: bytes, index: MinishardIndex, where: str, wanted: "set[int] | None" = None
                  ) -> dict[int, bytes]:
    """The stored bytes (``data_encoding`` not undone) of the chunks of one minishard ``index``
    (or of those in ``wanted``) in a whole shard file."""
    out: dict[int, bytes] = {}
    for cid, st, end in zip(index.ids.tolist(), index.starts.tolist(), (index.starts + index.sizes).tolist()):
        if wanted is not None and cid not in wanted:
            continue
        if end > len(data):
            raise DecodeError(f"chunk {cid} in {where} runs past the end of the file")
        out[cid] = data[st:end]
    return out


def wanted_chunks(data: bytes, layout: ShardLayout, shard: int, where: str, wanted: Mapping[int, "set[int]"],
                  known: Mapping[int, "MinishardIndex | None"], index_limit: int | None = None
                  ) -> "tuple[dict[int, bytes], dict[int, MinishardIndex | None], np.ndarray]":
    """The stored bytes (``data_encoding`` not undone) of the chunks ``wanted`` (minishard ->
    chunk ids, each located by hashing to this shard and that minishard) of a whole shard file;
    the minishard indices parsed for them (those in ``known``, cached from this version of the
    file, are used as they are); the shard index."""
    table = shard_table(data, layout, where)
    parsed = {mini: minishard_in(data, table, layout, mini, where, index_limit) for mini in wanted if mini not in known}
    # the wanted ids were located by hashing: minishards that list only those need no more
    check_members({m: i for m, i in parsed.items() if i is not None}, layout, shard, where, wanted)
    out: dict[int, bytes] = {}
    for mini, cids in wanted.items():
        index = known[mini] if mini in known else parsed[mini]
        if index is not None:
            out.update(stored_chunks(data, index, where, cids))
    return out, parsed, table


class ShardFiles:
    """Shard files read whole for one batch, each once: the first loop to want one reads it
    (``load(shard) -> ({chunk id: stored bytes}, generation)``), loops wanting it meanwhile wait
    for that read; a shard's chunks are let go when the last of its ``counts`` is taken."""

    def __init__(self, load: "Callable[[int], tuple[dict[int, bytes], str | None]]", counts: Mapping[int, int]):
        self._load = load
        self._left = dict(counts)
        self._locks = {shard: threading.Lock() for shard in counts}
        self._files: dict[int, tuple[dict[int, bytes], str | None]] = {}
        self._lock = threading.Lock()

    def take(self, shard: int, cid: int) -> tuple[bytes | None, str | None]:
        """A wanted chunk's stored bytes (None: not in the shard) and the shard's generation."""
        with self._locks[shard]:
            if shard not in self._files:
                self._files[shard] = self._load(shard)
            chunks, gen = self._files[shard]
        with self._lock:
            self._left[shard] -= 1
            if not self._left[shard]:
                del self._files[shard]
        return chunks.get(cid), gen


def stored_shard(data: "bytes | memoryview", layout: ShardLayout, shard: int, where: str,
                 wanted: set[int] | None = None, index_limit: int | None = None) -> "dict[int, bytes | memoryview]":
    """Every chunk of a whole shard file (or those in ``wanted``) as stored (``data_encoding``
    not undone; views when ``data`` is a memoryview), every index range checked against the
    file: a broken shard is a DecodeError naming ``where``, never "no chunks here".
    ``index_limit`` bounds the minishard indices' decompression."""
    table = shard_table(data, layout, where)  # type: ignore[arg-type]
    found = {mini: minishard_in(data, table, layout, mini, where, index_limit)  # type: ignore[arg-type]
             for mini in range(len(table))}
    indices = {mini: index for mini, index in found.items() if index is not None}
    check_members(indices, layout, shard, where)
    out: dict[int, bytes | memoryview] = {}
    for index in indices.values():
        out.update(stored_chunks(data, index, where, wanted))  # type: ignore[arg-type]
    return out


def parse_shard(data: bytes, layout: ShardLayout, shard: int, where: str, wanted: set[int] | None = None,
                index_limit: int | None = None, data_limit: int | None = None) -> dict[int, bytes]:
    """Every chunk of a whole shard file (or those in ``wanted``), ``data_encoding`` undone
    (bounded by ``data_limit``), checked as :func:`stored_shard` checks it."""
    out = stored_shard(data, layout, shard, where, wanted, index_limit)
    if layout.sharding.data_encoding == "gzip":
        return {cid: compression.decompress(payload, "gzip", f"chunk {cid} in {where}", data_limit)
                for cid, payload in out.items()}
    return out  # type: ignore[return-value]


def apply_updates(chunks: MutableMapping[int, bytes],
                  updates: "Mapping[int, bytes | None | StoredChunk | Callable[[bytes | None], object]]") -> bool:
    """Merge ``updates`` into a shard's ``chunks`` (chunk id -> bytes; a dict, or a
    :class:`~cloudvolume_lite.stores.shard_keep.ShardChunks` that inflates a stored chunk only
    when a function asks for it): bytes replace, None deletes, a function of the old bytes
    (None: absent) returns one of those or False (leave it). A
    :class:`~cloudvolume_lite.stores.shard_keep.StoredChunk` (bytes as the shard file holds
    them, made ahead by the writer) goes into a ShardChunks of its encoding as it is, into
    anything else inflated. Whether anything changed."""
    changed = False
    for cid, data in updates.items():
        if isinstance(data, StoredChunk):
            changed = True
            if isinstance(chunks, ShardChunks) and chunks.takes(data):
                chunks.keep(cid, data.payload)
            else:
                chunks[cid] = data()
            continue
        if callable(data):
            data = data(chunks.get(cid))  # a ShardChunks inflates the old chunk here, bounded
            if data is False:
                continue
        changed = True
        if data is None:
            if cid in chunks:
                del chunks[cid]  # (a mapping's pop would read the chunk first)
        else:
            chunks[cid] = data  # type: ignore[assignment]
    return changed


def encode_minishard_index(ids: np.ndarray, starts: np.ndarray, sizes: np.ndarray, index_bytes: int) -> bytes:
    """The [3, n] delta-encoded table for chunks already sorted by id and laid out in that order."""
    ids = np.asarray(ids, np.uint64)
    starts = np.asarray(starts, np.uint64)
    sizes = np.asarray(sizes, np.uint64)
    prev_ends = np.concatenate([[np.uint64(index_bytes)], starts[:-1] + sizes[:-1]])
    with np.errstate(over="ignore"):
        rows = np.stack([np.diff(ids, prepend=np.uint64(0)), starts - prev_ends, sizes])
    return rows.astype("<u8").tobytes()


def build_shard(chunks: Mapping[int, bytes], layout: ShardLayout,
                stored: "Mapping[int, bytes | memoryview] | None" = None) -> bytes:
    """A whole shard file from chunk id -> encoded chunk bytes (``data_encoding`` applied here)
    and ``stored``: chunk id -> bytes as a shard file holds them (``data_encoding`` applied
    already: copied as they are). An id is in one of the two, not both.

    Layout, as TensorStore writes it: [shard index][minishard 0 data][minishard 0 index]...
    """
    s = layout.sharding
    stored = {} if stored is None else stored
    ids = np.array(sorted([*chunks, *stored]), dtype=np.uint64)
    _, minis = layout.locate(ids)
    index = np.zeros((1 << s.minishard_bits, 2), dtype="<u8")
    body: list[bytes | memoryview] = []
    pos = layout.index_bytes
    for m in np.unique(minis):
        sel = ids[minis == m]
        starts, sizes = [], []
        for cid in sel.tolist():
            payload = stored.get(cid)
            if payload is None:
                payload = shard_payload(chunks[cid], s.data_encoding)
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

    @cached_property
    def end(self) -> int:
        """Where the last minishard index ends, relative to the index's end: the file's size
        less the index (asked by every local batch that may read the shard whole)."""
        return int(self.entries.max(initial=0))
