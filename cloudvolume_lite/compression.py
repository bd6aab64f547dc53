"""Transport compression (gzip, brotli, zstd): what HTTP Content-Encoding or a ``.gz`` file adds."""

from __future__ import annotations

import gzip
import zlib

from .errors import DecodeError, UnsupportedEncodingError

#: local-disk suffix for each transport encoding, in the order CloudVolume writes them.
SUFFIXES = {"gzip": ".gz", "br": ".br", "zstd": ".zstd"}
GZIP_MAGIC = b"\x1f\x8b"


def normalize(encoding: str | None) -> str | None:
    """Canonical name of a transport encoding (``None`` for identity)."""
    if encoding is None:
        return None
    e = encoding.strip().lower()
    if e in ("", "identity", "raw", "none"):
        return None
    if e in ("gzip", "gz", "x-gzip"):
        return "gzip"
    if e in ("br", "brotli"):
        return "br"
    if e in ("zstd", "zstandard"):
        return "zstd"
    raise UnsupportedEncodingError(f"unknown transport compression {encoding!r}; use gzip, br, zstd or none")


def _gunzip(data: bytes) -> bytes:
    try:
        import deflate  # libdeflate: ~1.8x zlib's speed when installed
    except ImportError:
        deflate = None
    if deflate is not None:
        try:
            return bytes(deflate.gzip_decompress(data))  # a bytearray: callers and caches get immutable bytes
        except Exception:
            pass  # libdeflate handles one member only; multi-member files fall through to zlib
    return gzip.decompress(data)


def decompress(data: bytes, encoding: str | None, what: str = "object") -> bytes:
    """Undo a transport encoding; a corrupt stream is a :class:`DecodeError` naming ``what``."""
    enc = normalize(encoding)
    if enc is None:
        return data
    try:
        if enc == "gzip":
            return _gunzip(data)
        if enc == "br":
            import brotli

            return brotli.decompress(data)
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    except (OSError, EOFError, zlib.error, ValueError) as e:
        raise DecodeError(f"{what}: {enc} stream is corrupt ({e}); the object is damaged, re-upload it") from None
    except Exception as e:  # brotli.error / zstd.ZstdError are not in the stdlib hierarchy
        raise DecodeError(f"{what}: {enc} stream is corrupt ({e}); the object is damaged, re-upload it") from None


def compress(data: bytes, encoding: str | None, level: int | None = None) -> bytes:
    """Apply a transport encoding (gzip is written as a single RFC 1952 member)."""
    enc = normalize(encoding)
    if enc is None:
        return data
    if enc == "gzip":
        try:
            import deflate

            return deflate.gzip_compress(data, 6 if level is None else level)
        except ImportError:
            return gzip.compress(data, 6 if level is None else level, mtime=0)
    if enc == "br":
        import brotli

        return brotli.compress(data, quality=5 if level is None else level)
    import zstandard

    return zstandard.ZstdCompressor(level=3 if level is None else level).compress(data)
