"""Filling a coarser scale from a finer one: averages for images, modes for segmentation."""

from __future__ import annotations

import functools
from math import prod
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .bbox import Bbox
from .errors import RequestError

from .writer import SLAB_BYTES, fill_chunks, groups_of_cells, present

if TYPE_CHECKING:
    from .volume import Volume


def _blocks(arr: np.ndarray, factor: tuple[int, int, int], front=(0, 0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """(X', Y', Z', C, k) values and a validity mask, k = prod(factor).

    ``front`` voxels of padding go before the data (a source region that starts inside a
    block); padding at either end is marked invalid and never counted.
    """
    fx, fy, fz = factor
    full = [f + s for f, s in zip(front, arr.shape[:3])]
    out = tuple(-(-n // f) for n, f in zip(full, factor))
    pad = [(fr, o * f - n) for fr, o, f, n in zip(front, out, factor, full)] + [(0, 0)]
    valid = np.pad(np.ones(arr.shape[:3] + (1,), bool), pad)
    arr = np.pad(arr, pad)

    def split(a: np.ndarray) -> np.ndarray:
        a = a.reshape(out[0], fx, out[1], fy, out[2], fz, a.shape[3])
        return a.transpose(0, 2, 4, 6, 1, 3, 5).reshape(*out, a.shape[6], fx * fy * fz)

    return split(arr), split(valid)


def average(arr: np.ndarray, factor: tuple[int, int, int], front=(0, 0, 0)) -> np.ndarray:
    """Mean of each block of ``factor`` voxels (edge blocks average what they have); ints round half up."""
    vals, valid = _blocks(arr, factor, front)
    count = valid.sum(-1)
    if arr.dtype.kind == "f":
        total = np.where(valid, vals, 0).sum(-1, dtype=np.float64)
        return (total / count).astype(arr.dtype)
    if arr.dtype.itemsize == 8:  # 64-bit sums could overflow int64: average in float64
        total = np.where(valid, vals, 0).sum(-1, dtype=np.float64)
        return np.floor(total / count + 0.5).astype(arr.dtype)
    total = np.where(valid, vals, 0).sum(-1, dtype=np.int64)
    return ((2 * total + count) // (2 * count)).astype(arr.dtype)  # = floor(mean + 1/2), exactly


def mode(arr: np.ndarray, factor: tuple[int, int, int], front=(0, 0, 0)) -> np.ndarray:
    """Most frequent value of each block; ties go to the smallest value."""
    vals, valid = _blocks(arr, factor, front)
    k = vals.shape[-1]
    flat = vals.reshape(-1, k)
    ok = valid.reshape(-1, k)
    # counts[i, j] = how many valid entries of block i equal entry j (k is small: 8 for 2x2x2)
    counts = np.zeros(flat.shape, np.int32)
    for j in range(k):
        counts += (flat == flat[:, j : j + 1]) & ok[:, j : j + 1]
    counts = np.where(ok, counts, -1)
    best = counts.max(axis=1, keepdims=True)
    # among the most frequent, the smallest value
    cand = np.where(counts == best, flat, np.iinfo(flat.dtype).max if flat.dtype.kind in "iu" else np.inf)
    return cand.min(axis=1).reshape(vals.shape[:-1]).astype(arr.dtype)


def downsample(vol: "Volume", mip: int, source_mip: int | None = None, method: str | None = None, *,
               client: Any = None, resume: bool = False, progress: Callable[[int, int], None] | None = None) -> None:
    """Fill scale ``mip`` from ``source_mip`` (default: the next finer scale), chunk group by group.

    Memory stays bounded: each task reads the source under one destination chunk (or one
    shard, for a sharded destination, in slabs of about 16 MiB of source) and holds its
    encoded chunks until it writes them, with 2 tasks in flight locally; with ``client``
    (a dask.distributed Client) each group is one task on the cluster's workers. Groups never
    share a chunk or shard, so tasks rerun after a lost worker write the same bytes. ``resume``
    skips chunks already written (an interrupted job run again).
    """
    if source_mip is None:
        source_mip = mip - 1
    if not 0 <= source_mip < mip < vol.num_mips:
        raise RequestError(f"downsample needs 0 <= source_mip < mip < {vol.num_mips}; got source {source_mip}, mip {mip}")
    src, dst = vol.scales[source_mip], vol.scales[mip]
    ratio = [d / s for d, s in zip(dst.resolution, src.resolution)]
    factor = tuple(int(round(r)) for r in ratio)
    if any(abs(r - f) > 1e-6 or f < 1 for r, f in zip(ratio, factor)):
        raise RequestError(f"mip {mip} is not an integer multiple of mip {source_mip} ({ratio})")
    method = method or ("mode" if vol.layer_type == "segmentation" else "average")
    if method not in ("mode", "average"):
        raise RequestError(f"method must be 'mode' or 'average', got {method!r}")
    groups = list(groups_of_cells(dst, list(dst.cells(dst.bounds))))
    task = functools.partial(downsample_group, vol, mip=mip, source_mip=source_mip, factor=factor, method=method,
                             resume=resume)
    if client is None and progress is None:
        # each group reads and writes through the io lane, so it runs on the tasks lane
        vol.runtime.run(task, groups, 2, lane="tasks")
        return
    from .jobs import run_tasks

    run_tasks(task, groups, runtime=vol.runtime, client=client, progress=progress)


def downsample_group(vol: "Volume", group: Sequence[tuple[int, int, int]], *, mip: int, source_mip: int,
                     factor: tuple[int, int, int], method: str, resume: bool = False,
                     slab_bytes: int = SLAB_BYTES) -> int:
    """Fill the chunks ``group`` of scale ``mip`` from ``source_mip`` (one task of
    :func:`downsample`); returns how many were written.

    The group (a chunk, or a shard's chunks) is reduced slab by slab, each slab's source read
    at once and held only while it is reduced (``slab_bytes`` of source at most, unless one
    chunk needs more); the encoded chunks are then written together, so a shard is read, merged
    and rewritten once (see :func:`~cloudvolume_lite.writer.fill_chunks`), not once per chunk.
    With ``resume`` the chunks already present are left as they are and not computed."""
    src, dst = vol.scales[source_mip], vol.scales[mip]
    vol._writable_scale(mip)  # as an upload checks: no writes through a key leaving the volume
    kernel = mode if method == "mode" else average
    store = vol.chunk_store(mip)
    cells = list(group)
    if resume:
        cells = [c for c, there in zip(cells, present(vol.runtime, dst, store, cells)) if not there]
    if not cells:
        return 0

    def reduce(box: Bbox) -> np.ndarray:
        lo = [max(b * f, s) for b, f, s in zip(box.minpt, factor, src.bounds.minpt)]
        hi = [min(b * f, s) for b, f, s in zip(box.maxpt, factor, src.bounds.maxpt)]
        source = vol.download(Bbox(lo, hi), mip=source_mip)
        # blocks sit on multiples of the factor in global coordinates
        front = tuple(l - b * f for l, b, f in zip(lo, box.minpt, factor))
        return kernel(source, factor, front)[: box.size[0], : box.size[1], : box.size[2]]

    cost = prod(factor) * vol.dtype.itemsize * vol.num_channels  # source bytes per voxel written
    return fill_chunks(vol.runtime, dst, store, cells, reduce, vol.write_options, voxel_cost=cost,
                       slab_bytes=slab_bytes)
