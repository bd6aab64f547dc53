"""Immutable axis-aligned boxes in voxel coordinates, and request-key normalisation."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator, Sequence

from .errors import OutOfBoundsError, RequestError

Vec3 = tuple[int, int, int]


def _vec3(v: Sequence[int], what: str) -> Vec3:
    if len(v) != 3:
        raise RequestError(f"{what} must have 3 components (x, y, z), got {tuple(v)!r}")
    try:
        out = tuple(int(x) for x in v)
    except (TypeError, ValueError):
        raise RequestError(f"{what} must be integers, got {tuple(v)!r}") from None
    for raw, cooked in zip(v, out):
        if raw != cooked:
            raise RequestError(f"{what} must be integers, got {tuple(v)!r}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class Bbox:
    """A box ``[minpt, maxpt)`` in global voxel coordinates; ``maxpt`` is exclusive."""

    minpt: Vec3
    maxpt: Vec3

    def __init__(self, minpt: Sequence[int], maxpt: Sequence[int]):
        lo, hi = _vec3(minpt, "Bbox minpt"), _vec3(maxpt, "Bbox maxpt")
        if any(h < l for l, h in zip(lo, hi)):
            raise RequestError(f"Bbox maxpt {hi} is below minpt {lo} on some axis")
        object.__setattr__(self, "minpt", lo)
        object.__setattr__(self, "maxpt", hi)

    @classmethod
    def from_shape(cls, offset: Sequence[int], shape: Sequence[int]) -> "Bbox":
        """The box that starts at ``offset`` and spans ``shape`` voxels."""
        return cls(offset, [o + s for o, s in zip(offset, shape)])

    @classmethod
    def from_string(cls, text: str) -> "Bbox":
        """Parse ``"x0:x1,y0:y1,z0:z1"`` (the command line's syntax)."""
        parts = text.replace(" ", "").split(",")
        try:
            pairs = [tuple(int(v) for v in p.split(":")) for p in parts]
            if len(pairs) != 3 or any(len(p) != 2 for p in pairs):
                raise ValueError
        except ValueError:
            raise RequestError(
                f"bad bbox {text!r}: expected x0:x1,y0:y1,z0:z1 with integers, e.g. 0:64,0:64,0:16"
            ) from None
        return cls([p[0] for p in pairs], [p[1] for p in pairs])

    @property
    def size(self) -> Vec3:
        return tuple(h - l for l, h in zip(self.minpt, self.maxpt))  # type: ignore[return-value]

    shape = size

    @property
    def volume(self) -> int:
        sx, sy, sz = self.size
        return sx * sy * sz

    @property
    def empty(self) -> bool:
        return self.volume == 0

    def intersection(self, other: "Bbox") -> "Bbox":
        """The overlap of two boxes (zero-sized, at ``self.minpt``, when they are disjoint)."""
        lo = [max(a, b) for a, b in zip(self.minpt, other.minpt)]
        hi = [min(a, b) for a, b in zip(self.maxpt, other.maxpt)]
        if any(h <= l for l, h in zip(lo, hi)):
            return Bbox(self.minpt, self.minpt)
        return Bbox(lo, hi)

    def contains_bbox(self, other: "Bbox") -> bool:
        return all(a <= b for a, b in zip(self.minpt, other.minpt)) and all(
            a >= b for a, b in zip(self.maxpt, other.maxpt)
        )

    def translate(self, delta: Sequence[int]) -> "Bbox":
        return Bbox([a + d for a, d in zip(self.minpt, delta)], [a + d for a, d in zip(self.maxpt, delta)])

    def to_slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(l, h) for l, h in zip(self.minpt, self.maxpt))  # type: ignore[return-value]

    def grid_range(self, offset: Sequence[int], chunk: Sequence[int], grid: Sequence[int]) -> tuple[Vec3, Vec3]:
        """Grid cells ``[lo, hi)`` of a chunk grid (origin ``offset``) that this box touches."""
        lo = tuple(max(0, (m - o) // c) for m, o, c in zip(self.minpt, offset, chunk))
        hi = tuple(min(g, -(-(m - o) // c)) for m, o, c, g in zip(self.maxpt, offset, chunk, grid))
        return lo, hi  # type: ignore[return-value]

    def grid_cells(self, offset: Sequence[int], chunk: Sequence[int], grid: Sequence[int]) -> Iterator[Vec3]:
        """Every grid cell this box touches, x fastest."""
        lo, hi = self.grid_range(offset, chunk, grid)
        for gz, gy, gx in itertools.product(*(range(l, h) for l, h in zip(lo[::-1], hi[::-1]))):
            yield (gx, gy, gz)

    def __repr__(self) -> str:
        rng = ", ".join(f"{l}:{h}" for l, h in zip(self.minpt, self.maxpt))
        return f"Bbox({rng})"


@dataclass(frozen=True)
class Request:
    """A normalised read/write key: the voxel box, the per-axis steps and the channels."""

    bbox: Bbox
    steps: Vec3
    channels: slice  # concrete start/stop/step within [0, num_channels)

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        spatial = tuple(-(-s // st) for s, st in zip(self.bbox.size, self.steps))
        c = self.channels
        return (*spatial, len(range(c.start, c.stop, c.step)))  # type: ignore[return-value]


def _axis(k: object, lo: int, hi: int, axis: str) -> tuple[int, int, int]:
    """One spatial key component -> (start, stop, step) in global coordinates."""
    if isinstance(k, slice):
        step = 1 if k.step is None else k.step
        if not isinstance(step, int) or isinstance(step, bool) or step < 1:
            raise RequestError(f"{axis} step must be a positive integer, got {k.step!r}")
        start = lo if k.start is None else k.start
        stop = hi if k.stop is None else k.stop
        for v in (start, stop):
            if not _is_int(v):
                raise RequestError(f"{axis} bounds must be integers, got {k!r}")
        start, stop = int(start), int(stop)
        if stop < start:
            raise RequestError(f"{axis} slice {start}:{stop} ends before it starts")
        return start, stop, step
    if _is_int(k):
        i = int(k)  # type: ignore[arg-type]
        return i, i + 1, 1
    raise RequestError(f"{axis} index must be an int or a slice, got {type(k).__name__} {k!r}")


def _is_int(v: object) -> bool:
    import numbers

    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def normalize_key(key: object, bounds: Bbox, num_channels: int) -> Request:
    """Turn ``vol[...]``'s key into a :class:`Request`.

    Coordinates are global voxel coordinates: a negative number is a real coordinate (volumes
    may have negative offsets), never "from the end". An int keeps its axis (size 1), so the
    result is always 4-D ``(X, Y, Z, C)``.
    """
    if isinstance(key, Bbox):
        return Request(key, (1, 1, 1), slice(0, num_channels, 1))
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        if sum(k is Ellipsis for k in key) > 1:
            raise RequestError("an index can only have a single ellipsis ('...')")
        i = key.index(Ellipsis)
        fill = 4 - (len(key) - 1)
        key = key[:i] + (slice(None),) * max(fill, 0) + key[i + 1 :]
    if len(key) > 4:
        raise RequestError(f"too many indices: got {len(key)}, a volume has 4 axes (x, y, z, channel)")
    key = tuple(key) + (slice(None),) * (4 - len(key))
    parts = [_axis(k, l, h, a) for k, l, h, a in zip(key[:3], bounds.minpt, bounds.maxpt, "xyz")]
    bbox = Bbox([p[0] for p in parts], [p[1] for p in parts])
    steps = tuple(p[2] for p in parts)
    ck = key[3]
    if _is_int(ck):
        c = int(ck)  # type: ignore[arg-type]
        if not 0 <= c < num_channels:
            raise OutOfBoundsError(f"channel {c} requested; this volume has channels 0..{num_channels - 1}")
        channels = slice(c, c + 1, 1)
    elif isinstance(ck, slice):
        start, stop, step = ck.indices(num_channels)
        if step < 1:
            raise RequestError(f"channel step must be positive, got {ck.step!r}")
        channels = slice(start, max(start, stop), step)
    else:
        raise RequestError(f"channel index must be an int or a slice, got {ck!r}")
    return Request(bbox, steps, channels)  # type: ignore[arg-type]
