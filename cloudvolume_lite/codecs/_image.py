"""Shared geometry for image codecs: a chunk is one 2-D picture of stacked z-slices."""

from __future__ import annotations

import numpy as np

from . import ChunkSpec


def check_picture(width: int, height: int, spec: ChunkSpec, what: str) -> None:
    """Refuse, before anything is decoded or allocated, a picture whose header (``what``: the
    format's name) states another pixel count than the chunk's: a damaged or hostile header
    (20000x20000 for a 64x64x64 chunk) must not cost what it claims."""
    ex, ey, ez, _ = spec.shape
    if width * height != ex * ey * ez:
        raise spec.error(f"its {what} header says {width}x{height} = {width * height} pixels, expected "
                         f"{ex * ey * ez} ({ex}x{ey}x{ez}); refused before decoding")


def pixels_to_chunk(pixels: np.ndarray, spec: ChunkSpec) -> np.ndarray:
    """(H, W[, C]) decoded pixels -> (ex, ey, ez, nc), trusting the pixel count, not W and H.

    Older TensorStore wrote other W/H splits with the bytes in the same linear order, so
    only ``W * H == ex * ey * ez`` is checked (as Neuroglancer and TensorStore do).
    """
    ex, ey, ez, nc = spec.shape
    if pixels.ndim == 2:
        pixels = pixels[..., np.newaxis]
    if pixels.ndim != 3:
        raise spec.error(f"image decodes to {pixels.ndim} dimensions {pixels.shape}, not one picture")
    h, w, c = pixels.shape
    if h * w != ex * ey * ez:
        raise spec.error(f"image is {w}x{h} = {w * h} pixels, expected {ex * ey * ez} ({ex}x{ey}x{ez})")
    if c != nc:
        raise spec.error(f"image has {c} colour components, the volume has {nc} channels")
    # row-major pixels run x fastest, then y, then z: a C-order (z, y, x, c) array
    return pixels.reshape(ez, ey, ex, nc).transpose(2, 1, 0, 3)


def chunk_to_pixels(array: np.ndarray, spec: ChunkSpec) -> np.ndarray:
    """(ex, ey, ez, nc) -> a C-contiguous (ey*ez, ex, nc) picture: W = ex, H = ey * ez."""
    ex, ey, ez, nc = spec.shape
    arr = np.asarray(array).reshape(ex, ey, ez, nc)
    return np.ascontiguousarray(arr.transpose(2, 1, 0, 3)).reshape(ez * ey, ex, nc)
