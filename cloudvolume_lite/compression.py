"""Transport compression (gzip, brotli, zstd): what HTTP Content-Encoding or a ``.gz`` file adds.

Decompression can be bounded: ``decompress(..., limit=n)`` stops once the output would pass
``n`` bytes and raises a :class:`DecodeError` naming the object, the bound and the size it
would reach, so a small damaged or hostile object (a "decompression bomb": 1 MiB of gzip that
inflates to 1 GiB) costs about ``n`` bytes of memory, not what it claims. The normal case is
as fast as unbounded: gzip goes through libdeflate in one call when the size its trailer
states is within the bound, zstd in one call when its frame header states a size within it.
Integrity: gzip carries a CRC-32 and zstd frames written here a content checksum (both are
checked); brotli carries no checksum, so a damaged brotli stream may decode to wrong bytes.
"""

from __future__ import annotations

import gzip
import zlib

from .errors import DecodeError, UnsupportedEncodingError

#: local-disk suffix for each transport encoding, in the order CloudVolume writes them.
SUFFIXES = {"gzip": ".gz", "br": ".br", "zstd": ".zstd"}
GZIP_MAGIC = b"\x1f\x8b"
#: what :func:`decoded_bound` allows beyond the factor: small chunks, headers, padding
BOUND_SLACK = 1 << 20
#: :func:`decoded_bound`'s factor over the expected size (a chunk encoding may grow its data:
#: compressed_segmentation of noise, JPEG at quality 100, fpzip of random floats)
BOUND_FACTOR = 4


def decoded_bound(expected: int) -> int:
    """A generous bound on what one object expected to decode to about ``expected`` bytes may
    inflate to: ``4 * expected + 1 MiB``. Pass it as ``limit`` to :func:`decompress`."""
    return BOUND_FACTOR * max(0, int(expected)) + BOUND_SLACK


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


class _TooBig(Exception):
    """Raised inside the decoders when the output would pass the limit; ``size`` is what the
    stream says it would reach (None: unknown, only that it is more than the limit)."""

    def __init__(self, size: int | None = None):
        super().__init__(size)
        self.size = size


def _gunzip(data: bytes, limit: int | None) -> bytes:
    if not data:
        return b""  # as gzip.decompress has it: nothing inflates to nothing
    try:
        import deflate  # libdeflate: ~1.8x zlib's speed when installed
    except ImportError:
        deflate = None
    stated = int.from_bytes(data[-4:], "little") if len(data) >= 18 else None  # (last) member's size mod 2**32
    if deflate is not None and stated is not None and (limit is None or stated <= limit):
        try:
            out = deflate.gzip_decompress(data)  # allocates the stated size, checked above
        except Exception:
            out = None  # corrupt, lying about its size, or several members: the careful path says which
        # libdeflate reads one member and ignores what follows it: the result is the whole
        # stream only if its size and CRC are the ones the stream's last 8 bytes state
        if out is not None and len(out) & 0xFFFFFFFF == stated and deflate.crc32(out) == int.from_bytes(
                data[-8:-4], "little"):
            return bytes(out)  # a bytearray: callers and caches get immutable bytes
    return _gunzip_zlib(data, limit, stated)


def _gunzip_zlib(data: bytes, limit: int | None, stated: int | None = None) -> bytes:
    """Every member of a gzip stream (zero padding between them allowed, as gzip.decompress
    allows it), inflating at most ``limit + 1`` bytes in all; ``stated`` is the size the
    stream's trailer gives, for the message."""
    if limit is None:
        return gzip.decompress(data)
    parts: list[bytes] = []
    total = 0
    rest: bytes | memoryview = memoryview(data)
    while True:
        d = zlib.decompressobj(31)  # gzip framing: zlib checks each member's CRC and size
        out = d.decompress(rest, limit + 1 - total)
        total += len(out)
        parts.append(out)
        while not d.eof and total <= limit and d.unconsumed_tail:
            out = d.decompress(d.unconsumed_tail, limit + 1 - total)
            total += len(out)
            parts.append(out)
        if total > limit:
            raise _TooBig(stated if stated is not None and stated > limit else None)
        if not d.eof:
            raise EOFError("the stream ends before its end-of-stream marker (truncated)")
        rest = d.unused_data.lstrip(b"\x00")
        if not rest:
            return parts[0] if len(parts) == 1 else b"".join(parts)


