"""Dask arrays over volumes: lazy reads (``to_dask``) and chunk-aligned distributed writes
(``store_dask``). Dask is imported only when these are called."""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .bbox import Bbox
from .errors import RequestError
from .info import Scale
from .sharding import low_bits_per_axis, morton_bits

if TYPE_CHECKING:
    import dask.array as da

    from .volume import Volume


def _import_dask():
    try:
        import dask.array as da
    except ImportError as e:
        from .errors import UnsupportedEncodingError

        raise UnsupportedEncodingError(
            f"to_dask and store_dask need dask, which is not installed ({e}); "
            'run: pip install "cloudvolume-lite[dask]"'
        ) from None
    return da


def shard_shape(scale: Scale) -> tuple[int, int, int] | None:
    """Voxels per shard when shards are boxes (identity hash and enough bits, spec 7.6), else None."""
    s = scale.sharding
    if s is None or s.hash != "identity":
        return None
    bits = morton_bits(scale.grid_size)
    inner = s.preshift_bits + s.minishard_bits
    if inner + s.shard_bits < sum(bits):
        return None
    per_axis = low_bits_per_axis(bits, inner)
    return tuple(c << n for c, n in zip(scale.chunk_size, per_axis))  # type: ignore[return-value]


def write_unit(scale: Scale) -> tuple[int, int, int]:
    """The smallest box that parallel writers may own: a chunk, or a shard when sharded."""
    if scale.sharding is None:
        return scale.chunk_size
    shape = shard_shape(scale)
    if shape is None:
        return scale.size  # hashed shards are scattered: only the whole scale is safe
    return shape


def _axis_chunks(size: int, step: int) -> tuple[int, ...]:
    """Block lengths along one axis: ``step`` each, from the volume's origin, the last clipped."""
    full, rest = divmod(size, step)
    return (step,) * full + ((rest,) if rest else ())


def _group_size(want: int, base: int) -> int:
    """How many voxels along one axis one read covers for blocks of ``want`` over storage chunks
    of ``base``: blocks smaller than a chunk are read together, as whole chunks holding whole
    blocks (``lcm``), so that each storage chunk is fetched once; larger blocks read themselves."""
    if want >= base:
        return want
    group = math.lcm(want, base)
    return group if group <= 8 * base else want


