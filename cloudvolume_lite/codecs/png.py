"""``png``: uint8 or uint16, 1-4 channels; lossless."""

from __future__ import annotations

import numpy as np

from . import ChunkSpec
from ._image import chunk_to_pixels, pixels_to_chunk


def _check(spec: ChunkSpec) -> None:
    if spec.dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise spec.error(f"png holds uint8 or uint16, not {spec.dtype}")
    if not 1 <= spec.shape[3] <= 4:
        raise spec.error(f"png holds 1 to 4 channels, not {spec.shape[3]}")


def decode(data: bytes, spec: ChunkSpec) -> np.ndarray:
    import pyspng

    _check(spec)
    try:
        pixels = pyspng.load(bytes(data))
    except Exception as e:  # pyspng raises plain RuntimeError/ValueError on bad streams
        raise spec.error(f"not a readable PNG ({e})") from None
    if pixels.dtype != spec.dtype:
        raise spec.error(f"PNG holds {pixels.dtype} samples, the volume is {spec.dtype}")
    return pixels_to_chunk(pixels, spec)


def encode(array: np.ndarray, spec: ChunkSpec) -> bytes:
    import pyspng

    _check(spec)
    level = int(spec.scale.extra.get("png_level", 6))
    pixels = chunk_to_pixels(np.asarray(array, dtype=spec.dtype), spec)
    if spec.shape[3] == 1:
        pixels = pixels[..., 0]
    return pyspng.encode(pixels, compress_level=level)
