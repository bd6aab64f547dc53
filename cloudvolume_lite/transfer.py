"""Copying a volume between stores, re-encoding or resharding on the way, resumably."""

from __future__ import annotations

import functools
import threading
from math import prod
from typing import Any, Callable, Iterator, Sequence

from .bbox import Bbox
from .create import build_info, write_info
from .dask import write_unit
from .info import Info
from .jobs import run_tasks
from .stores import StoreRegistry
from .volume import Volume
from .writer import DEFAULT_COMPRESSION, fill_chunks, groups_of_cells


def units(box: Bbox, unit: Sequence[int], origin: Sequence[int]) -> Iterator[Bbox]:
    """Boxes of ``unit`` voxels tiling ``box`` on a grid starting at ``origin`` (clipped to ``box``)."""
    lo, hi = box.grid_range(origin, unit, [10**12] * 3)
    for gz in range(lo[2], hi[2]):
        for gy in range(lo[1], hi[1]):
            for gx in range(lo[0], hi[0]):
                a = [o + g * u for o, g, u in zip(origin, (gx, gy, gz), unit)]
                yield Bbox(a, [x + u for x, u in zip(a, unit)]).intersection(box)


def copy_block(scale: Any, voxel_bytes: int, target_bytes: int = 64 << 20) -> tuple[int, int, int]:
    """A box of whole write units of about ``target_bytes``: the unit of work and of resuming."""
    unit = list(write_unit(scale))
    if scale.sharding is not None:
        return tuple(unit)  # type: ignore[return-value]
    grow = 0
    while True:  # double the smallest axis that still fits in the volume
        d = grow % 3
        grow += 1
        nxt = list(unit)
        nxt[d] *= 2
        if nxt[d] > 2 * scale.size[d]:
            if grow > 30:
                return tuple(unit)  # type: ignore[return-value]
            continue
        if nxt[0] * nxt[1] * nxt[2] * voxel_bytes > target_bytes:
            return tuple(unit)  # type: ignore[return-value]
        unit = nxt


