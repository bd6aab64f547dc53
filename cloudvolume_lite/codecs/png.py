"""``png``: uint8 or uint16, 1-4 channels; lossless.

pyspng (libspng) does the work, except where it is wrong: it mis-decodes 16-bit grayscale
(returns two garbage components) and pads 16-bit RGB to RGBA, and it cannot encode 16-bit
gray or RGB. Those cases go through Pillow (gray16) or slicing, and a tiny encoder here.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from . import ChunkSpec
from ._image import check_picture, chunk_to_pixels, pixels_to_chunk

_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type


def _check(spec: ChunkSpec) -> None:
    if spec.dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise spec.error(f"png holds uint8 or uint16, not {spec.dtype}")
    if not 1 <= spec.shape[3] <= 4:
        raise spec.error(f"png holds 1 to 4 channels, not {spec.shape[3]}")


def _header(data: bytes) -> tuple[int, int, int, int] | None:
    """(width, height, bit depth, colour type) from the IHDR chunk, or None if this is not a PNG."""
    if len(data) < 33 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return width, height, data[24], data[25]


def decode(data: bytes, spec: ChunkSpec) -> np.ndarray:
    import pyspng

    _check(spec)
    data = bytes(data)
    head = _header(data)
    if head is None:
        raise spec.error("not a PNG (bad signature or header)")
    check_picture(head[0], head[1], spec, "PNG")  # before libspng allocates what the header claims
    hdr = head[2:]
    try:
        if hdr == (16, 0):
            import io

            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                pixels = np.asarray(im, dtype=np.uint16) if im.mode.startswith("I;16") else None
            if pixels is None:
                raise ValueError("16-bit grayscale PNG not decoded as I;16")
        else:
            pixels = pyspng.load(data)
            if hdr == (16, 2) and pixels.ndim == 3 and pixels.shape[2] == 4:
                pixels = pixels[..., :3]  # libspng hands 16-bit RGB back as RGBA
    except Exception as e:  # pyspng and Pillow raise assorted errors on bad streams
        raise spec.error(f"not a readable PNG ({e})") from None
    if pixels.dtype != spec.dtype:
        raise spec.error(f"PNG holds {pixels.dtype} samples, the volume is {spec.dtype}")
    return pixels_to_chunk(pixels, spec)


def _encode_plain(pixels: np.ndarray, level: int) -> bytes:
    """A minimal PNG (filter 0 on every row) for what pyspng cannot encode."""
    h, w, c = pixels.shape
    depth = pixels.dtype.itemsize * 8
    rows = pixels.astype(pixels.dtype.newbyteorder(">")).reshape(h, w * c).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", w, h, depth, _COLOR_TYPES[c], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, level)) + chunk(b"IEND", b"")


def encode_picture(pixels: np.ndarray, level: int = 6) -> bytes:
    """PNG bytes of a (H, W) or (H, W, C) uint8/uint16 picture, C in 1..4."""
    import pyspng

    if pixels.ndim == 2:
        pixels = pixels[..., np.newaxis]
    if pixels.dtype == np.uint16 and pixels.shape[2] in (1, 3):
        return _encode_plain(pixels, level)
    pixels = np.ascontiguousarray(pixels)
    return pyspng.encode(pixels[..., 0] if pixels.shape[2] == 1 else pixels, compress_level=level)


def encode(array: np.ndarray, spec: ChunkSpec) -> bytes:
    _check(spec)
    level = int(spec.scale.extra.get("png_level", 6))
    return encode_picture(chunk_to_pixels(np.asarray(array, dtype=spec.dtype), spec), level)
