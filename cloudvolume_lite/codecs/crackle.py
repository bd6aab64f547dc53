"""``crackle``: segmentation, one channel (the ``crackle-codec`` package).

The header (magic ``crkl``) is checked against the chunk before decoding; points decode only
the z-slices they fall in.
"""

from __future__ import annotations

import crackle  # missing: get_codec names the extra to install
import numpy as np

from . import ChunkSpec


def _check(data: bytes, spec: ChunkSpec):  # noqa: ANN202
    if spec.shape[3] != 1:
        raise spec.error(f"crackle holds one channel, not {spec.shape[3]}")
    if len(data) < 4 or bytes(data[:4]) != b"crkl":
        raise spec.error("not a crackle stream (no 'crkl' header)")
    try:
        head = crackle.header(bytes(data))
    except Exception as e:  # crackle raises its own FormatError and assorted others
        raise spec.error(f"crackle header unreadable ({e})") from None
    if (head.sx, head.sy, head.sz) != spec.shape[:3]:
        raise spec.error(f"crackle header says {head.sx}x{head.sy}x{head.sz}")
    if head.data_width > spec.dtype.itemsize:  # its labels would be cut to fit: wrong values, silently
        raise spec.error(f"crackle header says {head.data_width}-byte labels, wider than the volume's {spec.dtype}")
    return crackle


def decode(data: bytes, spec: ChunkSpec) -> np.ndarray:
    crackle = _check(data, spec)
    try:
        vol = crackle.decompress(bytes(data))
    except Exception as e:
        raise spec.error(f"crackle could not decode it ({e})") from None
    return np.asarray(vol, dtype=spec.dtype).reshape(spec.shape, order="F")


def encode(array: np.ndarray, spec: ChunkSpec) -> bytes:
    arr = np.asfortranarray(np.asarray(array, dtype=spec.dtype).reshape(spec.shape, order="F")[..., 0])
    return crackle.compress(arr)


def decode_points(data: bytes, spec: ChunkSpec, xyz: np.ndarray) -> np.ndarray:
    """Decode just the z-slices the points touch."""
    crackle = _check(data, spec)
    z0, z1 = int(xyz[:, 2].min()), int(xyz[:, 2].max()) + 1
    try:
        part = np.asarray(crackle.CrackleArray(bytes(data))[:, :, z0:z1])
    except Exception as e:
        raise spec.error(f"crackle could not decode it ({e})") from None
    part = part.reshape(spec.shape[0], spec.shape[1], z1 - z0)
    return part[xyz[:, 0], xyz[:, 1], xyz[:, 2] - z0].astype(spec.dtype)[:, None]