def copy_volume(
    src_url: str, dst_url: str, *, mip: int = 0, encoding: str | None = None, sharding: Any = "same",
    chunk_size: Sequence[int] | None = None, compression: str | None = DEFAULT_COMPRESSION,
    resume: bool = True, parallel: int | None = None, progress: Callable[[int, int], None] | None = None,
    block_bytes: int = 64 << 20, fill_missing: bool = False, client: Any = None,
) -> int:
    """Copy scale ``mip`` of ``src_url`` into a new one-scale volume at ``dst_url``; returns units written.

    ``sharding``: ``"same"`` keeps the source's choice, ``None``/``False`` writes unsharded,
    ``True`` picks a spec, or a dict. A unit is what the destination writes at once: a chunk,
    or a shard when sharded. Sources are read in blocks of whole units of about
    ``block_bytes`` (a sharded destination's unit is read in slabs as its shards are filled,
    see :func:`fill_unit`), and the units of a block are written concurrently; ``progress(done,
    total)`` is called (on the calling thread) as each unit is written or skipped. With
    ``resume`` a unit whose chunks all exist already is skipped, so an interrupted copy
    continues where it stopped. A missing source chunk is a :class:`ChunkNotFoundError`
    naming it, unless ``fill_missing`` (then it is copied as zeros). With ``client`` (a
    dask.distributed Client) each block is one task on the cluster's workers (the same bytes
    as without: a unit is written whole by one task, and a rerun task writes it again alike).
    """
    src = Volume(src_url, mip=mip, parallel=parallel, fill_missing=fill_missing)
    s = src.scale
    if sharding == "same":
        sharding = None if s.sharding is None else s.sharding
    enc = (encoding or s.encoding).lower()
    options = {k: v for k, v in s.extra.items() if k in ("jpeg_quality", "png_level")}
    if enc == "compressed_segmentation":
        options["compressed_segmentation_block_size"] = s.compressed_segmentation_block_size or (8, 8, 8)
    info = build_info(
        data_type=src.dtype.name, layer_type=src.layer_type, size=s.size, chunk_size=chunk_size or s.chunk_size,
        resolution=s.resolution, voxel_offset=s.voxel_offset, num_channels=src.num_channels,
        encoding=enc, sharding=sharding, **options,
    )
    store = StoreRegistry().open(dst_url)
    existing = store.get("info")
    if existing is not None and resume:
        old = Info.from_bytes(existing, dst_url)
        write_info(store, info, overwrite=old.scales[0].key != info.scales[0].key)
    else:
        write_info(store, info, overwrite=True)
    dst = Volume(dst_url, parallel=parallel, compress=compression)
    ds = dst.scale
    unit = write_unit(ds)
    blocks = list(units(ds.bounds, copy_block(ds, src.dtype.itemsize * src.num_channels, block_bytes), ds.voxel_offset))
    total = prod(-(-n // u) for n, u in zip(ds.size, unit))
    done = written = 0
    if client is not None:
        try:
            return _copy_on_cluster(src, dst, blocks, unit, total, resume, client, progress)
        finally:
            src.close()
            dst.close()
    rt = dst.runtime
    tally = threading.Lock()
    stopped: list[bool] = []
    try:
        for block in blocks:
            parts = list(units(block, unit, ds.voxel_offset))
            todo = parts
            if resume:
                present = dst.exists(block)  # one pass settles a block that is all done or all to do
                if present == 1.0:
                    todo = []
                elif present > 0.0:
                    there = [False] * len(parts)

                    def check(i: int) -> None:
                        there[i] = dst.exists(parts[i]) == 1.0

                    rt.run(check, range(len(parts)), dst.parallel, lane="tasks")  # exists() runs on the io lane
                    todo = [u for u, ok in zip(parts, there) if not ok]
            if len(todo) < len(parts):
                done += len(parts) - len(todo)
                if progress is not None:
                    progress(done, total)
            if not todo:
                continue
            if ds.sharding is None:
                box = Bbox([min(u.minpt[d] for u in todo) for d in range(3)], [max(u.maxpt[d] for u in todo) for d in range(3)])
                data = src.download(box)
            else:
                box, data = block, None  # a block is one unit, written slab by slab (see fill_unit)

            def put(u: Bbox, data: Any = data, box: Bbox = box) -> None:
                nonlocal done, written
                # each unit's upload runs its own work on the io lane, so the units go on the tasks lane
                if data is None:
                    fill_unit(src, dst, u)
                else:
                    dst.upload(u, data[tuple(slice(a - o, b - o) for a, b, o in zip(u.minpt, u.maxpt, box.minpt))])
                with tally:
                    done += 1
                    written += 1
                    if progress is not None and not stopped:
                        try:
                            progress(done, total)
                        except BaseException:
                            stopped.append(True)  # ^C in the callback: the units in flight finish unreported
                            raise

            rt.run(put, todo, dst.parallel, lane="tasks")
    finally:
        src.close()
        dst.close()
    return written


def copy_units(src: Volume, dst: Volume, block: Bbox, unit: Sequence[int], resume: bool) -> tuple[int, int]:
    """Copy one block (whole write units of ``dst``), skipping units already there when
    ``resume``: (units written, units skipped). The task of a copy on a cluster."""
    ds = dst.scale
    parts = list(units(block, unit, ds.voxel_offset))
    todo = parts
    if resume:
        todo = [] if dst.exists(block) == 1.0 else [u for u in parts if dst.exists(u) < 1.0]
    if not todo:
        return 0, len(parts)
    if ds.sharding is not None:
        for u in todo:
            fill_unit(src, dst, u)
        return len(todo), len(parts) - len(todo)
    box = Bbox([min(u.minpt[d] for u in todo) for d in range(3)], [max(u.maxpt[d] for u in todo) for d in range(3)])
    data = src.download(box)
    for u in todo:
        dst.upload(u, data[tuple(slice(a - o, b - o) for a, b, o in zip(u.minpt, u.maxpt, box.minpt))])
    return len(todo), len(parts) - len(todo)


def fill_unit(src: Volume, dst: Volume, unit: Bbox) -> None:
    """Copy one write unit of a sharded ``dst`` (a shard's box, or the whole scale when shards
    are hashed) shard by shard: each shard's chunks read from ``src`` in slabs of bounded
    size, encoded, and written in one rewrite of the shard (see
    :func:`~cloudvolume_lite.writer.fill_chunks`), so neither the unit's voxels nor a rewrite
    per chunk are ever needed. The bytes are those ``dst.upload(unit, data)`` writes."""
    ds = dst.scale
    store = dst.chunk_store()
    cost = 2 * src.dtype.itemsize * src.num_channels  # the slab read, and the copy a read may make
    for cells in groups_of_cells(ds, list(ds.cells(unit))):
        fill_chunks(dst.runtime, ds, store, cells, src.download, dst.write_options, voxel_cost=cost)


def _copy_on_cluster(src: Volume, dst: Volume, blocks: list[Bbox], unit: Sequence[int], total: int, resume: bool,
                     client: Any, progress: Callable[[int, int], None] | None) -> int:
    """:func:`copy_volume`'s blocks as tasks on ``client``'s workers; units written."""
    counts = [0, 0]  # units done (written or found), units written

    def tally(result: tuple[int, int]) -> None:
        counts[0] += sum(result)
        counts[1] += result[0]
        if progress is not None:
            progress(counts[0], total)

    task = functools.partial(copy_units, src, dst, unit=tuple(unit), resume=resume)
    run_tasks(task, blocks, runtime=dst.runtime, client=client, on_done=tally)
    return counts[1]


def as_sharding_arg(sharded: bool, unsharded: bool) -> Any:
    """The ``sharding`` argument for ``--sharded`` / ``--unsharded`` flags."""
    if sharded and unsharded:
        raise ValueError("--sharded and --unsharded exclude each other")
    return True if sharded else (None if unsharded else "same")
