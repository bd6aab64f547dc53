"""``Volume.scattered_points``: values at many voxels, each chunk fetched once and decoded only
as far as the points need.

The points are grouped by chunk once, over all of them: a counting sort in C (two passes,
~10 ns a point), else numpy (chunk index and chunk-local offset per point, block by block, and
a radix argsort). The work per chunk is then a few calls on slices of the groups, whatever the
number of points, and peak memory is about 2.5x the output. A chunk is read, cheapest first:

- from a plain local file (``Store.cheap_ranges``) with few points for its size: only the
  points' bytes, a batch of chunks per call in C (:mod:`.point_files`; raw and
  compressed_segmentation), or without the extension voxel by voxel through the store;
- from a shard file on local disk or in memory, read whole when most of it is wanted: each
  gzip'd raw chunk inflated only as far as its points need (:mod:`.point_shards`,
  :mod:`.point_inflate`);
- else whole, through the store's one batched ``iter_get``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import point_files
from .codecs import ChunkSpec, _cseg_api, get_codec
from .errors import ChunkNotFoundError, OutOfBoundsError, RequestError
from .info import Scale
from .point_inflate import Inflater
from .point_shards import ShardFiles, local_shards
from .read import SMALL_READ, ReadOptions
from .runtime import Runtime
from .stores import Store
from .stores.lru import LRUStore

#: a raw chunk is read voxel by voxel when it has fewer points than one per this many bytes:
#: from page cache a ranged read costs ~20 us + 0.9 us a point, a 2 MiB chunk read whole and
#: indexed 160-230 us (2-core box), so the two cost the same at ~200 points
RANGED_BYTES = 10 << 10
#: a read of at most SMALL_READ chunks holding at most this many points runs in the calling thread
SMALL_POINTS = 1 << 14
#: chunk counts up to this (or up to the number of points) are counted with one bincount
BINCOUNT_LIMIT = 1 << 22
#: where the C extension reads points straight from plain local files (:mod:`.point_files`), a
#: raw chunk is read point by point when it has fewer points than one per this many bytes:
#: ~10 us a chunk + ~1 us a point against ~340 us for a 2 MiB chunk read whole (2-core box)
FILE_RANGED_BYTES = 4 << 10
#: and a compressed_segmentation chunk when it has at most this many points (~0.8 us each
#: against ~60 us for a 150 KiB chunk read whole and looked up)
CSEG_FILE_POINTS = 48
#: chunks read from their files by one task of a read (fewer tasks, less scheduling)
FILE_BATCH = 32


def as_points(points: Any) -> np.ndarray:
    """(N, 3) int64 from any array-like of integer coordinates (no copy if it already is)."""
    pts = np.asarray(points)
    if pts.ndim == 1 and pts.shape[0] == 3:
        pts = pts[np.newaxis]
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise RequestError(f"points must have shape (N, 3), got {pts.shape}")
    if pts.dtype.kind == "f":
        if not np.all(np.isfinite(pts)) or np.any(pts != np.floor(pts)):
            raise RequestError("points must be integer voxel coordinates; round or floor them first")
    elif pts.dtype.kind not in "iu":
        raise RequestError(f"points must be integers, got dtype {pts.dtype}")
    return pts.astype(np.int64, copy=False)


@dataclass(frozen=True)
class Groups:
    """Points grouped by the chunk that holds them (points outside the bounds left out).

    Chunk ``g`` (linear grid index ``ids[g]``, x fastest) holds the points
    ``order[splits[g]:splits[g + 1]]`` (indices into the request, ascending), at the
    chunk-local offsets ``offsets[splits[g]:splits[g + 1]]`` (counted with a full chunk's
    strides, x fastest).
    """

    order: np.ndarray
    splits: np.ndarray
    ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def members(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """Chunk ``g``'s point indices and their chunk-local offsets (views)."""
        s, e = self.splits[g], self.splits[g + 1]
        return self.order[s:e], self.offsets[s:e]


def _smallest_uint(limit: int) -> type:
    """The smallest unsigned dtype holding every value up to ``limit``."""
    return next(t for t in (np.uint16, np.uint32, np.uint64) if limit <= np.iinfo(t).max)


