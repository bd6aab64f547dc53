"""Point values read straight from plain chunk files on local disk: only the bytes the points
need, a batch of chunks per call, in C without the GIL (``_pointio.c``).

For a few points in a chunk, reading the chunk whole costs far more than the points: a 2 MiB raw
chunk or a 150 KiB compressed_segmentation chunk is copied from the page cache (50-200 us) for a
few 8-byte values. Here a raw point is one ``pread``; a compressed_segmentation point one or two
after one read of the chunk's block headers, each word checked as the in-memory C decoder checks
it (same messages), so a damaged chunk is the same error either way. About 10 us a chunk of
system calls (2-core box, page cache). Without the extension :func:`available` is False and
reads take the store's path.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

import numpy as np

from .codecs import _cseg_api

EXTENSION = "cloudvolume_lite._pointio"
#: ``kind`` of :func:`read_batch`
RAW, CSEG = 0, 1
#: per chunk, in ``status``: read; no plain file (absent, or only a compressed sibling); not
#: opened for another reason (the store's path says which)
DONE, NO_FILE, OTHER = 0, 1, 2


def _ext():
    if _cseg_api.disabled_by_env() or sys.byteorder != "little":  # the C code reads words in host order
        return None
    loaded = sys.modules.get(EXTENSION, False)
    if loaded is not False:
        return loaded  # None when planted there to hide the extension (tests do)
    try:
        return importlib.import_module(EXTENSION)
    except ImportError:
        return None


def available() -> bool:
    """Whether the extension is built and allowed (``CVL_NO_C_EXT`` turns it off too)."""
    return _ext() is not None


def read_batch(paths: Sequence[str], kind: int, dtype: np.dtype, nc: int, shapes: np.ndarray,
               block: Sequence[int], chunk: Sequence[int], offsets: np.ndarray, splits: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, tuple[int, str] | None]:
    """Values of chunks ``paths`` (each of clipped shape ``shapes[g]``) at ``offsets``
    (uint32, full-chunk strides, chunk ``g``'s at ``offsets[splits[g]:splits[g + 1]]``).

    Returns the values ((N, nc), ``dtype`` little-endian; rows of chunks not read are
    undefined), each chunk's status (:data:`DONE`, :data:`NO_FILE`, :data:`OTHER`), and the
    first damaged chunk as (g, what is wrong), None if none was: reading stops there."""
    ext = _ext()
    if ext is None:
        raise ImportError(f"{EXTENSION} is not available")
    dt = np.dtype(dtype).newbyteorder("<")
    out = np.empty((len(offsets), nc), dt)
    status = np.full(len(paths), OTHER, np.int64)
    damaged = ext.read_points([os.fsencode(p) for p in paths], kind, dt.itemsize, nc,
                              np.ascontiguousarray(shapes, np.int64), list(block), list(chunk),
                              np.ascontiguousarray(offsets, np.uint32), np.ascontiguousarray(splits, np.int64),
                              out, status)
    return out, status, damaged


__all__ = ["CSEG", "DONE", "EXTENSION", "NO_FILE", "OTHER", "RAW", "available", "read_batch"]