def to_dask(vol: "Volume", chunks: Sequence[int] | None = None, mip: int | None = None) -> "da.Array":
    """A lazy (X, Y, Z, C) dask array, blocks of ``chunks`` voxels from the volume's corner.

    The default is one storage chunk, or one shard for sharded scales whose shards are boxes.
    Blocks smaller than a storage chunk along an axis (planes: ``chunks=(X, Y, 1)``) are cut from
    one read of the whole chunks around them, so each storage chunk is fetched once, not once
    per block. Tasks carry the pickled Volume (URL, options and parsed info: a few hundred
    bytes) and a box, never data.
    """
    da = _import_dask()
    from dask.highlevelgraph import HighLevelGraph
    from dask.tokenize import tokenize

    m = vol.mip if mip is None else mip
    scale = vol.scales[m]
    base = scale.chunk_size
    if chunks is None:
        want = shard_shape(scale) or base
    else:
        if len(chunks) != 3 or any(int(c) < 1 for c in chunks):
            raise RequestError(f"chunks must be 3 positive voxel counts, got {chunks!r}")
        want = tuple(int(c) for c in chunks)
    group = tuple(_group_size(w, b) for w, b in zip(want, base))
    axes = [_axis_chunks(s, w) for s, w in zip(scale.size, want)]
    nc = vol.num_channels
    name = "cvl-read-" + tokenize(vol.url, m, scale.to_json(), want, vol.fill_missing)
    vkey = name + "-volume"
    graph: dict[Any, Any] = {vkey: vol}
    starts = [np.concatenate([[0], np.cumsum(a)[:-1]]).astype(int) for a in axes]
    off = scale.voxel_offset
    for i, (x0, xs) in enumerate(zip(starts[0], axes[0])):
        for j, (y0, ys) in enumerate(zip(starts[1], axes[1])):
            for k, (z0, zs) in enumerate(zip(starts[2], axes[2])):
                lo, size = (int(x0), int(y0), int(z0)), (xs, ys, zs)
                if group == want:
                    box = Bbox([a + o for a, o in zip(lo, off)], [a + n + o for a, n, o in zip(lo, size, off)])
                    graph[(name, i, j, k, 0)] = (_read_block, vkey, box, m)
                    continue
                # the read of the group holding this block, made once for all its blocks
                g = tuple(a // w for a, w in zip(lo, group))
                gkey = (name + "-group", *g)
                if gkey not in graph:
                    glo = [a * w + o for a, w, o in zip(g, group, off)]
                    ghi = [min(a + w, o + n) for a, w, o, n in zip(glo, group, off, scale.size)]
                    graph[gkey] = (_read_block, vkey, Bbox(glo, ghi), m)
                cut = tuple(slice(a - gi * w, a - gi * w + n) for a, gi, w, n in zip(lo, g, group, size))
                graph[(name, i, j, k, 0)] = (operator.getitem, gkey, cut)
    hlg = HighLevelGraph.from_collections(name, graph, dependencies=())
    return da.Array(hlg, name, chunks=(*axes, (nc,)), dtype=vol.dtype)


def _read_block(vol: "Volume", box: Bbox, mip: int) -> np.ndarray:
    return vol.download(box, mip=mip)


class _Target:
    """``da.store`` target: 0-based regions in, global-coordinate uploads out."""

    def __init__(self, vol: "Volume", mip: int):
        self.vol = vol
        self.mip = mip

    def __setitem__(self, key: tuple[slice, ...], value: np.ndarray) -> None:
        off = self.vol.scales[self.mip].voxel_offset
        box = Bbox([k.start + o for k, o in zip(key[:3], off)], [k.stop + o for k, o in zip(key[:3], off)])
        self.vol.upload(box, value, mip=self.mip)


def check_aligned(shape_chunks: Sequence[Sequence[int]], scale: Scale) -> list[str]:
    """Why a block layout would let two tasks share a chunk or shard (empty if it would not)."""
    unit = write_unit(scale)
    problems = []
    for axis, blocks, u, size in zip("xyz", shape_chunks, unit, scale.size):
        edges = np.cumsum(blocks)[:-1]
        bad = [int(e) for e in edges if e % u and e != size]
        if bad:
            problems.append(f"{axis} block edges {bad[:3]} are not multiples of {u}")
    return problems


def store_dask(darray: "da.Array", vol: "Volume", mip: int | None = None, *, rechunk: bool = False,
               compute: bool = True) -> Any:
    """Write a dask array into ``vol`` (whole scale), with tasks that never share a chunk or shard.

    Blocks must end on chunk boundaries (shard boundaries for sharded scales); a misaligned
    array is refused unless ``rechunk=True``, which rechunks it to the write unit.
    """
    da = _import_dask()
    m = vol.mip if mip is None else mip
    scale = vol.scales[m]
    if darray.ndim == 3 and vol.num_channels == 1:
        darray = darray[..., None]
    want = (*scale.size, vol.num_channels)
    if tuple(darray.shape) != want:
        raise RequestError(f"dask array of shape {darray.shape} does not match mip {m}'s shape {want}")
    problems = check_aligned(darray.chunks[:3], scale)
    if problems:
        if not rechunk:
            raise RequestError(
                "dask blocks are not aligned to the volume's write unit "
                f"{write_unit(scale)} ({'; '.join(problems)}); two tasks would share a chunk or shard. "
                "Rechunk the array, or pass rechunk=True"
            )
        unit = write_unit(scale)
        darray = darray.rechunk((*unit, vol.num_channels))
    if darray.chunks[3] != (vol.num_channels,):
        darray = darray.rechunk({3: vol.num_channels})
    return da.store(darray, _Target(vol, m), lock=False, compute=compute)
