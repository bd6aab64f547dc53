"""``fpzip``: float32/float64 chunks, lossless or reduced precision (``fpzip_precision`` in info).

The whole Fortran-order (x, y, z, c) chunk is one fpzip stream; its own header holds the
dimensions, which must match the chunk.
"""

from __future__ import annotations

import fpzip  # missing: get_codec names the extra to install
import numpy as np

from . import ChunkSpec


def check_float(spec: ChunkSpec) -> None:
    if spec.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise spec.error(f"{spec.scale.encoding} holds float32 or float64, not {spec.dtype}")


def unpack(data: bytes, spec: ChunkSpec) -> np.ndarray:
    """The stream's array, 4-D, as stored (Fortran order)."""
    check_float(spec)
    if len(data) < 4 or bytes(data[:4]) != b"fpy)":  # the fpzip package's stream header
        raise spec.error("not an fpzip stream (no 'fpy)' header)")
    try:
        arr = fpzip.decompress(bytes(data), order="F")
    except Exception as e:  # fpzip raises its own FpzipReadError and others
        raise spec.error(f"fpzip could not decode it ({e})") from None
    while arr.ndim < 4:
        arr = arr[..., np.newaxis]
    return arr


def decode(data: bytes, spec: ChunkSpec) -> np.ndarray:
    arr = unpack(data, spec)
    if arr.shape != spec.shape:
        raise spec.error(f"fpzip stream holds {arr.shape}")
    return arr.astype(spec.dtype, copy=False)


def encode(array: np.ndarray, spec: ChunkSpec) -> bytes:
    check_float(spec)
    arr = np.asfortranarray(np.asarray(array, dtype=spec.dtype).reshape(spec.shape, order="F"))
    return fpzip.compress(arr, order="F", precision=int(spec.scale.extra.get("fpzip_precision", 0)))
