"""Keyword-only, typed front for the C compressed_segmentation extension (``cloudvolume_lite._cseg``).

The extension takes long positional argument lists; this module names them, so a call site
cannot swap ``lo`` and ``hi`` unnoticed. :func:`available` decides at each call whether the
extension may be used: it is absent when no C compiler built it, when something put ``None``
in ``sys.modules['cloudvolume_lite._cseg']`` (tests do), or when the ``CVL_NO_C_EXT``
environment variable is set to a non-empty value other than ``0``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

import numpy as np

EXTENSION = "cloudvolume_lite._cseg"
DISABLE_ENV = "CVL_NO_C_EXT"
_ABSENT = object()


def disabled_by_env() -> bool:
    """True when ``CVL_NO_C_EXT`` asks for the numpy decoder (read now, not at import)."""
    return os.environ.get(DISABLE_ENV, "") not in ("", "0")


def _load() -> ModuleType | None:
    if disabled_by_env():
        return None
    loaded = sys.modules.get(EXTENSION, _ABSENT)  # asked per chunk: a dict lookup, not an import
    if loaded is not _ABSENT:
        return loaded  # type: ignore[return-value]  # None when planted there to hide the extension
    try:
        # import_module (not ``from .. import``) honours a None planted in sys.modules
        return importlib.import_module(EXTENSION)
    except ImportError:
        return None


def available() -> bool:
    """Whether the C extension is built and allowed; cheap enough to ask per chunk."""
    return _load() is not None


def _ext() -> ModuleType:
    ext = _load()
    if ext is None:
        raise ImportError(f"{EXTENSION} is not available (not built, hidden, or {DISABLE_ENV} is set)")
    return ext


def decode_into(
    *,
    data: bytes,
    itemsize: int,
    chunk_shape: Sequence[int],
    num_channels: int,
    block_size: Sequence[int],
    lo: Sequence[int],
    hi: Sequence[int],
    channel_start: int,
    channel_step: int,
    channel_count: int,
    out: np.ndarray,
    dst_lo: Sequence[int],
) -> None:
    """Decode chunk-local ``[lo, hi)`` of channels ``channel_start + k*channel_step`` into ``out``.

    ``out`` is a 4-D Fortran-order array of the chunk's dtype; the window lands at
    ``out[dst_lo[0]:, dst_lo[1]:, dst_lo[2]:, 0:channel_count]``. Releases the GIL. Raises
    ``ValueError`` for a corrupt chunk or a window outside the chunk or ``out``, and
    ``ImportError`` when the extension is not available.
    """
    if out.ndim != 4 or not out.flags.f_contiguous:
        raise ValueError("out must be a 4-D Fortran-order array")
    # runs once per chunk: the sequences go to C as they are (it takes any integers, numpy's
    # included, and checks each count), not rebuilt as lists here
    _ext().decode_into(
        data, itemsize, chunk_shape, num_channels, block_size, lo, hi, channel_start, channel_step, channel_count,
        out.reshape(-1, order="F"), out.shape, dst_lo,
    )


def lookup_points(
    *,
    data: bytes,
    itemsize: int,
    chunk_shape: Sequence[int],
    num_channels: int,
    block_size: Sequence[int],
    xyz: np.ndarray,
    out: np.ndarray,
) -> None:
    """Values at chunk-local points ``xyz`` ((N, 3) C-contiguous int64) into ``out`` ((N, C) C order).

    Releases the GIL. Raises ``ValueError`` for a corrupt chunk or a point outside it, and
    ``ImportError`` when the extension is not available.
    """
    if xyz.dtype != np.int64 or not xyz.flags.c_contiguous or not out.flags.c_contiguous:
        raise ValueError("xyz must be C-contiguous int64 and out C-contiguous")
    _ext().lookup_points(
        data, int(itemsize), [int(v) for v in chunk_shape], int(num_channels), [int(v) for v in block_size],
        xyz, out,
    )


def lookup_offsets(
    *,
    data: bytes,
    itemsize: int,
    chunk_shape: Sequence[int],
    num_channels: int,
    block_size: Sequence[int],
    offsets: np.ndarray,
    out: np.ndarray,
) -> None:
    """:func:`lookup_points` for points given as linear offsets ((N,) C-contiguous uint32, x
    fastest) into a chunk of shape ``chunk_shape``: no (N, 3) coordinates to build."""
    if offsets.dtype != np.uint32 or not offsets.flags.c_contiguous or not out.flags.c_contiguous:
        raise ValueError("offsets must be C-contiguous uint32 and out C-contiguous")
    _ext().lookup_offsets(
        data, int(itemsize), [int(v) for v in chunk_shape], int(num_channels), [int(v) for v in block_size],
        offsets, out,
    )


def group_points(
    *,
    pts: np.ndarray,
    voxel_offset: Sequence[int],
    size: Sequence[int],
    chunk_size: Sequence[int],
    grid_size: Sequence[int],
    order: np.ndarray,
    offsets: np.ndarray,
    counts: np.ndarray,
) -> None:
    """Group ``pts`` ((N, 3) C-contiguous int64, global voxel coordinates) by chunk: a counting sort.

    ``counts`` ((prod(grid_size) + 1,) int64) gets each chunk's number of points (x fastest),
    the last entry those outside the volume; ``order`` ((N,) int64) the point indices chunk by
    chunk, ascending within one, outside points last; ``offsets`` ((N,) uint32, same order) their
    chunk-local offsets with a full chunk's strides. Releases the GIL. Raises ``ValueError`` when
    the buffers do not fit (or a chunk holds 2**32 voxels or more), ``ImportError`` when the
    extension is not available.
    """
    if pts.dtype != np.int64 or not pts.flags.c_contiguous or pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError("pts must be (N, 3) C-contiguous int64")
    for name, arr, dt in (("order", order, np.int64), ("offsets", offsets, np.uint32), ("counts", counts, np.int64)):
        if arr.dtype != dt or not arr.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous {np.dtype(dt).name}")
    _ext().group_points(pts, [int(v) for v in voxel_offset], [int(v) for v in size], [int(v) for v in chunk_size],
                        [int(v) for v in grid_size], order, offsets, counts)


def encode(*, array: np.ndarray, block_size: Sequence[int]) -> bytes:
    """The compressed_segmentation bytes of a 4-D (x, y, z, c) uint32/uint64 array (any strides).

    Byte-identical to the reference encoders (tables sorted and shared). Releases the GIL.
    Raises ``ValueError`` when a channel outgrows the format's 24-bit offsets, and
    ``ImportError`` when the extension is not available.
    """
    return _ext().encode(array, [int(v) for v in block_size])


__all__ = ["DISABLE_ENV", "EXTENSION", "available", "decode_into", "disabled_by_env", "encode", "group_points",
           "lookup_offsets", "lookup_points"]
