"""``raw``: little-endian values in Fortran order over (x, y, z, c), no header."""

from __future__ import annotations

import numpy as np

from . import ChunkSpec


def decode(data: bytes, spec: ChunkSpec) -> np.ndarray:
    if len(data) != spec.nbytes:
        raise spec.error(f"has {len(data)} bytes, expected {spec.nbytes}")
    # a read-only view on the fetched bytes: no copy until it is pasted into the output
    return np.frombuffer(data, dtype=spec.dtype.newbyteorder("<")).reshape(spec.shape, order="F")


def encode(array: np.ndarray, spec: ChunkSpec) -> bytes:
    return np.asarray(array, dtype=spec.dtype.newbyteorder("<")).tobytes(order="F")


def decode_points(data: bytes, spec: ChunkSpec, xyz: np.ndarray) -> np.ndarray:
    """Values at chunk-local points ``xyz`` (N, 3): (N, C), read by byte offset."""
    return decode(data, spec)[xyz[:, 0], xyz[:, 1], xyz[:, 2], :]
