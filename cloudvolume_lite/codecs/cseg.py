"""``compressed_segmentation``: per-block lookup tables and bit-packed indices (uint32/uint64).

Full decodes use the ``compressed-segmentation`` package after the headers are checked here
(it trusts its input). ``decode_points`` reads single voxels straight from the block headers,
vectorised over all the points of a chunk.
"""

from __future__ import annotations

import numpy as np

from . import ChunkSpec

_VALID_BITS = np.array([0, 1, 2, 4, 8, 16, 32])


def _block_size(spec: ChunkSpec) -> tuple[int, int, int]:
    b = spec.scale.compressed_segmentation_block_size
    if b is None:
        raise spec.error("the scale has no compressed_segmentation_block_size in its info")
    return b


def _check_dtype(spec: ChunkSpec) -> int:
    if spec.dtype not in (np.dtype(np.uint32), np.dtype(np.uint64)):
        raise spec.error(f"compressed_segmentation holds uint32 or uint64, not {spec.dtype}")
    return spec.dtype.itemsize // 4  # words per table value


def _layout(data: bytes, spec: ChunkSpec):
    """Validate the channel table and every block header; return (words, channel bases, ends, grid)."""
    wpv = _check_dtype(spec)
    if len(data) % 4:
        raise spec.error(f"length {len(data)} is not a multiple of 4 bytes")
    words = np.frombuffer(data, dtype="<u4")
    ex, ey, ez, nc = spec.shape
    bx, by, bz = _block_size(spec)
    grid = (-(-ex // bx), -(-ey // by), -(-ez // bz))
    nblocks = grid[0] * grid[1] * grid[2]
    if len(words) < nc:
        raise spec.error(f"is {len(data)} bytes, too short for a {nc}-channel table")
    bases = words[:nc].astype(np.int64)
    ends = np.append(bases[1:], len(words))
    if bases[0] != nc or np.any(ends < bases) or np.any(bases > len(words)):
        raise spec.error(f"channel offsets {bases.tolist()} do not fit a {len(words)}-word chunk")
    block_words = -(-(bx * by * bz) // 32)  # words per bit of encodedBits
    for base, end in zip(bases, ends):
        n = end - base
        if n < 2 * nblocks:
            raise spec.error(f"channel at word {base} has {n} words, fewer than its {nblocks} block headers")
        hdr = words[base : base + 2 * nblocks].astype(np.int64)
        table, bits, values = hdr[0::2] & 0xFFFFFF, hdr[0::2] >> 24, hdr[1::2] & 0xFFFFFF
        if not np.isin(bits, _VALID_BITS).all():
            raise spec.error(f"a block header has encodedBits {sorted(set(bits.tolist()) - set(_VALID_BITS.tolist()))}")
        if np.any(values + bits * block_words > n) or np.any(table + wpv > n):
            raise spec.error("a block header points outside its channel's data")
    return words, bases, ends, grid


def decode(data: bytes, spec: ChunkSpec) -> np.ndarray:
    import compressed_segmentation as cs

    words, bases, ends, _ = _layout(data, spec)
    ex, ey, ez, nc = spec.shape
    block = _block_size(spec)
    try:
        if nc == 1:
            buf = data if isinstance(data, bytes) else bytes(data)
            vol = cs.decompress(buf, (ex, ey, ez), spec.dtype, block, order="F")
            return vol.reshape((ex, ey, ez, 1), order="F")
        out = np.empty((ex, ey, ez, nc), dtype=spec.dtype, order="F")
        for c in range(nc):
            # re-home one channel as a 1-channel file: its offsets are channel-relative already
            one = b"\x01\x00\x00\x00" + bytes(words[bases[c] : ends[c]].data)
            out[..., c] = cs.decompress(one, (ex, ey, ez), spec.dtype, block, order="F")
        return out
    except (cs.DecodeError, ValueError, IndexError) as e:
        raise spec.error(f"decoder failed: {e}") from None


def decode_into(data: bytes, spec: ChunkSpec, lo, hi, channels: slice, out: np.ndarray, dst_lo) -> bool:
    """Decode chunk-local ``[lo, hi)`` (channels ``channels``) straight into ``out`` at ``dst_lo``.

    Uses the C decoder built with the package (it releases the GIL and skips the copy);
    returns False when that is unavailable or ``out`` is not a Fortran-order array, and the
    caller falls back to :func:`decode_region`.
    """
    try:
        from .. import _cseg
    except ImportError:
        return False
    if not out.flags.f_contiguous or out.dtype != spec.dtype:
        return False
    _check_dtype(spec)
    block = _block_size(spec)
    ncout = len(range(channels.start, channels.stop, channels.step))
    try:
        _cseg.decode_into(
            data, spec.dtype.itemsize, spec.shape[:3], spec.shape[3], block, list(lo), list(hi),
            channels.start, channels.step, ncout, out.reshape(-1, order="F"), out.shape, list(dst_lo),
        )
    except ValueError as e:
        raise spec.error(str(e)) from None
    return True


def decode_region(data: bytes, spec: ChunkSpec, lo, hi) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Decode only the blocks covering chunk-local ``[lo, hi)``; return (array, its chunk-local origin).

    The covering blocks' headers are cut out of the header table and their offsets shifted by
    the words removed, which makes a smaller, valid stream for the library to decode: a cutout
    that needs a corner of a chunk pays for that corner, not the whole chunk.
    """
    import compressed_segmentation as cs

    words, bases, ends, grid = _layout(data, spec)
    block = _block_size(spec)
    blo = [l // b for l, b in zip(lo, block)]
    bhi = [-(-h // b) for h, b in zip(hi, block)]
    if blo == [0, 0, 0] and bhi == list(grid):
        return decode(data, spec), (0, 0, 0)
    nb = grid[0] * grid[1] * grid[2]
    origin = tuple(b * s for b, s in zip(blo, block))
    size = tuple(min(e, h * s) - o for e, h, s, o in zip(spec.shape[:3], bhi, block, origin))
    out = np.empty((*size, spec.shape[3]), dtype=spec.dtype, order="F")
    for c, (base, end) in enumerate(zip(bases, ends)):
        hdr = words[base : base + 2 * nb].reshape(grid[2], grid[1], grid[0], 2)
        sub = hdr[blo[2] : bhi[2], blo[1] : bhi[1], blo[0] : bhi[0]].astype(np.int64)
        delta = 2 * (nb - sub.shape[0] * sub.shape[1] * sub.shape[2])
        bits = sub[..., 0] >> 24
        table = (sub[..., 0] & 0xFFFFFF) - delta
        values = np.where(bits > 0, (sub[..., 1] & 0xFFFFFF) - delta, 0)  # 0-bit blocks never read it
        if np.any(table < 0) or np.any(values < 0):
            raise spec.error("a block header points into the header table")
        sub[..., 0] = (bits << 24) | table
        sub[..., 1] = values
        stream = b"\x01\x00\x00\x00" + sub.astype("<u4").tobytes() + bytes(words[base + 2 * nb : end].data)
        try:
            out[..., c] = cs.decompress(stream, size, spec.dtype, block, order="F")
        except (cs.DecodeError, ValueError, IndexError) as e:
            raise spec.error(f"decoder failed: {e}") from None
    return out, origin  # type: ignore[return-value]


def encode(array: np.ndarray, spec: ChunkSpec) -> bytes:
    import compressed_segmentation as cs

    _check_dtype(spec)
    block = _block_size(spec)
    arr = np.asarray(array, dtype=spec.dtype)
    if arr.ndim == 3:
        arr = arr[..., np.newaxis]
    nc = arr.shape[3]
    # the library's 4-D path crashes (seen with 2.3.3), so encode channel by channel
    parts = [cs.compress(np.asfortranarray(arr[..., c]), block_size=block, order="F")[4:] for c in range(nc)]
    offsets, pos = [], nc
    for p in parts:
        offsets.append(pos)
        pos += len(p) // 4
    return np.asarray(offsets, dtype="<u4").tobytes() + b"".join(parts)


def _lookup_c(data: bytes, spec: ChunkSpec, xyz: np.ndarray) -> np.ndarray | None:
    try:
        from .. import _cseg
    except ImportError:
        return None
    _check_dtype(spec)
    pts = np.ascontiguousarray(xyz, dtype=np.int64)
    out = np.empty((len(pts), spec.shape[3]), dtype=spec.dtype)
    try:
        _cseg.lookup_points(data, spec.dtype.itemsize, spec.shape[:3], spec.shape[3], _block_size(spec), pts, out)
    except ValueError as e:
        raise spec.error(str(e)) from None
    return out


def decode_points(data: bytes, spec: ChunkSpec, xyz: np.ndarray) -> np.ndarray:
    """Values at chunk-local points ``xyz`` (N, 3) as (N, C), without decoding the chunk.

    Per point: one block header, one index word, one table entry. The C decoder does it when
    built (without the GIL); otherwise numpy gathers do, vectorised over the points.
    """
    fast = _lookup_c(data, spec, xyz)
    return fast if fast is not None else points_numpy(data, spec, xyz)


def points_numpy(data: bytes, spec: ChunkSpec, xyz: np.ndarray) -> np.ndarray:
    """:func:`decode_points` in numpy alone (the fallback when the C decoder is not built)."""
    words, bases, ends, grid = _layout(data, spec)
    wpv = spec.dtype.itemsize // 4
    bx, by, bz = _block_size(spec)
    xyz = np.asarray(xyz, dtype=np.int64)
    bi = xyz // (bx, by, bz)
    block = bi[:, 0] + grid[0] * (bi[:, 1] + grid[1] * bi[:, 2])
    inner = xyz - bi * (bx, by, bz)
    pos = inner[:, 0] + bx * (inner[:, 1] + by * inner[:, 2])
    out = np.empty((len(xyz), spec.shape[3]), dtype=spec.dtype)
    for c, (base, end) in enumerate(zip(bases, ends)):
        h0 = words[base + 2 * block].astype(np.int64)
        h1 = words[base + 2 * block + 1].astype(np.int64)
        bits, table, values = h0 >> 24, h0 & 0xFFFFFF, h1 & 0xFFFFFF
        bitoff = bits * pos
        word_at = base + values + (bitoff >> 5)
        word_at = np.where(bits > 0, word_at, base)  # 0-bit blocks store no index words
        raw = words[np.minimum(word_at, end - 1)].astype(np.int64)
        mask = (np.int64(1) << bits) - 1
        idx = np.where(bits > 0, (raw >> (bitoff & 31)) & mask, 0)
        entry = base + table + idx * wpv
        if np.any(entry + wpv > end):
            raise spec.error("a lookup index points past its channel's table")
        if wpv == 1:
            out[:, c] = words[entry]
        else:
            out[:, c] = words[entry].astype(np.uint64) | (words[entry + 1].astype(np.uint64) << np.uint64(32))
    return out
