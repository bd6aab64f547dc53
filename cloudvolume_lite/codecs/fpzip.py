"""``fpzip``: float32/float64 chunks, lossless or reduced precision (``fpzip_precision`` in info).

The whole Fortran-order (x, y, z, c) chunk is one fpzip stream; its own header holds the
type and the dimensions, which are read here (:func:`header`) and must match the chunk
before the library allocates what they claim.
"""

from __future__ import annotations

import math

import fpzip  # missing: get_codec names the extra to install
import numpy as np

from . import ChunkSpec

_M32 = 0xFFFFFFFF
_TYPES = {0: np.dtype(np.float32), 1: np.dtype(np.float64)}


class _RangeDecoder:
    """fpzip's 32-bit carryless range decoder, as far as its header needs (uniform symbols)."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0
        self.low, self.range, self.code = 0, _M32, 0
        self._get(4)

    def _get(self, n: int) -> None:
        for _ in range(n):
            byte = self.data[self.at] if self.at < len(self.data) else 0
            self.at += 1
            self.code = ((self.code << 8) | byte) & _M32
            self.low = (self.low << 8) & _M32

    def _normalize(self) -> None:
        while not ((self.low ^ ((self.low + self.range) & _M32)) >> 24):
            self._get(1)
            self.range = (self.range << 8) & _M32
        if not self.range >> 16:
            self._get(2)
            self.range = -self.low & _M32

    def shift(self, n: int) -> int:
        """A uniform n-bit symbol, n <= 16."""
        self.range >>= n
        if not self.range:
            raise ValueError("range coder underflow")
        s = ((self.code - self.low) & _M32) // self.range
        self.low = (self.low + self.range * s) & _M32
        self._normalize()
        return s

    def number(self, n: int) -> int:
        """A uniform n-bit number, 16 bits at a time from the low end."""
        value = shift = 0
        while n > 16:
            value |= self.shift(16) << shift
            n, shift = n - 16, shift + 16
        return value | (self.shift(n) << shift)


def header(data: bytes) -> tuple[np.dtype, tuple[int, int, int, int]] | None:
    """(dtype, (nx, ny, nz, nf)) from an fpzip stream's header, or None if it is not one."""
    try:
        rc = _RangeDecoder(bytes(data[:64]))
        if bytes(rc.shift(8) for _ in range(4)) != b"fpz\x00":
            return None
        rc.shift(16), rc.shift(8)  # format version
        kind = rc.shift(1)
        rc.shift(7)  # precision
        dims = tuple(rc.number(32) for _ in range(4))
    except ValueError:
        return None
    return _TYPES[kind], dims  # type: ignore[return-value]


def check_float(spec: ChunkSpec) -> None:
    if spec.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise spec.error(f"{spec.scale.encoding} holds float32 or float64, not {spec.dtype}")


def unpack(data: bytes, spec: ChunkSpec) -> np.ndarray:
    """The stream's array, 4-D, as stored (Fortran order), once its header matches the chunk."""
    check_float(spec)
    if len(data) < 4 or bytes(data[:4]) != b"fpy)":  # the fpzip package's stream header
        raise spec.error("not an fpzip stream (no 'fpy)' header)")
    head = header(data)
    if head is None:
        raise spec.error("not an fpzip stream (unreadable header)")
    dtype, dims = head
    if dtype != spec.dtype:
        raise spec.error(f"the fpzip stream holds {dtype}, the volume is {spec.dtype}")
    if math.prod(dims) != math.prod(spec.shape):
        raise spec.error(f"its fpzip header says {'x'.join(map(str, dims))} values, expected {spec.shape}; "
                         "refused before decoding")
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
