"""The one read path: plan the chunks a request touches, fetch them as one batch, decode and
paste each into the output.

    vol[...] -> read(runtime, scale, store, request, options)
             -> plan_pastes: chunk name -> where it lands in the output
             -> store.iter_get(names, runtime=runtime): one batch (stores/batch.py)
             -> runtime.run(paste, batch, batch.width): decode straight into the output

Which store is behind (local files, a network store streaming many requests from one thread,
a sharded store grouping by shard, the LRU and disk caches) changes how the batch is fetched,
never this code.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .bbox import Request
from .codecs import ChunkSpec, get_codec
from .direct import PASTED, Slab, direct_fetch
from .errors import ChunkNotFoundError, OutOfBoundsError, RequestError
from .info import Scale
from .output import allocate
from .plan import Paste, plan_pastes
from .progress import tracked
from .runtime import Runtime
from .stores import Store
from .stores.batch import Gets

#: a read of this many chunks or fewer from a CPU-bound store runs in the calling thread:
#: waking another costs more than it saves, unless the store inflates each chunk (gzip'd
#: shards: 8 chunks of ~64^3 take 7.4 ms inline, 6.0 ms on two threads)
SMALL_READ = 8


@dataclass(frozen=True)
class ReadOptions:
    """What a read needs to know besides the chunks: the data type, the channels, and what to
    do with a missing chunk or a box reaching outside the bounds."""

    dtype: np.dtype
    num_channels: int
    fill_missing: bool = False
    bounded: bool = True


def check_bounds(req: Request, scale: Scale, mip: int, bounded: bool) -> None:
    if bounded and not scale.bounds.contains_bbox(req.bbox):
        raise OutOfBoundsError(
            f"requested {req.bbox} at mip {mip} reaches outside the volume's bounds {scale.bounds}; "
            "ask within the bounds, or open the Volume with bounded=False to read the outside as zeros"
        )


def physical_memory() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_size(req: Request, dtype: np.dtype, mip: int) -> None:
    """Refuse, before allocating, an output larger than the machine's physical memory (a box
    that ``bounded=False`` lets reach far outside the volume): a :class:`RequestError` that
    says how much it would take, not numpy's MemoryError or the OOM killer."""
    nbytes = math.prod(req.out_shape) * dtype.itemsize
    memory = physical_memory()
    if memory is not None and nbytes > memory:
        raise RequestError(
            f"reading {req.bbox} at mip {mip} would allocate {nbytes} bytes ({nbytes / 2**30:.1f} GiB of "
            f"{dtype}, shape {req.out_shape}), more than this machine's {memory / 2**30:.1f} GiB of memory; "
            "read it in smaller boxes (or lazily with vol.to_dask())"
        )


def read(runtime: Runtime, scale: Scale, store: Store, req: Request, opts: ReadOptions, mip: int) -> np.ndarray:
    """The ``(X, Y, Z, C)`` Fortran-order array ``req`` asks for, read from ``store``'s chunks.

    An output larger than the machine's physical memory is refused (:func:`check_size`);
    every decoded chunk must have the shape its spec says, else :class:`DecodeError`.
    """
    check_bounds(req, scale, mip, opts.bounded)
    check_size(req, opts.dtype, mip)
    codec = get_codec(scale.encoding)  # fails here, not at open, for an unknown encoding
    inside = req.bbox.intersection(scale.bounds) == req.bbox
    # prefaulting the output up front pays where reading is CPU-bound; a network read's
    # threads fault it in while they wait
    out = allocate(req.out_shape, opts.dtype, zeroed=not inside, runtime=None if store.latency_bound else runtime)
    if out.size == 0:
        return out
    nc = opts.num_channels
    chans = req.channels
    full_channels = chans == slice(0, nc, 1)
    region_decode = getattr(codec, "decode_region", None)
    into = getattr(codec, "decode_into", None)
    unit_steps = req.steps == (1, 1, 1)

    prefix = store.url.key_url("") + "/"  # chunk names are plain file names: no join needed

    dtype = opts.dtype

    def spec_of(p: Paste) -> ChunkSpec:
        return ChunkSpec((*p.shape, nc), dtype, scale, prefix + p.name)  # type: ignore[arg-type]

    def paste(item: tuple[str, object]) -> None:
        name, data = item
        p = todo[name]
        if data is PASTED:
            return
        if data is None:
            if not opts.fill_missing:
                raise ChunkNotFoundError(
                    f"chunk {prefix}{name} is missing (needed for {req.bbox} at mip {mip}); "
                    "pass fill_missing=True to read missing chunks as zeros"
                )
            out[p.dst] = 0
            return
        spec = ChunkSpec((*p.shape, nc), dtype, scale, prefix + name)  # type: ignore[arg-type]
        src = p.src
        if isinstance(data, Slab):
            z0, z1 = src[2].start, src[2].stop
            chunk = codec.slab_from_ranges(data.parts, spec, z0, z1)
            src = (src[0], src[1], slice(0, z1 - z0, src[2].step))
            out[p.dst] = chunk[src] if full_channels else chunk[(*src, chans)]
            return
        sx, sy, sz = src
        if into is not None and unit_steps:
            dx, dy, dz = p.dst
            if into(data, spec, [sx.start, sy.start, sz.start], [sx.stop, sy.stop, sz.stop], chans, out,
                    [dx.start, dy.start, dz.start]):
                return
        if region_decode is not None and any(s.start > 0 or s.stop < n for s, n in zip(src, spec.shape)):
            # decode only the part of the chunk the request needs
            chunk, origin = region_decode(data, spec, [s.start for s in src], [s.stop for s in src])
            if chunk.shape[3:] != (nc,) or any(o > s.start or o + n < s.stop
                                                for s, o, n in zip(src, origin, chunk.shape)):
                raise spec.error(f"a region decodes to {chunk.shape} at {tuple(origin)}, short of {src}")
            src = tuple(slice(s.start - o, s.stop - o, s.step) for s, o in zip(src, origin))
        else:
            chunk = codec.decode(data, spec)
            if chunk.shape != spec.shape:  # a wrong shape could broadcast into the output unnoticed
                raise spec.error(f"decodes to shape {chunk.shape}")
        out[p.dst] = chunk[src] if full_channels else chunk[(*src, chans)]

    todo = {p.name: p for p in plan_pastes(scale, req)}
    cpu_bound = not store.latency_bound
    expected = math.prod(scale.chunk_size) * nc * opts.dtype.itemsize
    fetch = direct_fetch(store, codec, todo, spec_of, out, chans)
    batch = store.iter_get(list(todo), expected, runtime) if fetch is None else \
        Gets(fetch, list(todo), store.batch_width(runtime))
    width = getattr(batch, "width", runtime.workers_for_cpu)
    if cpu_bound and len(todo) <= SMALL_READ and not store.inflates:
        width = 1
    try:
        with tracked(paste, len(todo), "cvl read", runtime.progress) as fn:
            runtime.run(fn, batch, width, n=len(todo))
    finally:
        close = getattr(batch, "close", None)
        if close is not None:
            close()
    return out


__all__ = ["ReadOptions", "SMALL_READ", "check_bounds", "check_size", "physical_memory", "read"]
