"""``jxl``: JPEG XL, uint8, 1 or 3 channels (via ``imagecodecs``). ``jxl_quality`` >= 100 is
lossless, as in CloudVolume; ``jxl_effort`` and ``jxl_decodingspeed`` pass through.
Geometry as for the other image encodings: W = ex, H = ey * ez, checked by pixel count.

The codestream's size header is read here (a few bits after the ``FF 0A`` signature, also
inside the ISO BMFF container) so that a picture of another size, or an animation, is
refused before the decoder allocates what it claims.
"""

from __future__ import annotations

import imagecodecs  # an ImportError here becomes UnsupportedEncodingError naming the extra
import numpy as np

from . import ChunkSpec
from ._image import check_picture, chunk_to_pixels, pixels_to_chunk

_CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
#: aspect ratios a size header may name instead of a width (numerator, denominator)
_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}
_DIM = ((9, 1), (13, 1), (18, 1), (30, 1))  # U32 distribution of an image dimension
_PREVIEW_DIV8 = ((0, 16), (0, 32), (5, 1), (9, 33))
_PREVIEW = ((6, 1), (8, 65), (10, 321), (12, 1345))


class _Bits:
    """JPEG XL's bit reader: least significant bit first; zeros past the end."""

    def __init__(self, data: bytes, start: int):
        self.data, self.pos = data, start * 8

    def u(self, n: int) -> int:
        v = 0
        for i in range(n):
            at = self.pos >> 3
            byte = self.data[at] if at < len(self.data) else 0
            v |= ((byte >> (self.pos & 7)) & 1) << i
            self.pos += 1
        return v

    def u32(self, dist: tuple[tuple[int, int], ...]) -> int:
        bits, offset = dist[self.u(2)]
        return offset + (self.u(bits) if bits else 0)


def _size(r: _Bits) -> tuple[int, int]:
    div8 = r.u(1)
    height = (1 + r.u(5)) * 8 if div8 else r.u32(_DIM)
    ratio = r.u(3)
    if ratio:
        num, den = _RATIOS[ratio]
        return height * num // den, height
    return ((1 + r.u(5)) * 8 if div8 else r.u32(_DIM)), height


def _skip_preview(r: _Bits) -> None:
    div8 = r.u(1)
    r.u32(_PREVIEW_DIV8 if div8 else _PREVIEW)
    if not r.u(3):
        r.u32(_PREVIEW_DIV8 if div8 else _PREVIEW)


def _codestream_start(data: bytes) -> int | None:
    """Where the codestream begins: 0 for a bare one, inside the jxlc/jxlp box of a container."""
    if data[:2] == b"\xff\x0a":
        return 0
    if not data.startswith(_CONTAINER):
        return None
    at = len(_CONTAINER)
    while at + 8 <= len(data):
        size, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8]
        head = 8
        if size == 1:
            size, head = int.from_bytes(data[at + 8 : at + 16], "big"), 16
        if kind == b"jxlc":
            return at + head
        if kind == b"jxlp":
            return at + head + 4  # after the part's index
        if size == 0:
            return None
        at += max(size, head)
    return None


def header(data: bytes) -> tuple[int, int, bool] | None:
    """(width, height, animated) from a JPEG XL stream's headers, or None if it has none."""
    start = _codestream_start(data)
    if start is None or data[start : start + 2] != b"\xff\x0a":
        return None
    r = _Bits(data, start + 2)
    width, height = _size(r)
    animated = False
    if not r.u(1) and r.u(1):  # not all_default, and extra_fields
        r.u(3)  # orientation
        if r.u(1):
            _size(r)  # intrinsic size
        if r.u(1):
            _skip_preview(r)
        animated = bool(r.u(1))
    return width, height, animated


def _check(spec: ChunkSpec) -> None:
    if spec.dtype != np.uint8 or spec.shape[3] not in (1, 3):
        raise spec.error(f"jxl holds uint8 with 1 or 3 channels, not {spec.dtype} x {spec.shape[3]}")


def decode(data: bytes, spec: ChunkSpec) -> np.ndarray:
    _check(spec)
    data = bytes(data)
    head = header(data)
    if head is None:
        raise spec.error("not a JPEG XL stream (no codestream signature)")
    check_picture(head[0], head[1], spec, "JPEG XL")
    if head[2]:
        raise spec.error("the JPEG XL stream is an animation; a chunk is one picture")
    try:
        pixels = np.asarray(imagecodecs.jpegxl_decode(data))
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
