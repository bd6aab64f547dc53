"""``raw``: little-endian values in Fortran order over (x, y, z, c), no header."""

from __future__ import annotations

from typing import Callable

import numpy as np

from . import ChunkSpec

try:
    from .._rawio import paste_bytes as _paste_bytes
    from .._rawio import paste_file as _paste_file
except ImportError:  # built without a C compiler: read.py reads slabs and pastes in numpy instead
    _paste_bytes = _paste_file = None


def decode(data: bytes, spec: ChunkSpec) -> np.ndarray:
    if len(data) != spec.nbytes:
        raise spec.error(f"has {len(data)} bytes, expected {spec.nbytes}")
    # a read-only view on the fetched bytes: no copy until it is pasted into the output
    return np.frombuffer(data, dtype=spec.dtype.newbyteorder("<")).reshape(spec.shape, order="F")


def encode(array: np.ndarray, spec: ChunkSpec) -> bytes:
    return np.asarray(array, dtype=spec.dtype.newbyteorder("<")).tobytes(order="F")


def decode_points(data: bytes, spec: ChunkSpec, xyz: np.ndarray) -> np.ndarray:
    """Values at chunk-local points ``xyz`` (N, 3): (N, C), read by linear offset (one
    ``take`` per chunk, cheaper than indexing the 4-D view with three arrays)."""
    ex, ey, ez, nc = spec.shape
    if np.any(xyz < 0) or np.any(xyz >= (ex, ey, ez)):
        raise IndexError(f"a point lies outside the chunk's shape {(ex, ey, ez)}")
    lin = xyz[:, 0] + ex * (xyz[:, 1] + ey * xyz[:, 2])
    return decode_offsets(data, spec, lin)


def decode_offsets(data: bytes, spec: ChunkSpec, offsets: np.ndarray) -> np.ndarray:
    """Values at linear voxel offsets ``offsets`` (N,) into the chunk (x fastest): (N, C).
    An offset outside the chunk is an IndexError."""
    ex, ey, ez, nc = spec.shape
    if offsets.dtype.kind != "u" and len(offsets) and offsets.min() < 0:  # take() would count from the end
        raise IndexError(f"a negative voxel offset into the chunk {(ex, ey, ez)}")
    values = decode(data, spec).reshape((ex * ey * ez, nc), order="F")  # a view: voxel, channel
    return values[:, 0].take(offsets)[:, np.newaxis] if nc == 1 else values.take(offsets, axis=0)


def point_ranges(spec: ChunkSpec, xyz: np.ndarray) -> list[tuple[int, int]]:
    """Byte ranges holding the voxels at ``xyz`` (N, 3), channel-major: all of channel 0 first,
    then one range over the chunk's last byte and the one after it, which tells a chunk of the
    wrong length (as :func:`decode` refuses it) without reading it whole."""
    ex, ey, _, _ = spec.shape
    return offset_ranges(spec, xyz[:, 0] + ex * (xyz[:, 1] + ey * xyz[:, 2]))


def offset_ranges(spec: ChunkSpec, offsets: np.ndarray) -> list[tuple[int, int]]:
    """:func:`point_ranges` for points given as linear voxel offsets (N,) into the chunk, x
    fastest. In Python, not numpy: it serves a few points a chunk, where numpy's per-call cost
    is most of the work."""
    ex, ey, ez, nc = spec.shape
    size, plane = spec.dtype.itemsize, ex * ey * ez * spec.dtype.itemsize
    starts = [o * size for o in offsets.tolist()]
    ranges = [(a + c * plane, a + c * plane + size) for c in range(nc) for a in starts]
    return ranges + [(spec.nbytes - 1, spec.nbytes + 1)]


def points_from_ranges(parts: list[bytes], spec: ChunkSpec, n: int) -> np.ndarray:
    """The (N, C) values of :func:`point_ranges`'s ranges once read."""
    *parts, tail = parts
    if len(tail) != 1:  # the last byte is missing, or there is more after it
        raise spec.error(f"is {'shorter' if not tail else 'longer'} than its {spec.nbytes} bytes")
    blob = b"".join(parts)
    if len(blob) != n * spec.shape[3] * spec.dtype.itemsize:
        raise spec.error(f"is shorter than its {spec.nbytes} bytes (a voxel read came back short)")
    return np.frombuffer(blob, dtype=spec.dtype.newbyteorder("<")).reshape(spec.shape[3], n).T


def slab_ranges(spec: ChunkSpec, z0: int, z1: int) -> list[tuple[int, int]]:
    """The byte ranges of z-slices ``[z0, z1)`` (one range per channel: a z-slab is contiguous
    in Fortran order), then the range over the chunk's last byte and the one after it that
    tells a chunk of the wrong length, as for :func:`point_ranges`."""
    ex, ey, ez, nc = spec.shape
    plane = ex * ey * spec.dtype.itemsize
    return [((c * ez + z0) * plane, (c * ez + z1) * plane) for c in range(nc)] + [(spec.nbytes - 1, spec.nbytes + 1)]


