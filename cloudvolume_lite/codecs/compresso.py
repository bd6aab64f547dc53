"""``compresso``: segmentation, one channel (the seung-lab ``compresso`` package).

The stream is self-describing (a 36-byte header with magic ``cpso`` and the dimensions),
which is checked against the chunk before the library sees it. Points decode only the
z-slices they fall in.
"""

from __future__ import annotations

import struct

import compresso  # missing: get_codec names the extra to install
import numpy as np

from . import ChunkSpec


def _check(data: bytes, spec: ChunkSpec) -> None:
    if spec.shape[3] != 1:
        raise spec.error(f"compresso holds one channel, not {spec.shape[3]}")
    if spec.dtype.kind != "u":
        raise spec.error(f"compresso holds unsigned integers, not {spec.dtype}")
    if len(data) < 36 or bytes(data[:4]) != b"cpso":
        raise spec.error("not a compresso stream (no 'cpso' header)")
    width = data[5]
    sx, sy, sz = struct.unpack("<HHH", bytes(data[6:12]))
    if (sx, sy, sz) != spec.shape[:3] or width not in (1, 2, 4, 8):
        raise spec.error(f"compresso header says {sx}x{sy}x{sz} of {width}-byte labels")
    if width > spec.dtype.itemsize:  # its labels would be cut to fit: wrong values, silently
        raise spec.error(f"compresso header says {width}-byte labels, wider than the volume's {spec.dtype}")


def _run(fn, spec: ChunkSpec):  # noqa: ANN001, ANN202
    try:
        return fn(compresso)
    except (compresso.DecodeError, ValueError, IndexError, RuntimeError) as e:
        raise spec.error(f"compresso could not decode it ({e})") from None


def decode(data: bytes, spec: ChunkSpec) -> np.ndarray:
    _check(data, spec)
    vol = _run(lambda c: c.decompress(bytes(data)), spec)
    return np.asarray(vol, dtype=spec.dtype).reshape(spec.shape, order="F")


def encode(array: np.ndarray, spec: ChunkSpec) -> bytes:
    arr = np.asfortranarray(np.asarray(array, dtype=spec.dtype).reshape(spec.shape, order="F")[..., 0])
    return compresso.compress(arr)


def decode_points(data: bytes, spec: ChunkSpec, xyz: np.ndarray) -> np.ndarray:
    """Decode just the z-slices the points touch."""
    _check(data, spec)
    z0, z1 = int(xyz[:, 2].min()), int(xyz[:, 2].max()) + 1
    part = np.asarray(_run(lambda c: c.decompress(bytes(data), z=(z0, z1)), spec))
    return part[xyz[:, 0], xyz[:, 1], xyz[:, 2] - z0].astype(spec.dtype)[:, None]
