"""Questions asked of a region rather than reads of it: ``download_point`` and ``unique``.

Both work through the Volume's public reads (``download``), so caching, sharding,
``fill_missing`` and ``bounded`` behave exactly as they do for a cutout.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from .bbox import Bbox, normalize_key
from .errors import OutOfBoundsError, RequestError

if TYPE_CHECKING:
    from .volume import Volume

#: decoded bytes one block of ``unique`` reads at a time (at least one chunk); small blocks
#: stay in cache while fastremap reduces them (measured: 4-16 MiB blocks beat 64 MiB ones 2-3x)
UNIQUE_BLOCK_BYTES = 16 << 20
#: the most a block grows to so that a network store has ``parallel`` chunks in flight
UNIQUE_BLOCK_BYTES_MAX = 256 << 20


def _size3(size: Any) -> tuple[int, int, int]:
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (size, size, size)
    try:
        out = tuple(int(s) for s in size)
        ok = len(out) == 3 and all(s == v and s >= 1 for s, v in zip(out, size))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise RequestError(f"size must be a positive int or 3 positive ints (sx, sy, sz), got {size!r}")
    return out  # type: ignore[return-value]


def _point3(pt: Any) -> tuple[int, int, int]:
    """Integer voxel coordinates; finite floats are floored, as CloudVolume does (a Neuroglancer
    position such as 10.5 is the centre of voxel 10)."""
    try:
        p = np.asarray(pt, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        p = np.empty(0)
    if p.shape != (3,) or not np.all(np.isfinite(p)) or np.any(np.abs(p) > 2**53):
        raise RequestError(f"pt must be 3 finite voxel coordinates (x, y, z), got {pt!r}")
    return tuple(int(v) for v in np.floor(p))  # type: ignore[return-value]


def point_box(pt: Any, size: Any) -> Bbox:
    """The ``size`` box around ``pt``: ``[pt - size // 2, pt - size // 2 + size)`` per axis.

    For even sizes this is CloudVolume's box ``[pt - size/2, pt + size/2)``; for odd sizes it
    is centred exactly (CloudVolume returns ``size - 1`` voxels for odd sizes above 1).
    """
    p, s = _point3(pt), _size3(size)
    lo = [a - b // 2 for a, b in zip(p, s)]
    return Bbox(lo, [a + b for a, b in zip(lo, s)])


def download_point(vol: "Volume", pt: Any, size: Any, mip: int) -> np.ndarray:
    """What :meth:`Volume.download_point` returns, at mip index ``mip``."""
    return vol.download(point_box(pt, size), mip)


def unique_blocks(bounds: Bbox, offset: Sequence[int], chunk: Sequence[int], item_bytes: int,
                  budget: int = UNIQUE_BLOCK_BYTES) -> Iterator[Bbox]:
    """Chunk-aligned boxes that tile ``bounds``, each at most ``budget`` decoded bytes (or one
    chunk, when a chunk alone is larger)."""
    if bounds.empty:
        return
    block = list(chunk)
    extent = bounds.size
    # double the axis that is shortest (in voxels) until the budget is spent or the box is covered
    while True:
        grow = [d for d in range(3) if block[d] < extent[d]]
        if not grow or math.prod(block) * 2 * item_bytes > budget:
            break
        d = min(grow, key=lambda a: block[a])
        block[d] *= 2
    lo = [o + (m - o) // c * c for m, o, c in zip(bounds.minpt, offset, chunk)]  # on the chunk grid
    starts = [range(l, h, b) for l, h, b in zip(lo, bounds.maxpt, block)]
    for z in starts[2]:
        for y in starts[1]:
            for x in starts[0]:
                box = Bbox((x, y, z), (x + block[0], y + block[1], z + block[2])).intersection(bounds)
                if not box.empty:
                    yield box


def unique(vol: "Volume", bbox: Any, mip: int, block_bytes: int | None = None) -> np.ndarray:
    """The sorted distinct values in ``bbox`` (all of scale ``mip`` when None), read block by block.

    Each block is reduced with ``fastremap.unique`` and the results are merged, so memory holds
    one block and the distinct values seen so far, never the whole region. A block is
    ``block_bytes`` decoded (default: 16 MiB, or ``vol.parallel`` chunks, at most 256 MiB, so
    that a network store has enough requests in flight). A region reaching outside the volume
    (``bounded=False``) adds 0, the value the outside reads as.
    """
    import fastremap

    scale = vol.info.scales[mip]
    req = normalize_key(scale.bounds if bbox is None else bbox, scale.bounds, vol.num_channels)
    if req.steps != (1, 1, 1):
        raise RequestError(f"unique reads every voxel of a box; steps {req.steps} are not supported, drop them")
    chans = req.channels
    nc = len(range(chans.start, chans.stop, chans.step))
    if req.bbox.empty or nc == 0:
        return np.empty(0, dtype=vol.dtype)
    inside = req.bbox.intersection(scale.bounds)
    item = nc * vol.dtype.itemsize
    if block_bytes is None:
        in_flight = vol.parallel * math.prod(scale.chunk_size) * item
        block_bytes = max(UNIQUE_BLOCK_BYTES, min(UNIQUE_BLOCK_BYTES_MAX, in_flight))
    if inside != req.bbox and vol.bounded:
        raise OutOfBoundsError(
            f"unique over {req.bbox} at mip {mip} reaches outside the volume's bounds {scale.bounds}; "
            "ask within the bounds, or open the Volume with bounded=False to count the outside as 0"
        )
    found: list[np.ndarray] = [] if inside == req.bbox else [np.zeros(1, dtype=vol.dtype)]
    held, merged = 0, 0
    for box in unique_blocks(inside, scale.voxel_offset, scale.chunk_size, item, block_bytes):
        part = fastremap.unique(vol.download((*box.to_slices(), chans), mip))
        found.append(part)
        held += part.size
        # merge once the parts hold twice what the last merge kept: bounded memory, linear time
        if held > max(1 << 20, 2 * merged) and len(found) > 1:
            found = [fastremap.unique(np.concatenate(found))]
            held = merged = found[0].size
    if not found:
        return np.empty(0, dtype=vol.dtype)
    return fastremap.unique(np.concatenate(found)) if len(found) > 1 else found[0]