def _unbrotli(data: bytes, limit: int | None) -> bytes:
    import brotli

    if limit is None:
        return brotli.decompress(data)
    d = brotli.Decompressor()
    try:
        out = d.process(data, output_buffer_limit=limit + 1)
    except TypeError:  # brotli < 1.2 has no output limit: feed the input in pieces instead
        return _unbrotli_pieces(brotli.Decompressor(), data, limit)
    if len(out) > limit:
        raise _TooBig()
    if not d.is_finished():
        raise EOFError("the stream ends before it is complete (truncated)")
    return out


def _unbrotli_pieces(d: object, data: bytes, limit: int) -> bytes:
    """Old brotli: 16 KiB of input at a time, stopping once the output passes ``limit`` (one
    piece can overshoot it by what 16 KiB inflate to)."""
    parts, total, view = [], 0, memoryview(data)
    for at in range(0, len(view), 1 << 14):
        out = d.process(view[at : at + (1 << 14)])  # type: ignore[attr-defined]
        total += len(out)
        if total > limit:
            raise _TooBig()
        parts.append(out)
    if not d.is_finished():  # type: ignore[attr-defined]
        raise EOFError("the stream ends before it is complete (truncated)")
    return b"".join(parts)


def _unzstd(data: bytes, limit: int | None) -> bytes:
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    size = zstandard.frame_content_size(data)  # -1: the frame does not say
    if size >= 0:
        if limit is not None and size > limit:
            raise _TooBig(size)
        try:
            # one frame, exactly of the size it states (checked), and nothing after it
            return dctx.decompress(data, allow_extra_data=False)
        except zstandard.ZstdError:
            pass  # several frames, no stated size, or damage: the careful path says which
    if limit is not None:
        # how much it makes, read at most limit + 1 bytes far (a stream reader stops where
        # asked, but says nothing of a stream cut short: the decoding below does)
        with dctx.stream_reader(data, read_across_frames=True) as r:
            made = 0
            while made <= limit:
                part = r.read(min(1 << 20, limit + 1 - made))
                if not part:
                    break
                made += len(part)
        if made > limit:
            raise _TooBig(size if size > limit else None)
    # every frame, each to its end (bounded: the same stream made at most ``limit`` above)
    parts, rest = [], data
    while rest:
        obj = dctx.decompressobj()
        parts.append(obj.decompress(rest))
        if not obj.eof:
            raise EOFError("the stream ends inside a frame (truncated)")
        rest = obj.unused_data
    return parts[0] if len(parts) == 1 else b"".join(parts)


def decompress(data: bytes, encoding: str | None, what: str = "object", limit: int | None = None) -> bytes:
    """Undo a transport encoding; a corrupt stream is a :class:`DecodeError` naming ``what``.

    ``limit``: the most bytes the result may have (None: no bound). A stream that would
    inflate past it is a :class:`DecodeError` raised once about ``limit`` bytes were made
    (or at once, when its gzip trailer or zstd frame header states a larger size).
    """
    enc = normalize(encoding)
    if enc is None:
        return data
    try:
        if enc == "gzip":
            return _gunzip(data, limit)
        if enc == "br":
            return _unbrotli(data, limit)
        return _unzstd(data, limit)
    except _TooBig as e:
        said = f"it states {e.size} bytes" if e.size is not None else f"it reached {limit + 1} bytes and was stopped"
        raise DecodeError(
            f"{what}: the {enc} stream inflates past {limit} bytes, the most one object here may decode to "
            f"({said}; a Volume derives the bound from the scale's chunk size, data type and channels): it "
            "is damaged, hostile (a decompression bomb) or not a chunk of this scale; re-upload it, or check the info"
        ) from None
    except (OSError, EOFError, zlib.error, ValueError) as e:
        raise DecodeError(f"{what}: {enc} stream is corrupt ({e}); the object is damaged, re-upload it") from None
    except Exception as e:  # brotli.error / zstd.ZstdError are not in the stdlib hierarchy
        raise DecodeError(f"{what}: {enc} stream is corrupt ({e}); the object is damaged, re-upload it") from None


def compress(data: bytes, encoding: str | None, level: int | None = None) -> bytes:
    """Apply a transport encoding (gzip is written as a single RFC 1952 member; zstd as one
    frame with its content size and checksum, so damage is detected on reading)."""
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

    return zstandard.ZstdCompressor(level=3 if level is None else level, write_checksum=True).compress(data)


__all__ = ["BOUND_FACTOR", "BOUND_SLACK", "GZIP_MAGIC", "SUFFIXES", "compress", "decoded_bound", "decompress",
           "normalize"]
