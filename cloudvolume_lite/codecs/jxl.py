"""``jxl``: JPEG XL, uint8, 1 or 3 channels (via ``imagecodecs``). ``jxl_quality`` >= 100 is
lossless, as in CloudVolume; ``jxl_effort`` and ``jxl_decodingspeed`` pass through.
Geometry as for the other image encodings: W = ex, H = ey * ez, checked by pixel count."""

from __future__ import annotations

import imagecodecs  # an ImportError here becomes UnsupportedEncodingError naming the extra
import numpy as np

from . import ChunkSpec
from ._image import chunk_to_pixels, pixels_to_chunk


def _check(spec: ChunkSpec) -> None:
    if spec.dtype != np.uint8 or spec.shape[3] not in (1, 3):
        raise spec.error(f"jxl holds uint8 with 1 or 3 channels, not {spec.dtype} x {spec.shape[3]}")


def decode(data: bytes, spec: ChunkSpec) -> np.ndarray:
    _check(spec)
    try:
        pixels = np.asarray(imagecodecs.jpegxl_decode(bytes(data)))
    except Exception as e:  # imagecodecs.JpegxlError and friends
        raise spec.error(f"not a readable JPEG XL image ({e})") from None
    return pixels_to_chunk(pixels, spec)


def encode(array: np.ndarray, spec: ChunkSpec) -> bytes:
    _check(spec)
    x = spec.scale.extra
    level = int(x.get("jxl_quality", 85))
    pixels = chunk_to_pixels(np.asarray(array, dtype=np.uint8), spec)
    if spec.shape[3] == 1:
        pixels = pixels[..., 0]
    return imagecodecs.jpegxl_encode(
        pixels, level=level, lossless=level >= 100, effort=int(x.get("jxl_effort", 5)),
        decodingspeed=int(x.get("jxl_decodingspeed", 0)), photometric="GRAY" if spec.shape[3] == 1 else "RGB",
    )
