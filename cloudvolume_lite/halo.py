"""``Volume.map_overlap``: a function over every block of a volume with a halo around it, each
block reading its own box plus halo straight from storage.

One task per output block and no neighbour exchange: a block's halo is read from the store
(neighbouring chunks come through the Volume's caches), ``fn`` runs on block plus halo, and the
halo is trimmed off. Without ``out`` the result is a dask array whose ``compute`` pastes the
blocks on the Volume's threads (``halo_array.py``); with ``out`` a local job runs about one
task per core (:func:`job_runtime`). With ``depth`` at least ``fn``'s reach, the result equals ``fn`` on the
whole array, voxel for voxel, at every seam.

Boundaries (what ``fn`` sees past the volume's edges):

- ``"none"``: nothing; a block at an edge is read clipped, so ``fn``'s own edge handling sees
  the volume's real edge, exactly as when ``fn`` runs on the whole array;
- ``"reflect"`` (d c b a | a b c d), ``"mirror"`` (d c b | a b c d), ``"nearest"`` (a a a | a b c d)
  and ``"constant"`` (with ``cval``), as in ``scipy.ndimage``; a number means constant with that
  value: the volume is padded by ``depth`` in that mode before ``fn`` sees it, so the result
  equals ``fn(np.pad(whole, depth, ...))`` trimmed back to the volume.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .bbox import Bbox
from .errors import RequestError
from .runtime import Runtime

if TYPE_CHECKING:
    from .volume import Volume

#: boundary name -> numpy.pad mode (None: the block is read clipped, nothing padded)
PAD_MODES = {"none": None, "reflect": "symmetric", "mirror": "reflect", "nearest": "edge", "constant": "constant"}


def depth3(depth: int | Sequence[int]) -> tuple[int, int, int]:
    """``depth`` as voxels per axis (x, y, z)."""
    d = (depth,) * 3 if isinstance(depth, (int, np.integer)) else tuple(depth)
    if len(d) != 3 or any(int(v) != v or v < 0 for v in d):
        raise RequestError(f"depth must be a voxel count >= 0 or three of them (x, y, z), got {depth!r}")
    return tuple(int(v) for v in d)  # type: ignore[return-value]


def pad_mode(boundary: Any) -> tuple[str | None, float]:
    """(numpy.pad mode or None, constant value) for a ``boundary`` argument."""
    if isinstance(boundary, (int, float, np.number)) and not isinstance(boundary, bool):
        return "constant", float(boundary)
    if boundary not in PAD_MODES:
        raise RequestError(f"boundary must be one of {sorted(PAD_MODES)} or a number, got {boundary!r}")
    return PAD_MODES[boundary], 0.0


def tiles(bounds: Bbox, block: Sequence[int]) -> list[Bbox]:
    """Boxes of ``block`` voxels tiling ``bounds`` from its corner (the last ones clipped), x fastest."""
    axes = [range(lo, hi, b) for lo, hi, b in zip(bounds.minpt, bounds.maxpt, block)]
    return [Bbox((x, y, z), (min(x + block[0], bounds.maxpt[0]), min(y + block[1], bounds.maxpt[1]),
                             min(z + block[2], bounds.maxpt[2])))
            for z in axes[2] for y in axes[1] for x in axes[0]]


def axis_blocks(bounds: Bbox, block: Sequence[int]) -> list[tuple[int, ...]]:
    """The block lengths along each axis of :func:`tiles` (dask's ``chunks``)."""
    return [tuple(min(b, hi - lo) for lo in range(lo0, hi, b)) for lo0, hi, b in zip(bounds.minpt, bounds.maxpt, block)]


def overlap_block(vol: "Volume", fn: Callable[[np.ndarray], Any], box: Bbox, depth: tuple[int, int, int],
                  mode: str | None, cval: float, mip: int, dtype: np.dtype | None) -> np.ndarray:
    """``fn`` on ``box`` plus ``depth`` voxels of halo read from ``vol``, trimmed back to ``box``:
    an (X, Y, Z, C) array."""
    bounds = vol.scales[mip].bounds
    grown = Bbox([lo - d for lo, d in zip(box.minpt, depth)], [hi + d for hi, d in zip(box.maxpt, depth)])
    inner = grown.intersection(bounds)
    block = vol.download(inner, mip=mip)
    origin = inner.minpt
    if mode is not None:
        pads = [(a - g, g2 - a2) for a, g, a2, g2 in zip(inner.minpt, grown.minpt, inner.maxpt, grown.maxpt)]
        if any(p != (0, 0) for p in pads):
            extra = {"constant_values": cval} if mode == "constant" else {}
            block = np.pad(block, [*pads, (0, 0)], mode=mode, **extra)  # type: ignore[call-overload]
        origin = grown.minpt
    result = np.asarray(fn(block))
    if result.ndim == 3:
        result = result[..., np.newaxis]
    if result.ndim != 4 or result.shape[:3] != block.shape[:3]:
        raise RequestError(
            f"map_overlap's function returned shape {result.shape} for a block of shape {block.shape}; it must "
            "return an array of the same (X, Y, Z) shape, with or without a channel axis"
        )
    trim = tuple(slice(lo - o, hi - o) for lo, hi, o in zip(box.minpt, box.maxpt, origin))
    out = result[trim]
    return out if dtype is None else out.astype(dtype, copy=False)


def overlap_write(vol: "Volume", box: Bbox, *, fn: Callable[[np.ndarray], Any], depth: tuple[int, int, int],
                  mode: str | None, cval: float, mip: int, out: "Volume", out_mip: int) -> Bbox:
    """:func:`overlap_block` written into ``out`` (the task of a map_overlap with ``out=``)."""
    out.upload(box, overlap_block(vol, fn, box, depth, mode, cval, mip, np.dtype(out.dtype)), mip=out_mip)
    return box


def default_block(vol: "Volume", mip: int, out: "Volume | None", out_mip: int) -> tuple[int, int, int]:
    """Whole write units of ``out`` (chunks, or shards), else of ``vol``, of about 32 MiB: big
    enough that the halo is a small part of what a block reads, small enough for many tasks."""
    from .transfer import copy_block

    target = out if out is not None else vol
    scale = target.scales[out_mip if out is not None else mip]
    return copy_block(scale, np.dtype(target.dtype).itemsize * target.num_channels, 32 << 20)


def map_overlap(vol: "Volume", fn: Callable[[np.ndarray], Any], depth: int | Sequence[int], *, out: "Volume | None" = None,
                chunks: Sequence[int] | None = None, boundary: Any = "none", dtype: Any = None, client: Any = None,
                mip: int | None = None, out_mip: int | None = None, resume: bool = False,
                progress: Callable[[int, int], None] | None = None) -> Any:
    """See :meth:`Volume.map_overlap`."""
    from .dask import check_aligned, write_unit

    m = vol.mip if mip is None else mip
    d = depth3(depth)
    mode, cval = pad_mode(boundary)
    bounds = vol.scales[m].bounds
    om = 0 if out is None else (out.mip if out_mip is None else out_mip)
    block = tuple(int(c) for c in chunks) if chunks is not None else default_block(vol, m, out, om)
    if len(block) != 3 or min(block) < 1:
        raise RequestError(f"chunks must be 3 positive voxel counts, got {chunks!r}")
    boxes = tiles(bounds, block)
    if out is None:
        return _as_dask(vol, fn, boxes, block, d, mode, cval, m, dtype)
    oscale = out.scales[om]
    if oscale.bounds != bounds:
        raise RequestError(f"out's bounds {oscale.bounds} (mip {om}) differ from the volume's {bounds} (mip {m}); "
                           "create out with the same size and voxel_offset")
    problems = check_aligned(axis_blocks(bounds, block), oscale)
    if problems:
        raise RequestError(f"blocks of {block} voxels would let two tasks write one chunk or shard of out "
                           f"({'; '.join(problems)}); pass chunks= in multiples of {write_unit(oscale)}")
    if resume:  # blocks whose chunks all exist were written by an earlier run of the same job
        boxes = [b for b in boxes if out.exists(b, mip=om) < 1.0]
    import functools

    task = functools.partial(overlap_write, fn=fn, depth=d, mode=mode, cval=cval, mip=m, out=out, out_mip=om)
    from .jobs import run_tasks

    lanes = job_runtime(vol, m, out, om)
    try:
        # one reading Volume (and its chunk cache) per worker, shared by its tasks
        return run_tasks(task, boxes, runtime=lanes, client=client, progress=progress,
                         shared=with_chunk_cache(vol, block, d, m))
    finally:
        lanes.close()


def job_runtime(vol: "Volume", mip: int, out: "Volume", out_mip: int) -> Runtime:
    """The lanes a local map_overlap job runs its tasks on: one task per core while reading and
    writing are CPU-bound (local disk, memory), two per core when either waits on a network
    (one waits while the other computes), never more than ``vol.parallel``.

    Not the Volume's own ``parallel`` (8 for local files, 32-128 for object stores): each task
    holds its block, the halo and ``fn``'s result (3-4x the ~32 MiB of a default block), and
    more tasks than cores only share the cores, touching more fresh memory (the 15 blocks of
    bench_halo on 2 cores, medians of 5: 8 tasks at once took 1.02 s of system time and a
    477 MiB peak, 2 tasks 0.50 s and 187 MiB). Each task's read still fetches its chunks
    concurrently on ``vol``'s own lanes."""
    cores = vol.runtime.decode_threads
    waits = vol.uncached_store(mip).latency_bound or out.uncached_store(out_mip).latency_bound
    return Runtime(min(vol.runtime.parallel, cores * (2 if waits else 1)), cores, vol.runtime.progress)


def with_chunk_cache(vol: "Volume", block: Sequence[int], depth: Sequence[int], mip: int) -> "Volume":
    """``vol`` as a new Volume whose LRU holds the chunks of one z-layer of blocks plus their
    halo (blocks go x fastest, then y, then z; at most 2 GiB, at least the LRU ``vol`` has), so
    that a storage chunk beside several blocks is fetched once (per worker, on a cluster), not
    once per block that needs it. Stores without latency (local disk, memory) are read again
    instead: their chunks are in the page cache, and the raw ones are read only as far as needed."""
    from .volume import Volume

    if not vol.uncached_store(mip).latency_bound:
        return vol  # local disk or memory: reading a chunk again costs less than caching it
    scale = vol.scales[mip]
    halo = [-(-e // c) * c for e, c in zip(depth, scale.chunk_size)]  # a halo reads whole chunks
    layer = [scale.size[0] + 2 * halo[0], scale.size[1] + 2 * halo[1], block[2] + 2 * halo[2]]
    want = math.prod(layer) * np.dtype(vol.dtype).itemsize * vol.num_channels * 5 // 4
    state = vol.__getstate__()
    state["args"] = {**state["args"], "lru_bytes": max(int(state["args"]["lru_bytes"]), min(want, 2 << 30))}
    reader = Volume.__new__(Volume)
    reader.__setstate__(state)
    return reader


def _as_dask(vol: "Volume", fn: Callable[[np.ndarray], Any], boxes: list[Bbox], block: tuple[int, int, int],
             depth: tuple[int, int, int], mode: str | None, cval: float, mip: int, dtype: Any) -> Any:
    """A lazy dask array with one task per block and no other tasks (but the shared Volume)."""
    from dask.tokenize import tokenize

    from .halo_array import overlap_array

    out_dtype = np.dtype(vol.dtype if dtype is None else dtype)
    name = "cvl-overlap-" + tokenize(vol.url, mip, block, depth, mode, cval, str(out_dtype), fn)
    return overlap_array(vol, lambda vkey, box: (overlap_block, vkey, fn, box, depth, mode, cval, mip, out_dtype),
                         with_chunk_cache(vol, block, depth, mip), boxes, axis_blocks(vol.scales[mip].bounds, block),
                         name, out_dtype)


__all__ = ["PAD_MODES", "axis_blocks", "default_block", "depth3", "job_runtime", "map_overlap", "overlap_block",
           "overlap_write", "pad_mode", "tiles"]
