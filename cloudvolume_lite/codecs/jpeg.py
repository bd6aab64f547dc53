"""``jpeg``: uint8, 1 (grayscale) or 3 (RGB) channels; lossy."""

from __future__ import annotations

import numpy as np

from . import ChunkSpec
from ._image import check_picture, chunk_to_pixels, pixels_to_chunk


def _check(spec: ChunkSpec) -> None:
    if spec.dtype != np.uint8:
        raise spec.error(f"jpeg holds uint8, not {spec.dtype}")
    if spec.shape[3] not in (1, 3):
        raise spec.error(f"jpeg holds 1 or 3 channels, not {spec.shape[3]}")


def decode(data: bytes, spec: ChunkSpec) -> np.ndarray:
    import simplejpeg

    _check(spec)
    data = bytes(data)
    try:
        height, width = simplejpeg.decode_jpeg_header(data)[:2]
    except (ValueError, RuntimeError, OSError) as e:
        raise spec.error(f"not a readable JPEG ({e})") from None
    check_picture(width, height, spec, "JPEG")  # before libjpeg-turbo allocates what the header claims
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="GRAY" if spec.shape[3] == 1 else "RGB")
    except (ValueError, RuntimeError, OSError) as e:
        raise spec.error(f"not a readable JPEG ({e})") from None
    return pixels_to_chunk(pixels, spec)


def encode(array: np.ndarray, spec: ChunkSpec) -> bytes:
    import simplejpeg

    _check(spec)
    quality = int(spec.scale.extra.get("jpeg_quality", 85))
    pixels = chunk_to_pixels(np.asarray(array, dtype=np.uint8), spec)
    if spec.shape[3] == 1:
        return simplejpeg.encode_jpeg(pixels, quality=quality, colorspace="GRAY", colorsubsampling="Gray")
    return simplejpeg.encode_jpeg(pixels, quality=quality, colorspace="RGB", colorsubsampling="444")
