"""Writing arrays into a volume: aligned chunks directly, unaligned edges by read-modify-write."""

from __future__ import annotations

import reprlib
from dataclasses import dataclass
from math import prod
from typing import Any, Callable, Literal, Mapping, Sequence, TypeVar

import numpy as np

from . import compression
from .bbox import Bbox, Request, normalize_key
from .codecs import ChunkSpec, get_codec
from .errors import OutOfBoundsError, RequestError
from .info import Scale
from .progress import tracked
from .runtime import Runtime
from .sharding import ShardLayout
from .stores import Store
from .stores.base import Update
from .stores.shard_keep import StoredChunk

ZeroPolicy = Literal["write", "skip", "delete"]
Cell = tuple[int, int, int]
T = TypeVar("T")
R = TypeVar("R")
_IMAGE_CODECS = ("jpeg", "png", "jxl")
#: chunks one group (or slab) must have before their encoding is spread over the ``cpu`` lane:
#: one or two cost less in the calling thread than the hand-offs to another would
SPREAD_LEAST = 3


class DefaultCompression(str):
    """The default ``compression``: gzip on object stores, plain files on local disk.

    A distinct type so that an explicit ``compression="gzip"`` (which writes ``.gz`` files on
    local disk, as CloudVolume does) can be told apart from the default.
    """


DEFAULT_COMPRESSION = DefaultCompression("gzip")


@dataclass(frozen=True)
class WriteOptions:
    """What a write needs to know besides the chunks: the data type and channels, whether
    writers lock around read-modify-write, and the transport compression asked for."""

    dtype: np.dtype
    num_channels: int
    locking: bool = False
    compress: str | None = DEFAULT_COMPRESSION


def transport_encoding(opts: WriteOptions, scale: Scale, store: Store) -> str | None:
    """The transport compression for chunks written to ``scale`` in ``store``."""
    if scale.encoding in _IMAGE_CODECS or scale.sharding is not None:
        return None  # images are compressed already; shards carry data_encoding instead
    setting = opts.compress
    if isinstance(setting, DefaultCompression):
        return None if store.url.scheme == "file" else "gzip"
    return compression.normalize(setting)