#: points per block in :func:`locate`: the block's temporaries stay in the CPU cache
LOCATE_BLOCK = 1 << 16


def locate(pts: np.ndarray, scale: Scale) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per point: its chunk's linear grid index (x fastest; ``prod(grid)`` for a point outside
    the bounds) and its chunk-local offset (full chunk strides); and whether all are inside.

    Block by block and axis by axis, so temporaries are small (3x faster than whole columns);
    power-of-two chunk sides (the usual case) shift and mask instead of dividing.
    """
    n, grid, chunk = len(pts), scale.grid_size, scale.chunk_size
    nchunks = math.prod(grid)
    cell = np.empty(n, _smallest_uint(nchunks))
    offset = np.empty(n, _smallest_uint(math.prod(chunk) - 1))
    outside = False
    for b in range(0, n, LOCATE_BLOCK):
        blk = pts[b : b + LOCATE_BLOCK]
        c, o = cell[b : b + LOCATE_BLOCK], offset[b : b + LOCATE_BLOCK]
        inside = np.ones(len(blk), bool)
        c[:] = 0
        o[:] = 0
        gstride = cstride = 1
        for a in range(3):
            r = blk[:, a] - scale.voxel_offset[a]
            inside &= r.view(np.uint64) < scale.size[a]  # a negative r wraps past any size
            side = chunk[a]
            if side & (side - 1) == 0:
                q, rem = r >> (side.bit_length() - 1), r & (side - 1)
            else:
                q, rem = np.divmod(r, side)
            if gstride > 1:
                q *= gstride
            if cstride > 1:
                rem *= cstride
            np.add(c, q, out=c, casting="unsafe")  # wraps for points outside: overwritten below
            np.add(o, rem, out=o, casting="unsafe")
            gstride *= grid[a]
            cstride *= side
        if not inside.all():
            c[~inside] = nchunks
            o[~inside] = 0
            outside = True
    return cell, offset, not outside


def chunk_order(cell: np.ndarray) -> np.ndarray:
    """A stable argsort of chunk indices: numpy radix-sorts 16-bit keys in linear time, so
    wider keys are sorted 16 bits at a time (least significant first)."""
    if cell.dtype == np.uint16:
        return np.argsort(cell, kind="stable")
    if cell.dtype == np.uint32:
        order = np.argsort(cell.astype(np.uint16), kind="stable")
        high = (cell >> 16).astype(np.uint16)
        return order[np.argsort(high[order], kind="stable")]
    return np.argsort(cell, kind="stable")


def group(pts: np.ndarray, scale: Scale) -> tuple[Groups, bool]:
    """``pts`` grouped by chunk (:class:`Groups`), and whether they all lie inside the bounds.

    The C extension does it in one counting sort (two passes over the points, ~10x faster than
    numpy's); without it, or for a grid too large to count, numpy sorts."""
    nchunks = math.prod(scale.grid_size)
    countable = nchunks < max(BINCOUNT_LIMIT, len(pts))
    if countable and math.prod(scale.chunk_size) <= 1 << 32 and _cseg_api.available():
        return _group_c(pts, scale, nchunks)
    return _group_numpy(pts, scale, nchunks, countable)


def _splits(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, splits) of the chunks with points, from per-chunk point counts."""
    ids = np.flatnonzero(counts)
    return ids, np.concatenate([[0], np.cumsum(counts[ids])])


def _group_c(pts: np.ndarray, scale: Scale, nchunks: int) -> tuple[Groups, bool]:
    pts = np.ascontiguousarray(pts)
    order, offsets = np.empty(len(pts), np.int64), np.empty(len(pts), np.uint32)
    counts = np.empty(nchunks + 1, np.int64)
    _cseg_api.group_points(pts=pts, voxel_offset=scale.voxel_offset, size=scale.size, chunk_size=scale.chunk_size,
                           grid_size=scale.grid_size, order=order, offsets=offsets, counts=counts)
    ids, splits = _splits(counts[:nchunks])
    m = splits[-1]  # the points outside the bounds sort last
    return Groups(order[:m], splits, ids, offsets[:m]), m == len(pts)


def _group_numpy(pts: np.ndarray, scale: Scale, nchunks: int, countable: bool) -> tuple[Groups, bool]:
    cell, offset, all_inside = locate(pts, scale)
    order = chunk_order(cell)
    if countable and cell.dtype != np.uint64:
        ids, splits = _splits(np.bincount(cell, minlength=nchunks + 1)[:nchunks])
    else:  # too many chunks to count: find where the sorted indices change
        ordered = cell[order]
        starts = np.flatnonzero(np.diff(ordered)) + 1
        splits = np.concatenate([[0], starts, [len(ordered)]]) if len(ordered) else np.zeros(1, np.int64)
        ids = ordered[splits[:-1]].astype(np.int64)
        if len(ids) and ids[-1] == nchunks:
            ids, splits = ids[:-1], splits[:-1]
    order = order[: splits[-1]]
    return Groups(order, splits, ids, offset.take(order)), all_inside


def unpack(offsets: np.ndarray, chunk: tuple[int, int, int]) -> np.ndarray:
    """(N, 3) C-ordered int64 chunk-local coordinates from full-chunk linear offsets."""
    xyz = np.empty((len(offsets), 3), np.int64)
    cx, cy, _ = chunk
    if cx & (cx - 1) == 0 and cy & (cy - 1) == 0:
        sx, sy = cx.bit_length() - 1, cy.bit_length() - 1
        np.bitwise_and(offsets, cx - 1, out=xyz[:, 0], casting="unsafe")
        np.bitwise_and(offsets >> sx, cy - 1, out=xyz[:, 1], casting="unsafe")
        np.right_shift(offsets, sx + sy, out=xyz[:, 2], casting="unsafe")
    else:
        rest, xyz[:, 0] = np.divmod(offsets, cx)
        xyz[:, 2], xyz[:, 1] = np.divmod(rest, cy)
    return xyz


def ranges_are_cheap(store: Store) -> bool:
    """Whether ``store.get_decoded_ranges`` reads just the ranges: a plain local store
    (``cheap_ranges``), or an LRU cache over one (it serves ranges from memory when it holds the
    chunk, else from the inner store, without filling itself with whole chunks)."""
    if store.cheap_ranges:
        return True
    return isinstance(store, LRUStore) and ranges_are_cheap(store.inner)


def read_points(rt: Runtime, scale: Scale, store: Store, points: Any, opts: ReadOptions, m: int) -> np.ndarray:
    """What :meth:`Volume.scattered_points` returns: the values at ``points`` of ``scale`` (mip
    index ``m``, for messages), read from ``store`` as ``opts`` says."""
    pts = as_points(points)
    nc = opts.num_channels
    groups, all_inside = group(pts, scale)
    if not all_inside and opts.bounded:
        _out_of_bounds(pts, scale, m)
    out = (np.empty if all_inside else np.zeros)((len(pts), nc), dtype=opts.dtype)
    if len(groups):
        _ChunkReader(rt, scale, store, opts, m, groups, out).run()
    return out[:, 0] if nc == 1 else out


def _out_of_bounds(pts: np.ndarray, scale: Scale, m: int) -> None:
    lo, hi = np.asarray(scale.bounds.minpt), np.asarray(scale.bounds.maxpt)
    bad = pts[~np.all((pts >= lo) & (pts < hi), axis=1)]
    raise OutOfBoundsError(
        f"{len(bad)} of {len(pts)} points lie outside the bounds {scale.bounds} at mip {m}, "
        f"e.g. {bad[:3].tolist()}; drop them, or open the Volume with bounded=False to read them as 0"
    )


class _ChunkReader:
    """One request's chunks: which to read whole and which voxel by voxel, and pasting the
    values of each chunk's points into the output."""

    def __init__(self, rt: Runtime, scale: Scale, store: Store, opts: ReadOptions, m: int,
                 groups: Groups, out: np.ndarray):
        self.rt, self.scale, self.store, self.opts, self.m = rt, scale, store, opts, m
        self.groups, self.out = groups, out
        self.flat = out[:, 0] if out.shape[1] == 1 else None  # 1-D scatters are cheaper
        # a few chunks with few points: waking another thread costs more than it saves
        self.small = not store.latency_bound and len(groups) <= SMALL_READ and len(groups.order) <= SMALL_POINTS
        self.codec = get_codec(scale.encoding)
        # what the codec offers: values at linear offsets (cheapest), at (N, 3) points, or neither
        self.by_offset: Callable | None = getattr(self.codec, "decode_offsets", None)
        self.partial: Callable | None = getattr(self.codec, "decode_points", None)
        # every chunk's clipped box at once (chunks at the upper edge are smaller)
        gx, gy, _ = scale.grid_size
        ids = groups.ids
        self.cells = cells = np.stack([ids % gx, (ids // gx) % gy, ids // (gx * gy)], axis=1)
        chunk = np.asarray(scale.chunk_size)
        lo = cells * chunk
        hi = np.minimum(lo + chunk, np.asarray(scale.size))
        self.shapes = (hi - lo).tolist()
        # names from per-axis parts ("x0-x1"), each made once: 3x cheaper than formatting six numbers a chunk
        cell_list = cells.tolist()
        px, py, pz = ({c: f"{c * n + o}-{min(c * n + n, size) + o}" for c in {cell[d] for cell in cell_list}}
                      for d, (n, o, size) in enumerate(zip(scale.chunk_size, scale.voxel_offset, scale.size)))
        self.names = [f"{px[x]}_{py[y]}_{pz[z]}" for x, y, z in cell_list]
        # the address of every chunk for messages: the store's URL joined once (a join costs ~10 us)
        first = store.url.key_url(self.names[0]) if self.names else ""
        self.key_prefix = first[: -len(self.names[0])] if self.names and first.endswith(self.names[0]) else None
        self.dir_prefix: str | None = None  # the same for plain local files (see file_path)

    def spec(self, g: int) -> ChunkSpec:
        shape = (*self.shapes[g], self.opts.num_channels)
        name = self.names[g]
        key = self.store.url.key_url(name) if self.key_prefix is None else self.key_prefix + name
        return ChunkSpec(shape, self.opts.dtype, self.scale, key)  # type: ignore[arg-type]

    def put(self, sel: np.ndarray, values: np.ndarray | int) -> None:
        if self.flat is not None and not isinstance(values, int):
            self.flat[sel] = values[:, 0]
        else:
            self.out[sel] = values

    def missing(self, spec: ChunkSpec, sel: np.ndarray) -> None:
        if not self.opts.fill_missing:
            raise ChunkNotFoundError(
                f"chunk {spec.key} is missing (needed for {len(sel)} points at mip {self.m}); "
                "pass fill_missing=True to read missing chunks as zeros"
            )
        self.put(sel, 0)

    def fill(self, g: int, data: bytes | None) -> None:
        """Paste the values of group ``g``'s points from its chunk's bytes ``data``."""
        spec = self.spec(g)
        sel, offsets = self.groups.members(g)
        if data is None:
            return self.missing(spec, sel)
        # the same checks as a cutout's: a chunk of the wrong size is a DecodeError, never values
        if self.by_offset is not None and spec.shape[:3] == self.scale.chunk_size:  # a full chunk's strides
            got = self.by_offset(data, spec, offsets)
            if got.shape != (len(sel), spec.shape[3]):
                raise spec.error(f"its {len(sel)} points decode to shape {got.shape}")
            return self.put(sel, got)
        local = unpack(offsets, self.scale.chunk_size)
        if self.partial is not None:
            got = self.partial(data, spec, local)
            if got.shape != (len(sel), spec.shape[3]):
                raise spec.error(f"its {len(sel)} points decode to shape {got.shape}")
        else:
            chunk = self.codec.decode(data, spec)
            if chunk.shape != spec.shape:
                raise spec.error(f"decodes to shape {chunk.shape}")
            got = chunk[local[:, 0], local[:, 1], local[:, 2]]
        self.put(sel, got)

    def ranged(self, g: int) -> None:
        """Group ``g`` read voxel by voxel (the codec's ranges also tell a chunk of the wrong length)."""
        spec = self.spec(g)
        sel, offsets = self.groups.members(g)
        if spec.shape[:3] == self.scale.chunk_size and hasattr(self.codec, "offset_ranges"):  # a full chunk's strides
            ranges = self.codec.offset_ranges(spec, offsets)
        else:
            ranges = self.codec.point_ranges(spec, unpack(offsets, self.scale.chunk_size))
        parts = self.store.get_decoded_ranges(self.names[g], ranges)
        if parts is None:
            return self.missing(spec, sel)
        self.put(sel, self.codec.points_from_ranges(parts, spec, len(sel)))

    def split(self, todo: list[int]) -> tuple[list[int], list[int]]:
        """Of groups ``todo``: those to read voxel by voxel (few points in a big raw chunk on
        local disk), and those to read whole."""
        if getattr(self.codec, "point_ranges", None) is None or not ranges_are_cheap(self.store):
            return [], todo
        few = self.few_raw(todo, RANGED_BYTES)
        return [g for g, f in zip(todo, few) if f], [g for g, f in zip(todo, few) if not f]

    def counts(self, todo: list[int]) -> np.ndarray:
        return np.diff(self.groups.splits)[todo]

    def few_raw(self, todo: list[int], per: int) -> list[bool]:
        """Per group of ``todo``: whether it has fewer points than one per ``per`` bytes of its chunk."""
        nbytes = np.prod(np.asarray(self.shapes, np.int64).reshape(-1, 3)[todo], axis=1) * (
            self.opts.num_channels * self.opts.dtype.itemsize)
        return (self.counts(todo) * per < nbytes).tolist()

    def width(self, n: int) -> int:
        """Loops for ``n`` tasks of CPU-bound work."""
        return 1 if self.small else min(n, self.rt.workers_for_cpu)

    # -- plain local files: the points' bytes only ------------------------------------------------
    def from_files(self, todo: list[int]) -> list[int]:
        """Groups of ``todo`` with few points in a plain local raw or compressed_segmentation
        file, read point by point straight from the file (:mod:`.point_files`); the groups left."""
        file_path = getattr(self.store, "file_path", None)
        enc, dt = self.scale.encoding, self.opts.dtype
        if file_path is None or not self.store.cheap_ranges or not todo or not point_files.available():
            return todo
        if enc == "raw":
            few, kind = self.few_raw(todo, FILE_RANGED_BYTES), point_files.RAW
        elif (enc == "compressed_segmentation" and dt in (np.dtype(np.uint32), np.dtype(np.uint64))
              and self.scale.compressed_segmentation_block_size is not None):
            few, kind = (self.counts(todo) <= CSEG_FILE_POINTS).tolist(), point_files.CSEG
        else:
            return todo
        picked = [g for g, f in zip(todo, few) if f]
        left = [g for g, f in zip(todo, few) if not f]  # read whole through the store
        batches = [picked[i : i + FILE_BATCH] for i in range(0, len(picked), FILE_BATCH)]
        self.rt.run(lambda batch: left.extend(self.file_batch(batch, kind, file_path)), batches,
                    self.width(len(batches)))
        return sorted(left)

    def file_batch(self, batch: list[int], kind: int, file_path: Callable[[str], str]) -> list[int]:
        """Groups ``batch`` read from their files, their values put; those it did not read."""
        splits = self.groups.splits
        starts, ends = splits[batch], splits[np.asarray(batch) + 1]
        contiguous = batch == list(range(batch[0], batch[-1] + 1))
        if contiguous:  # the usual case: the batch's points are one slice of the groups
            sel = self.groups.order[starts[0] : ends[-1]]
            offsets = self.groups.offsets[starts[0] : ends[-1]]
        else:
            sel = np.concatenate([self.groups.order[a:b] for a, b in zip(starts, ends)])
            offsets = np.concatenate([self.groups.offsets[a:b] for a, b in zip(starts, ends)])
        local = np.concatenate([[0], np.cumsum(ends - starts)])
        values, status, damaged = point_files.read_batch(
            [self.file_path(g, file_path) for g in batch], kind, self.opts.dtype, self.opts.num_channels,
            np.asarray([self.shapes[g] for g in batch]), self.scale.compressed_segmentation_block_size or (1, 1, 1),
            self.scale.chunk_size, offsets, local)
        if damaged is not None:
            raise self.spec(batch[damaged[0]]).error(damaged[1])
        done = status == point_files.DONE
        if done.all():
            self.put(sel, values)
        else:
            rows = np.repeat(done, ends - starts)
            self.put(sel[rows], values[rows])
        return [g for g, ok in zip(batch, done.tolist()) if not ok]

    def file_path(self, g: int, file_path: Callable[[str], str]) -> str:
        """Group ``g``'s chunk file: the store's directory joined once (names made here are
        plain ``digits-digits_...``: nothing for the store's key check to refuse)."""
        if self.dir_prefix is None:
            first = file_path(self.names[0])
            self.dir_prefix = first[: -len(self.names[0])] if first.endswith(self.names[0]) else ""
        return self.dir_prefix + self.names[g] if self.dir_prefix else file_path(self.names[g])

    def clipped(self, g: int, offsets: np.ndarray) -> np.ndarray:
        """Group ``g``'s offsets (full chunk strides) as int64 offsets into its clipped chunk."""
        if self.shapes[g] == list(self.scale.chunk_size):
            return offsets.astype(np.int64)
        xyz = unpack(offsets, self.scale.chunk_size)
        ex, ey, _ = self.shapes[g]
        return xyz[:, 0] + ex * (xyz[:, 1] + ey * xyz[:, 2])

    # -- shards on local disk: inflate each chunk only as far as its points need -------------------
    def from_shards(self, todo: list[int]) -> list[int]:
        """Groups of ``todo`` in shards worth reading whole from a local sharded store, their
        gzip'd raw chunks inflated only up to their points (:mod:`.point_inflate`); the groups
        left for the store."""
        sharded = local_shards(self.store)
        if sharded is None or len(todo) < 2:
            return todo
        files = ShardFiles(sharded, self.cells[todo])
        whole, rest = files.plan()
        gzipped = sharded.layout.sharding.data_encoding == "gzip"
        inflater = Inflater(sharded.decoded_limit)
        for part in files.batches(list(whole)):
            read: dict[int, dict[int, memoryview | None] | None] = {}
            self.rt.run(lambda shard, read=read: read.__setitem__(shard, files.read(shard, whole[shard])), part,
                        self.width(len(part)))
            items = []
            for shard in part:
                got = read[shard]
                for i in (i for idx in whole[shard].values() for i in idx):
                    items.append((todo[i], None if got is None else got[i]))
            self.rt.run(lambda item: self.from_stored(item[0], item[1], gzipped, inflater), items,
                        self.width(len(items)))
        return sorted(todo[i] for i in rest)

    def from_stored(self, g: int, stored: memoryview | None, gzipped: bool, inflater: Inflater) -> None:
        """Group ``g``'s values from its chunk's stored bytes (None: not in its shard)."""
        if stored is None or not gzipped:
            return self.fill(g, stored if stored is None or self.by_offset is not None else bytes(stored))
        spec = self.spec(g)
        data = inflater.inflate(stored, spec.key)  # whole, CRC-checked (see point_inflate)
        return self.fill(g, data if self.by_offset is not None else bytes(data))

    def run(self) -> None:
        rt, store, small = self.rt, self.store, self.small
        rest = list(range(len(self.groups)))
        rest = self.from_shards(rest) if local_shards(store) is not None else self.from_files(rest)
        by_range, whole = self.split(rest)
        if by_range:
            rt.run(self.ranged, by_range, 1 if small else rt.workers_for_cpu)
        if not whole:
            return
        # the one batched read, as for cutouts: the store decides how the chunks travel
        todo = {self.names[g]: g for g in whole}
        expected = math.prod(self.scale.chunk_size) * self.opts.num_channels * self.opts.dtype.itemsize
        batch = store.iter_get(list(todo), expected, rt)
        try:
            width = 1 if small else getattr(batch, "width", rt.workers_for_cpu)
            rt.run(lambda item: self.fill(todo[item[0]], item[1]), batch, width, n=len(todo))
        finally:
            close = getattr(batch, "close", None)
            if close is not None:
                close()


__all__ = ["Groups", "as_points", "chunk_order", "group", "locate", "ranges_are_cheap", "read_points", "unpack"]
