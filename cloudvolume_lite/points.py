"""``Volume.scattered_points``: values at many voxels, each chunk fetched once and decoded only
as far as the points need."""

from __future__ import annotations

from typing import Any

import numpy as np

from .codecs import ChunkSpec, get_codec
from .errors import ChunkNotFoundError, OutOfBoundsError, RequestError
from .info import Scale
from .read import SMALL_READ, ReadOptions
from .runtime import Runtime
from .stores import Store


def as_points(points: Any) -> np.ndarray:
    """(N, 3) int64 from any array-like of integer coordinates."""
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
    return pts.astype(np.int64)


def read_points(rt: Runtime, scale: Scale, store: Store, points: Any, opts: ReadOptions, m: int) -> np.ndarray:
    """What :meth:`Volume.scattered_points` returns: the values at ``points`` of ``scale`` (mip
    index ``m``, for messages), read from ``store`` as ``opts`` says."""
    pts = as_points(points)
    nc = opts.num_channels
    out = np.zeros((len(pts), nc), dtype=opts.dtype)
    lo, hi = np.asarray(scale.bounds.minpt), np.asarray(scale.bounds.maxpt)
    inside = np.all((pts >= lo) & (pts < hi), axis=1)
    if not inside.all() and opts.bounded:
        bad = pts[~inside]
        raise OutOfBoundsError(
            f"{len(bad)} of {len(pts)} points lie outside the bounds {scale.bounds} at mip {m}, "
            f"e.g. {bad[:3].tolist()}; drop them, or open the Volume with bounded=False to read them as 0"
        )
    if not inside.any():
        return out[:, 0] if nc == 1 else out
    codec = get_codec(scale.encoding)
    partial = getattr(codec, "decode_points", None)
    by_range = getattr(codec, "point_ranges", None)
    chunk = np.asarray(scale.chunk_size)
    grid = np.asarray(scale.grid_size)
    idx_inside = np.flatnonzero(inside)
    cells = (pts[idx_inside] - np.asarray(scale.voxel_offset)) // chunk
    lin = cells[:, 0] + grid[0] * (cells[:, 1] + grid[1] * cells[:, 2])
    order = np.argsort(lin, kind="stable")
    uniq, starts = np.unique(lin[order], return_index=True)
    bounds_ = np.append(starts, len(order))

    def group(i: int) -> tuple[np.ndarray, ChunkSpec, str, np.ndarray]:
        """The points of chunk ``i``: their indices, the chunk's spec and name, chunk-local xyz."""
        sel = idx_inside[order[bounds_[i] : bounds_[i + 1]]]
        cell = tuple(int(v) for v in cells[order[bounds_[i]]])
        name = scale.chunk_name(cell)
        cb = scale.chunk_bbox(cell)
        spec = ChunkSpec((*cb.size, nc), opts.dtype, scale, store.url.key_url(name))  # type: ignore[arg-type]
        return sel, spec, name, pts[sel] - np.asarray(cb.minpt)

    def fill(sel: np.ndarray, spec: ChunkSpec, name: str, local: np.ndarray, data: bytes | None) -> None:
        if data is None:
            if not opts.fill_missing:
                raise ChunkNotFoundError(
                    f"chunk {spec.key} is missing (needed for {len(sel)} points at mip {m}); "
                    "pass fill_missing=True to read missing chunks as zeros"
                )
            return
        # the same checks as a cutout's: a chunk of the wrong size is a DecodeError, never values
        if partial is not None:
            got = partial(data, spec, local)
            if got.shape != (len(sel), nc):
                raise spec.error(f"its {len(sel)} points decode to shape {got.shape}")
        else:
            chunk = codec.decode(data, spec)
            if chunk.shape != spec.shape:
                raise spec.error(f"decodes to shape {chunk.shape}")
            got = chunk[local[:, 0], local[:, 1], local[:, 2]]
        out[sel] = got

    by_bytes, whole = [], []
    for i in range(len(uniq)):
        g = group(i)
        # a few voxels of a big raw chunk: read just their bytes
        few = by_range is not None and len(g[0]) * 64 < g[1].nbytes // g[1].dtype.itemsize
        (by_bytes if few else whole).append(g)

    def ranged(g: tuple[np.ndarray, ChunkSpec, str, np.ndarray]) -> None:
        sel, spec, name, local = g
        # the codec's ranges include what tells a chunk of the wrong length (points_from_ranges checks)
        parts = store.get_decoded_ranges(name, by_range(spec, local))  # type: ignore[misc]
        if parts is None:
            fill(sel, spec, name, local, None)
        else:
            out[sel] = codec.points_from_ranges(parts, spec, len(sel))

    small = not store.latency_bound and len(uniq) <= SMALL_READ  # waking another thread costs more
    if by_bytes:
        width = rt.parallel if store.latency_bound else rt.workers_for_cpu
        rt.run(ranged, by_bytes, 1 if small else width)
    if whole:
        # the one batched read, as for cutouts: the store decides how the chunks travel
        by_name = {g[2]: g for g in whole}
        batch = store.iter_get(list(by_name), runtime=rt)
        try:
            rt.run(lambda item: fill(*by_name[item[0]], item[1]), batch,
                   1 if small else getattr(batch, "width", rt.workers_for_cpu), n=len(by_name))
        finally:
            close = getattr(batch, "close", None)
            if close is not None:
                close()
    return out[:, 0] if nc == 1 else out