def slab_from_ranges(parts: list[bytes], spec: ChunkSpec, z0: int, z1: int) -> np.ndarray:
    """The ``(ex, ey, z1 - z0, C)`` values of :func:`slab_ranges`'s ranges once read (read-only
    views on the bytes when there is one channel)."""
    *slabs, tail = parts
    if len(tail) != 1:
        raise spec.error(f"is {'shorter' if not tail else 'longer'} than its {spec.nbytes} bytes")
    ex, ey, _, nc = spec.shape
    want = ex * ey * (z1 - z0) * spec.dtype.itemsize
    if any(len(s) != want for s in slabs):
        raise spec.error(f"is shorter than its {spec.nbytes} bytes (a slab read came back short)")
    dt = spec.dtype.newbyteorder("<")
    if nc == 1:
        return np.frombuffer(slabs[0], dtype=dt).reshape((ex, ey, z1 - z0, 1), order="F")
    return np.stack([np.frombuffer(s, dtype=dt).reshape((ex, ey, z1 - z0), order="F") for s in slabs], axis=3)


def _paste_from_file(path: str, spec: ChunkSpec, src: tuple[slice, slice, slice], channels: slice,
                     out: np.ndarray, dst_lo: tuple[int, int, int]) -> bool:
    """Paste voxels ``src`` of the plain raw chunk file at ``path`` into ``out`` at ``dst_lo``
    (``out`` Fortran-ordered, (X, Y, Z, C)), reading only the z-slab they lie in, in C without
    the GIL. False when there is no such file (the caller then tries the store's other
    variants, e.g. a ``.gz`` sibling); a file of the wrong size is a DecodeError."""
    ex, ey, ez, _ = spec.shape
    isz = spec.dtype.itemsize
    z0 = src[2].start
    z1 = src[2].stop
    nz = z1 - z0
    n = tuple(len(range(s.start, s.stop, s.step or 1)) for s in src)
    steps = tuple(s.step or 1 for s in src)
    sx, sy, sz, sc = out.strides
    base = dst_lo[0] * sx + dst_lo[1] * sy + dst_lo[2] * sz
    for k, c in enumerate(range(channels.start, channels.stop, channels.step)):
        size = _paste_file(path, spec.nbytes, (c * ez + z0) * ex * ey * isz, ex, ey, nz,
                           (src[0].start, src[1].start, 0), n, steps, isz, out, base + k * sc, (sx, sy, sz))
        if size < 0:
            if k:  # another writer removed it between channels
                raise spec.error("disappeared while it was read")
            return False
        if size != spec.nbytes:
            raise spec.error(f"has {size} bytes, expected {spec.nbytes}")
    return True


#: :func:`_paste_from_file` where the C extension is built, else None
paste_from_file: Callable[..., bool] | None = None if _paste_file is None else _paste_from_file


def _decode_into(data: bytes, spec: ChunkSpec, lo, hi, channels: slice, out: np.ndarray, dst_lo) -> bool:
    """Paste voxels ``[lo, hi)`` of a raw chunk in memory into ``out`` at ``dst_lo``, in C without
    the GIL (one row copy at a time; numpy's strided copy of 64-byte rows costs about twice as
    much). False, leaving it to :func:`decode`, where ``out`` is not a little-endian
    Fortran-ordered array of the chunk's type."""
    ex, ey, ez, nc = spec.shape
    dtype = spec.dtype
    isz = dtype.itemsize
    if len(data) != ex * ey * ez * nc * isz:
        raise spec.error(f"has {len(data)} bytes, expected {spec.nbytes}")
    if not (_LITTLE and out.flags.f_contiguous and out.dtype == dtype and out.dtype.isnative):
        return False
    x0, y0, z0 = lo
    x1, y1, z1 = hi
    n = (x1 - x0, y1 - y0, z1 - z0)
    sx, sy, sz, sc = out.strides
    strides = (sx, sy, sz)
    base = dst_lo[0] * sx + dst_lo[1] * sy + dst_lo[2] * sz
    lo = (x0, y0, z0)
    plane = ez * ey * ex * isz
    for k, c in enumerate(range(channels.start, channels.stop, channels.step)):
        _paste_bytes(data, c * plane, ex, ey, ez, lo, n, _UNIT, isz, out, base + k * sc, strides)
    return True


_LITTLE = np.little_endian
_UNIT = (1, 1, 1)


#: :func:`_decode_into` where the C extension is built, else None (read.py then decodes and
#: pastes with numpy)
decode_into: Callable[..., bool] | None = None if _paste_bytes is None else _decode_into
