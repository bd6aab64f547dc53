"""``compressed_segmentation``: per-block lookup tables and bit-packed indices (uint32/uint64).

Reads go through the bounds-checked C decoder built with this package (``_cseg.c``), or a
vectorised numpy lookup where it is not built; the ``compressed-segmentation`` package
encodes. ``decode_points`` reads single voxels straight from the block headers.
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
    """The whole chunk, (ex, ey, ez, nc) in Fortran order."""
    arr, _ = decode_region(data, spec, (0, 0, 0), spec.shape[:3])
    return arr


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
    """Chunk-local ``[lo, hi)`` decoded; returns (array, its chunk-local origin = ``lo``).

    Only bounds-checked decoders run here: the C decoder, or (without it) the vectorised point
    lookup over every voxel of the region. The compressed-segmentation package's decoder is
    not used for reading: it trusts offsets and indices, and a fuzzed chunk crashed it.
    """
    lo, hi = tuple(int(v) for v in lo), tuple(int(v) for v in hi)
    size = tuple(h - l for l, h in zip(lo, hi))
    nc = spec.shape[3]
    out = np.empty((*size, nc), dtype=spec.dtype, order="F")
    if decode_into(data, spec, lo, hi, slice(0, nc, 1), out, (0, 0, 0)):
        return out, lo  # type: ignore[return-value]
    grid = np.stack(np.meshgrid(*(np.arange(l, h) for l, h in zip(lo, hi)), indexing="ij"), -1).reshape(-1, 3)
    out[...] = points_numpy(data, spec, grid).reshape((*size, nc), order="C")
    return out, lo  # type: ignore[return-value]


def encode(array: np.ndarray, spec: ChunkSpec) -> bytes:
    _check_dtype(spec)
    block = _block_size(spec)
    arr = np.asarray(array, dtype=spec.dtype)
    if arr.ndim == 3:
        arr = arr[..., np.newaxis]
    try:
        from .. import _cseg
    except ImportError:
        return _encode_library(arr, spec, block)
    # the C encoder releases the GIL (the library's does not) and writes the same bytes
    return _cseg.encode(arr, block)  # reads any strides: no copy of the caller's array


def _encode_library(arr: np.ndarray, spec: ChunkSpec, block) -> bytes:
    """Encoding with the compressed-segmentation package, where the C encoder is not built."""
    import compressed_segmentation as cs

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
