"""The disk cache's file format: a 24-byte header (magic, version, checksum kind, generation
length, when the copy was fetched or last checked, a checksum over the file's place in the cache,
the header, the generation and the bytes), the generation, then the chunk bytes. Version-1 files
(no checksum) and headerless files of older versions are still read (see ``DiskCache.load``)."""

from __future__ import annotations

import os
import struct
import zlib
from typing import NamedTuple


#: the first 8 bytes of a cache file with a header: like PNG's, a high byte (not ASCII), a
#: name, CR LF (caught by newline conversion), ^Z and LF
MAGIC = b"\x89CVL\r\n\x1a\n"
#: the header layout this version writes (version 1, without a checksum, is still read)
HEADER_VERSION = 2
# magic, version, flags, generation length in bytes (0: unknown), checked_at (float64): both versions
_HEAD = struct.Struct("<8sBBHd")
# version 2 goes on with the checksum (uint32), then the generation
_SUM = struct.Struct("<I")
#: the checksum kinds, in the low two bits of the flags byte (0 never appears in a version-2 file)
CRC32C, CRC32 = 1, 2
_KIND_BITS = 0x03

try:  # crc32c at ~11 GB/s with the C extension; zlib's crc32 (~4 GB/s) otherwise
    import google_crc32c as _crc32c
except ImportError:  # pragma: no cover - google-crc32c comes with the gcs extra
    _crc32c = None  # type: ignore[assignment]
#: the checksum kind this installation writes
WRITE_KIND = CRC32C if _crc32c is not None and _crc32c.implementation == "c" else CRC32


def _checksum(kind: int, head: bytes, data: bytes) -> int | None:
    """``kind``'s checksum of ``head`` then ``data`` (no copy of ``data``); None when this
    installation cannot compute that kind."""
    if kind == CRC32C and _crc32c is not None:
        if not isinstance(data, bytes):
            data = bytes(data)  # the C extension wants read-only bytes (writes only: reads are bytes)
        return _crc32c.extend(_crc32c.value(head), data)
    if kind == CRC32:
        return zlib.crc32(data, zlib.crc32(head))
    return None


def _covered(place: str, head: bytes, generation: bytes) -> bytes:
    """What the checksum covers besides the data: the file's place in the cache (so another
    key's valid file copied over this one does not pass), the header's first 20 bytes and the
    generation."""
    return os.fsencode(place) + b"\0" + head + generation


def encode_header(generation: str | None, checked_at: float) -> bytes:
    """The header of a version-1 cache file, as the previous version wrote it (still read, as
    unchecked): ``MAGIC``, version 1, flags 0, the generation's length (uint16, 0: unknown),
    when the copy was fetched or last checked (float64 ``time.time()``), all little-endian (20
    bytes), then the generation in UTF-8. This version writes :func:`encode_header2`."""
    gen = b"" if generation is None else generation.encode("utf-8")
    if len(gen) > 0xFFFF:
        gen = b""  # no store names a generation this long; unknown is always safe
    return _HEAD.pack(MAGIC, 1, 0, len(gen), float(checked_at)) + gen


def encode_header2(place: str, generation: str | None, checked_at: float, data: bytes,
                   kind: int = WRITE_KIND) -> bytes:
    """The header of a version-2 cache file holding ``data`` at ``place`` (its path below the
    cache root, ``/``-separated). Little-endian, 24 bytes, then the generation in UTF-8:

    ======  =====  ==========================================================================
    offset  bytes  field
    ======  =====  ==========================================================================
    0       8      ``MAGIC``
    8       1      version: 2
    9       1      flags: bits 0-1 the checksum kind (1: crc32c, 2: zlib's crc32); others 0
    10      2      the generation's length in bytes (uint16; 0: unknown)
    12      8      when the copy was fetched or last checked (float64 ``time.time()``)
    20      4      checksum (uint32) of: ``place`` in UTF-8, a NUL byte, bytes 0-19 of this
                   header, the generation, the data
    ======  =====  ==========================================================================
    """
    gen = b"" if generation is None else generation.encode("utf-8")
    if len(gen) > 0xFFFF:
        gen = b""  # no store names a generation this long; unknown is always safe
    head = _HEAD.pack(MAGIC, HEADER_VERSION, kind, len(gen), float(checked_at))
    crc = _checksum(kind, _covered(place, head, gen), data)
    if crc is None:
        raise ValueError(f"checksum kind {kind} cannot be computed here")
    return head + _SUM.pack(crc) + gen


class CachedCopy(NamedTuple):
    """A cache file's contents: the bytes, the generation they are of (None: unknown) and when
    they were fetched or last checked against the store (0: never, a file of an older version)."""

    data: bytes
    generation: str | None
    checked_at: float


class Damaged(NamedTuple):
    """What :meth:`DiskCache.inspect` found instead of a copy: the file at ``path`` failed its
    check (``reason``) and was removed."""

    path: str
    reason: str
