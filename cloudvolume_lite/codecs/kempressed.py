"""``kempressed``: fpzip of ``2.0 + chunk`` with the z and channel axes swapped (CloudVolume's
convention for affinity-like maps in [0, 1])."""

from __future__ import annotations

import fpzip  # missing: get_codec names the extra to install
import numpy as np

from . import ChunkSpec
from .fpzip import check_float, unpack


def decode(data: bytes, spec: ChunkSpec) -> np.ndarray:
    arr = unpack(data, spec)
    ex, ey, ez, nc = spec.shape
    if arr.shape != (ex, ey, nc, ez):
        raise spec.error(f"kempressed stream holds {arr.shape}, expected {(ex, ey, nc, ez)}")
    return (np.swapaxes(arr, 2, 3) - 2.0).astype(spec.dtype)


def encode(array: np.ndarray, spec: ChunkSpec) -> bytes:
    check_float(spec)
    arr = np.asarray(array, dtype=spec.dtype).reshape(spec.shape, order="F")
    return fpzip.compress(np.asfortranarray(2.0 + np.swapaxes(arr, 2, 3)).astype(spec.dtype), order="F")
