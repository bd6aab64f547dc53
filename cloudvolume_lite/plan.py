"""Planning a read: which chunks a request touches and where each one lands in the output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .bbox import Bbox, Request, Vec3
from .info import Scale


@dataclass(frozen=True)
class Paste:
    """One chunk's part in a request: the chunk's grid cell, its box, and the two slices."""

    cell: Vec3
    chunk_bbox: Bbox
    src: tuple[slice, slice, slice]  # into the decoded chunk (x, y, z)
    dst: tuple[slice, slice, slice]  # into the output array (x, y, z)


def _axis_overlap(req_lo: int, req_hi: int, step: int, c_lo: int, c_hi: int) -> tuple[slice, slice] | None:
    lo, hi = max(req_lo, c_lo), min(req_hi, c_hi)
    if lo >= hi:
        return None
    first = req_lo + -(-(lo - req_lo) // step) * step  # first strided sample inside the chunk
    if first >= hi:
        return None
    n = len(range(first, hi, step))
    o = (first - req_lo) // step
    return slice(first - c_lo, hi - c_lo, step), slice(o, o + n)


def plan_pastes(scale: Scale, req: Request) -> Iterator[Paste]:
    """Every chunk of ``scale`` holding at least one voxel the (possibly strided) request samples."""
    region = req.bbox.intersection(scale.bounds)
    if region.empty:
        return
    for cell in scale.cells(region):
        cb = scale.chunk_bbox(cell)
        parts = [
            _axis_overlap(rl, rh, st, cl, ch)
            for rl, rh, st, cl, ch in zip(req.bbox.minpt, req.bbox.maxpt, req.steps, cb.minpt, cb.maxpt)
        ]
        if any(p is None for p in parts):
            continue  # the stride steps over this chunk entirely
        yield Paste(cell, cb, tuple(p[0] for p in parts), tuple(p[1] for p in parts))  # type: ignore[index,misc]