def _scalar(value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A 0-d ``value`` as a 0-d array of ``dtype`` if it is stored as itself: an integer in the
    type's range, a float into an integer type only if whole and in range, a float into a
    float type unless it overflows to infinity; else a :class:`RequestError` (``300`` into
    uint8 must not become 44, ``-1`` 255, ``0.7`` or NaN 0)."""
    x = given = value.item()  # a Python bool, int, float or complex (object arrays: the object)
    if isinstance(x, complex) and dtype.kind != "c":
        why = None if x.imag == 0 else "it has an imaginary part"
        x = x.real
    else:
        why = None if isinstance(x, (int, float, complex)) else f"it is a {type(x).__name__}, not a number"
    if why is None and dtype.kind in "iub":
        info = np.iinfo(dtype) if dtype.kind != "b" else None
        lo, hi = (0, 1) if info is None else (info.min, info.max)
        if isinstance(x, float) and not (np.isfinite(x) and x == int(x)):
            why = "it is not a whole number"
        elif not lo <= int(x) <= hi:
            why = f"it is outside {dtype}'s range {lo}..{hi}"
    elif why is None and dtype.kind in "fc":
        try:
            with np.errstate(over="ignore"):
                overflows = bool(np.isinf(np.asarray(x, dtype=dtype))) and not np.isinf(x)
        except OverflowError:  # an int too large even for a float64
            overflows = True
        if overflows:
            why = f"it is outside {dtype}'s range"
    elif why is None:
        why = f"a {dtype} volume holds no numbers"
    if why is not None:
        raise RequestError(f"value {reprlib.repr(given)} cannot be stored in this {dtype} volume: {why}; "
                           "write a value that fits, or convert it yourself first")
    return np.asarray(x, dtype=dtype)


def _as_array(array: Any, req: Request, dtype: np.dtype) -> np.ndarray:
    """``array`` as the request's ``(X, Y, Z, C)`` shape in ``dtype``, never with changed values:
    arrays must cast safely, scalars must be stored as themselves (:func:`_scalar`)."""
    try:
        arr = np.asarray(array)
    except (ValueError, TypeError) as e:  # a ragged list, or something numpy cannot hold
        raise RequestError(f"a {type(array).__name__} cannot be written: it is not an array ({e}); "
                           "write a numpy array of the region's shape") from None
    shape = req.out_shape
    if arr.ndim == 0:
        return np.broadcast_to(_scalar(arr, dtype), shape)
    if arr.ndim == 3 and shape[3] == 1:
        arr = arr[..., np.newaxis]
    if arr.shape != shape:
        raise RequestError(f"array of shape {arr.shape} does not fit region {req.bbox} with {shape[3]} channel(s): expected {shape}")
    if arr.dtype != dtype:
        if not np.can_cast(arr.dtype, dtype, "safe"):
            raise RequestError(
                f"array dtype {arr.dtype} cannot be stored losslessly in this {dtype} volume; convert it first "
                f"(e.g. array.astype('{dtype}')) if the values fit"
            )
        arr = arr.astype(dtype)
    return arr


def spread(rt: Runtime, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]``, on the ``cpu`` lane's threads too (one per core) when there
    are at least ``SPREAD_LEAST`` items: encoding and compressing chunks (zlib, libdeflate and
    the codecs release the GIL) is CPU-bound work that waits on nothing."""
    if len(items) < SPREAD_LEAST or rt.workers_for_cpu < 2:
        return [fn(x) for x in items]
    out: list[Any] = [None] * len(items)

    def one(i: int) -> None:
        out[i] = fn(items[i])

    rt.run(one, range(len(items)), rt.workers_for_cpu, lane="cpu")
    return out


def stored_form(scale: Scale) -> Callable[[bytes], "bytes | StoredChunk"]:
    """What a whole chunk's encoded bytes become before they go to ``scale``'s store: on a
    sharded scale, the bytes its shard file holds (gzip'd here, on the thread that encoded
    the chunk, rather than one after another in the shard's rewrite); else the bytes."""
    if scale.sharding is None:
        return lambda data: data
    encoding = scale.sharding.data_encoding
    return lambda data: StoredChunk.of(data, encoding)


def groups_of_cells(scale: Scale, cells: list[tuple[int, int, int]]) -> list[list[tuple[int, int, int]]]:
    """Units of work that never share a storage object: one per shard when sharded, else per chunk."""
    if scale.sharding is None or not cells:
        return [[c] for c in cells]
    layout = ShardLayout(scale.sharding, scale)
    shards, _ = layout.locate(layout.chunk_ids(np.array(cells)))
    groups: dict[int, list[tuple[int, int, int]]] = {}
    for cell, shard in zip(cells, shards.tolist()):
        groups.setdefault(shard, []).append(cell)
    return list(groups.values())


def write(rt: Runtime, scale: Scale, store: Store, key: Any, array: Any, opts: WriteOptions,
          mip: int, zero_chunks: ZeroPolicy = "write") -> None:
    """``vol[key] = array`` at ``scale`` (mip index ``mip``, for messages): chunks go to
    ``store``, partial ones by ``store.update_many`` (read-modify-write, conditional where the
    store can write conditionally; the caches read those through to the store behind them)."""
    if zero_chunks not in ("write", "skip", "delete"):
        raise RequestError(f"zero_chunks must be 'write', 'skip' or 'delete', got {zero_chunks!r}")
    req = normalize_key(key, scale.bounds, opts.num_channels)
    if req.steps != (1, 1, 1):
        raise RequestError(f"writes cannot use steps, got {req.steps}; write a contiguous region")
    if not scale.bounds.contains_bbox(req.bbox):
        raise OutOfBoundsError(f"cannot write {req.bbox} at mip {mip}: it reaches outside the volume's bounds {scale.bounds}")
    arr = _as_array(array, req, opts.dtype)
    if req.bbox.empty:
        return
    codec = get_codec(scale.encoding)
    enc = transport_encoding(opts, scale, store)
    nc = opts.num_channels
    all_channels = req.channels == slice(0, nc, 1)
    whole = stored_form(scale)

    def encoded(data: np.ndarray, spec: ChunkSpec) -> bytes | None | bool:
        if zero_chunks != "write" and not np.any(data):
            return None if zero_chunks == "delete" else False
        return compression.compress(codec.encode(data, spec), enc)

    def chunk_item(cell: tuple[int, int, int]) -> bytes | StoredChunk | None | bool | Update:
        """Encoded bytes for one chunk (``None``: delete it, ``False``: leave it alone; a
        :class:`StoredChunk` on a sharded scale), or, for a chunk the write covers only in
        part, the read-modify-write that makes them (run in the shard's rewrite, which needs
        the old chunk: its result is plain bytes)."""
        cb = scale.chunk_bbox(cell)
        inter = cb.intersection(req.bbox)
        src = tuple(slice(l - r, h - r) for l, h, r in zip(inter.minpt, inter.maxpt, req.bbox.minpt))
        name = scale.chunk_name(cell)
        spec = ChunkSpec((*cb.size, nc), opts.dtype, scale, store.url.key_url(name))  # type: ignore[arg-type]
        if inter == cb and all_channels:
            out = encoded(arr[src], spec)
            return out if out is None or out is False else whole(out)  # type: ignore[arg-type]
        dst = tuple(slice(l - c, h - c) for l, h, c in zip(inter.minpt, inter.maxpt, cb.minpt))

        def modify(old: bytes | None) -> bytes | None | bool:
            # keep the voxels this write does not cover
            data = np.zeros(spec.shape, opts.dtype, order="F") if old is None else np.array(codec.decode(old, spec), order="F")
            data[(*dst, req.channels)] = arr[src]
            return encoded(data, spec)

        return modify

    def one_group(cells: list[tuple[int, int, int]]) -> None:
        if not opts.locking:
            return write_group(cells)
        with store.lock(scale.chunk_name(cells[0])):  # the chunk, or its whole shard
            return write_group(cells)

    def write_group(cells: list[tuple[int, int, int]]) -> None:
        # partial chunks are read-modify-written by compare-and-swap where the store can (and
        # redone if another writer changed them meanwhile); under locking the lock guards them
        # a shard's chunks are encoded on every core: its rewrite then copies their bytes
        items: dict[str, bytes | StoredChunk | None | Update] = {}
        for cell, out in zip(cells, spread(rt, chunk_item, cells)):
            if out is not False:
                items[scale.chunk_name(cell)] = out  # type: ignore[assignment]
        if items:
            store.update_many(items, content_encoding=enc, content_type=_content_type(scale))

    groups = groups_of_cells(scale, list(scale.cells(req.bbox)))
    with tracked(one_group, len(groups), "cvl write", rt.progress) as fn:
        rt.run(fn, groups, rt.parallel)


def _content_type(scale: Scale) -> str:
    return {"jpeg": "image/jpeg", "png": "image/png"}.get(scale.encoding, "application/octet-stream")


def delete(rt: Runtime, scale: Scale, store: Store, bbox: Bbox | Any, num_channels: int) -> None:
    """Remove every chunk of ``scale`` inside ``bbox``, which must be chunk-aligned."""
    req = normalize_key(bbox, scale.bounds, num_channels)
    if not scale.bounds.contains_bbox(req.bbox):
        raise OutOfBoundsError(f"cannot delete {req.bbox}: it reaches outside the bounds {scale.bounds}")
    if not scale.is_aligned(req.bbox):
        raise RequestError(
            f"delete needs a chunk-aligned box; {req.bbox} is not aligned to chunks of {scale.chunk_size} "
            f"starting at {scale.voxel_offset}. Write zeros to clear part of a chunk instead"
        )
    groups = groups_of_cells(scale, list(scale.cells(req.bbox)))
    rt.run(lambda cells: store.put_many({scale.chunk_name(c): None for c in cells}), groups, rt.parallel)


def exists(rt: Runtime, scale: Scale, store: Store, bbox: Bbox | Any, num_channels: int) -> float:
    """Fraction of the chunks of ``scale`` that ``bbox`` touches that are present."""
    req = normalize_key(bbox, scale.bounds, num_channels)
    cells = list(scale.cells(req.bbox.intersection(scale.bounds)))
    if not cells:
        return 0.0
    found = present(rt, scale, store, cells)
    return sum(found) / len(found)


def present(rt: Runtime, scale: Scale, store: Store, cells: Sequence[Cell]) -> list[bool]:
    """Whether each chunk ``cells`` of ``scale`` is in ``store``, asked ``rt.parallel`` at a time."""
    found = [False] * len(cells)

    def one(i: int) -> None:
        found[i] = store.exists(scale.chunk_name(cells[i]))

    rt.run(one, range(len(cells)), rt.parallel)
    return found


# -- whole chunks made slab by slab (downsampling, copies) -------------------------------------------
#: what one slab's ``make`` may hold, in its ``voxel_cost`` bytes (a chunk needing more is a slab alone)
SLAB_BYTES = 16 << 20
#: encoded bytes gathered before they are written; a sharded scale's chunks that encode to more
#: are written in several updates of the shard (each a read-merge-write of it), which also bounds
#: the work a killed task loses
FLUSH_BYTES = 1 << 30


def plan_slabs(scale: Scale, cells: Sequence[Cell], max_voxels: int) -> list[tuple[Bbox, list[Cell]]]:
    """``cells`` of ``scale`` as boxes of whole chunks of at most about ``max_voxels`` voxels
    (at least one chunk each), each with the cells it covers. Cells are bucketed in aligned
    power-of-two blocks of the grid; a bucket whose cells fill at least half of their bounding
    box is one slab (the rest of that box is made and dropped), a sparser one (the scattered
    chunks of a hashed shard, or what a resumed job still lacks) is one slab per cell."""
    budget = max(1, max_voxels // prod(scale.chunk_size))
    grid, block = scale.grid_size, [1, 1, 1]
    while 2 * prod(block) <= budget:
        room = [d for d in range(3) if block[d] < grid[d]]
        if not room:
            break
        block[min(room, key=lambda d: block[d])] *= 2
    buckets: dict[Cell, list[Cell]] = {}
    for cell in cells:
        buckets.setdefault(tuple(g // b for g, b in zip(cell, block)), []).append(cell)  # type: ignore[arg-type]
    slabs: list[tuple[Bbox, list[Cell]]] = []
    for members in buckets.values():
        lo = [min(c[d] for c in members) for d in range(3)]
        hi = [max(c[d] for c in members) for d in range(3)]
        if 2 * len(members) >= prod(h + 1 - l for l, h in zip(lo, hi)):
            slabs.append((Bbox(scale.chunk_bbox(lo).minpt, scale.chunk_bbox(hi).maxpt), members))
        else:
            slabs.extend((scale.chunk_bbox(c), [c]) for c in members)
    return slabs


def fill_chunks(rt: Runtime, scale: Scale, store: Store, cells: Sequence[Cell], make: Callable[[Bbox], np.ndarray],
                opts: WriteOptions, *, voxel_cost: int, slab_bytes: int = SLAB_BYTES,
                flush_bytes: int = FLUSH_BYTES) -> int:
    """Write the whole chunks ``cells`` of ``scale``, their data made slab by slab by
    ``make(box) -> (X, Y, Z, C) array`` (a box of whole chunks; ``make`` holds about
    ``voxel_cost`` bytes per voxel of it while it works); returns how many were written.

    Slabs are made at most ``slab_bytes`` at a time (several small ones at once, on the
    ``tasks`` lane, since ``make`` may wait on reads: the scattered chunks of a hashed shard),
    each one's chunks encoded as soon as it is made (by every core, see :func:`spread`; a sharded
    scale's are also put in their shard file's ``data_encoding`` there, so the rewrite of a shard
    does no chunk's gzip, see :func:`stored_form`). The encoded bytes are written together at
    the end (or whenever ``flush_bytes`` have gathered): one ``update_many`` per storage object,
    so a shard's chunks cost one read-merge-write of the shard, not one each. The bytes stored
    are those :func:`write` stores for the same arrays."""
    codec = get_codec(scale.encoding)
    enc = transport_encoding(opts, scale, store)

    whole = stored_form(scale)

    def made(slab: Bbox, members: list[Cell]) -> tuple[dict[Cell, "bytes | StoredChunk"], int]:
        """A slab's chunks as they go to the store, and their encoded (not yet gzip'd for a
        shard) bytes, which the flushes count as they always have."""
        data = make(slab)

        def chunk(cell: Cell) -> tuple[bytes | StoredChunk, int]:
            cb = scale.chunk_bbox(cell)
            part = data[tuple(slice(l - s, h - s) for l, h, s in zip(cb.minpt, cb.maxpt, slab.minpt))]
            spec = ChunkSpec((*cb.size, opts.num_channels), opts.dtype, scale,  # type: ignore[arg-type]
                             store.url.key_url(scale.chunk_name(cell)))
            out = compression.compress(codec.encode(part, spec), enc)
            return whole(out), len(out)

        got = spread(rt, chunk, members)  # a slab may be a whole shard's chunks: every core encodes them
        return {cell: item for cell, (item, _) in zip(members, got)}, sum(n for _, n in got)

    items: dict[Cell, bytes | StoredChunk] = {}
    pending = 0
    slabs = plan_slabs(scale, cells, max(1, slab_bytes // max(1, voxel_cost)))
    for wave in _waves(slabs, slab_bytes, voxel_cost):
        results: list[tuple[dict[Cell, bytes | StoredChunk], int]] = [({}, 0)] * len(wave)

        def one(i: int, wave: list[tuple[Bbox, list[Cell]]] = wave, results: list = results) -> None:
            results[i] = made(*wave[i])

        rt.run(one, range(len(wave)), rt.parallel, lane="tasks")
        for got, nbytes in results:
            items.update(got)
            pending += nbytes
        if pending >= flush_bytes:
            put_chunks(scale, store, items, opts, enc)
            items, pending = {}, 0
    if items:
        put_chunks(scale, store, items, opts, enc)
    return len(cells)


def _waves(slabs: list[tuple[Bbox, list[Cell]]], budget: int, voxel_cost: int) -> list[list[tuple[Bbox, list[Cell]]]]:
    """Consecutive runs of ``slabs`` that cost at most ``budget`` bytes together (one at least)."""
    waves: list[list[tuple[Bbox, list[Cell]]]] = []
    used = 0
    for slab in slabs:
        cost = voxel_cost * prod(slab[0].size)
        if not waves or used + cost > budget:
            waves.append([])
            used = 0
        waves[-1].append(slab)
        used += cost
    return waves


def put_chunks(scale: Scale, store: Store, items: "Mapping[Cell, bytes | StoredChunk]", opts: WriteOptions,
               enc: str | None) -> None:
    """Store encoded whole chunks (``enc``: their transport compression; a sharded scale's as
    :class:`StoredChunk` s): one ``update_many`` per chunk, or per shard when sharded (under
    the store's lock when ``opts.locking``)."""
    for cells in groups_of_cells(scale, list(items)):
        batch = {scale.chunk_name(c): items[c] for c in cells}
        if not opts.locking:
            store.update_many(batch, content_encoding=enc, content_type=_content_type(scale))
            continue
        with store.lock(scale.chunk_name(cells[0])):  # the chunk, or its whole shard
            store.update_many(batch, content_encoding=enc, content_type=_content_type(scale))
