"""Planning a read: which chunks a request touches and where each one lands in the output."""

from __future__ import annotations

import itertools
from typing import NamedTuple

from .bbox import Bbox, Request, Vec3
from .info import Scale


class Paste(NamedTuple):
    """One chunk's part in a request: the chunk's grid cell and file name, its clipped box, and
    the two slices. (A named tuple: a read of a few dozen small chunks makes one per chunk, and
    a frozen dataclass costs 4x as much to make.)"""

    cell: Vec3
    name: str  # the unsharded chunk name, ``x0-x1_y0-y1_z0-z1``
    lo: Vec3  # the chunk's clipped box [lo, hi) in global coordinates
    hi: Vec3
    src: tuple[slice, slice, slice]  # into the decoded chunk (x, y, z)
    dst: tuple[slice, slice, slice]  # into the output array (x, y, z)
    shape: Vec3  # the chunk's clipped shape (x, y, z): hi - lo

    @property
    def chunk_bbox(self) -> Bbox:
        return Bbox(self.lo, self.hi)


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


#: one axis of one chunk: (grid index, chunk lo, chunk hi, "lo-hi", src slice, dst slice, chunk length)
_AxisPart = tuple[int, int, int, str, slice, slice, int]


def _axis_parts(req_lo: int, req_hi: int, step: int, lo: int, hi: int, offset: int, chunk: int,
                size: int) -> list[_AxisPart]:
    """The chunks along one axis that the request samples, with their slices; ``[lo, hi)`` is
    the request clipped to the volume."""
    parts = []
    for g in range((lo - offset) // chunk, -(-(hi - offset) // chunk)):
        c_lo, c_hi = offset + g * chunk, offset + min((g + 1) * chunk, size)
        cut = _axis_overlap(req_lo, req_hi, step, c_lo, c_hi)
        if cut is not None:  # None: the stride steps over this chunk entirely
            parts.append((g, c_lo, c_hi, f"{c_lo}-{c_hi}", cut[0], cut[1], c_hi - c_lo))
    return parts


def plan_pastes(scale: Scale, req: Request) -> list[Paste]:
    """Every chunk of ``scale`` holding at least one voxel the (possibly strided) request
    samples, x fastest. Planned axis by axis: a chunk's slices and name are the product of its
    three axes' parts, so a read of thousands of chunks plans in microseconds per chunk."""
    region = req.bbox.intersection(scale.bounds)
    if region.empty:
        return []
    axes = [
        _axis_parts(rl, rh, st, gl, gh, o, c, s)
        for rl, rh, gl, gh, st, o, c, s in zip(req.bbox.minpt, req.bbox.maxpt, region.minpt, region.maxpt,
                                                 req.steps, scale.voxel_offset, scale.chunk_size, scale.size)
    ]
    return [
        Paste((x[0], y[0], z[0]), f"{x[3]}_{y[3]}_{z[3]}", (x[1], y[1], z[1]), (x[2], y[2], z[2]),
              (x[4], y[4], z[4]), (x[5], y[5], z[5]), (x[6], y[6], z[6]))
        for z, y, x in itertools.product(axes[2], axes[1], axes[0])
    ]
