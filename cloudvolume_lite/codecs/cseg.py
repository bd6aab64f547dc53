"""``compressed_segmentation``: per-block lookup tables and bit-packed indices (uint32/uint64).

Reads go through the bounds-checked C decoder built with this package (``_cseg.c``, called
through :mod:`._cseg_api`), or an exact vectorised numpy lookup where it is not built (a
:class:`CsegFallbackWarning`, once per process, says so) or where ``CVL_NO_C_EXT=1`` turns it
off. Writes use the C encoder, else the ``compressed-segmentation`` package; both give the
same bytes. ``decode_points`` reads single voxels straight from the block headers.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np

from . import ChunkSpec
from . import _cseg_api

_VALID_BITS = np.array([0, 1, 2, 4, 8, 16, 32])


class CsegFallbackWarning(RuntimeWarning):
    """compressed_segmentation chunks are being decoded without the C extension (much slower)."""


def decoder_status() -> str:
    """Which decoder reads compressed_segmentation chunks now, for ``cvl info`` and ``cvl demo``."""
    if _cseg_api.available():
        return "C extension (fast)"
    if _cseg_api.disabled_by_env():
        return f"numpy fallback (~70x slower: {_cseg_api.DISABLE_ENV} is set)"
    return "numpy fallback (~70x slower: reinstall with a C compiler)"


@functools.lru_cache(maxsize=1)
def _warn_fallback() -> None:
    """Warn (once per process: the cache) that the C decoder is missing."""
    warnings.warn(
        f"cloudvolume_lite: the compressed_segmentation C decoder ({_cseg_api.EXTENSION}) is not built, "
        "so chunks are decoded with the numpy fallback, about 70x slower. Install a C compiler "
        "(e.g. apt install build-essential) and reinstall cloudvolume-lite "
        f"(pip install --force-reinstall --no-deps cloudvolume-lite, or pip install -e . in a checkout); "
        f"set {_cseg_api.DISABLE_ENV}=1 to choose the fallback and silence this warning.",
        CsegFallbackWarning,
        stacklevel=3,
    )


def _fallback() -> None:
    """Called where a decode takes the numpy path: warns unless ``CVL_NO_C_EXT`` chose it."""
    # the env var is read every time (outside the cache), so choosing numpy on purpose never
    # warns and never spends the one warning
    if not _cseg_api.disabled_by_env():
        _warn_fallback()


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
    block_voxels = bx * by * bz
    for base, end in zip(bases, ends):
        n = end - base
        if n < 2 * nblocks:
            raise spec.error(f"channel at word {base} has {n} words, fewer than its {nblocks} block headers")
        hdr = words[base : base + 2 * nblocks].astype(np.int64)
        table, bits, values = hdr[0::2] & 0xFFFFFF, hdr[0::2] >> 24, hdr[1::2] & 0xFFFFFF
        if not np.isin(bits, _VALID_BITS).all():
            raise spec.error(f"a block header has encodedBits {sorted(set(bits.tolist()) - set(_VALID_BITS.tolist()))}")
        # a block's indices fill ceil(bits * voxels / 32) words (as _cseg.c counts them), not
        # bits * ceil(voxels / 32): the two differ when the block volume is not a multiple of 32.
        # A 0-bit block stores no index words, so its values offset is never read.
        value_words = (bits * block_voxels + 31) // 32
        if np.any((bits > 0) & (values + value_words > n)) or np.any(table + wpv > n):
            raise spec.error("a block header points outside its channel's data")
    return words, bases, ends, grid


def decode(data: bytes, spec: ChunkSpec) -> np.ndarray:
    """The whole chunk, (ex, ey, ez, nc) in Fortran order."""
    arr, _ = decode_region(data, spec, (0, 0, 0), spec.shape[:3])
    return arr


def decode_into(data: bytes, spec: ChunkSpec, lo, hi, channels: slice, out: np.ndarray, dst_lo) -> bool:
    """Decode chunk-local ``[lo, hi)`` (channels ``channels``) straight into ``out`` at ``dst_lo``.

    Uses the C decoder built with the package (it releases the GIL and skips the copy);
    returns False when that is unavailable or ``out`` is not a 4-D Fortran-order array of the
    chunk's dtype, and the caller falls back to :func:`decode_region` (which warns).
    """
    if out.ndim != 4 or not out.flags.f_contiguous or out.dtype != spec.dtype:
        return False
    _check_dtype(spec)
    shape = spec.shape
    try:
        _cseg_api.decode_into(
            data=data, itemsize=spec.dtype.itemsize, chunk_shape=shape[:3], num_channels=shape[3],
            block_size=_block_size(spec), lo=lo, hi=hi, channel_start=channels.start, channel_step=channels.step,
            channel_count=len(range(channels.start, channels.stop, channels.step)), out=out, dst_lo=dst_lo,
        )
    except ImportError:  # not built, hidden, or turned off by CVL_NO_C_EXT: asked once, by the call
        return False
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
    _fallback()
    return region_numpy(data, spec, lo, hi), lo  # type: ignore[return-value]


def region_numpy(data: bytes, spec: ChunkSpec, lo, hi) -> np.ndarray:
    """:func:`decode_region`'s array in numpy alone (the fallback; no warning)."""
    lo, hi = tuple(int(v) for v in lo), tuple(int(v) for v in hi)
    if any(l < 0 or h > n or l > h for l, h, n in zip(lo, hi, spec.shape[:3])):
        raise spec.error(f"region {lo}-{hi} is outside the chunk's shape {spec.shape[:3]}")
    size = tuple(h - l for l, h in zip(lo, hi))
    out = np.empty((*size, spec.shape[3]), dtype=spec.dtype, order="F")
    grid = np.stack(np.meshgrid(*(np.arange(l, h) for l, h in zip(lo, hi)), indexing="ij"), -1).reshape(-1, 3)
    out[...] = points_numpy(data, spec, grid).reshape(out.shape, order="C")
    return out


def encode(array: np.ndarray, spec: ChunkSpec) -> bytes:
    """The chunk's bytes: the C encoder (releases the GIL), else the compressed-segmentation package."""
    _check_dtype(spec)
    block = _block_size(spec)
    arr = np.asarray(array, dtype=spec.dtype)
    if arr.ndim == 3:
        arr = arr[..., np.newaxis]
    if not _cseg_api.available():
        return _encode_library(arr, spec, block)
    return _cseg_api.encode(array=arr, block_size=block)  # reads any strides: no copy of the caller's array


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


def _lookup_c(data: bytes, spec: ChunkSpec, xyz: np.ndarray | None, offsets: np.ndarray | None = None
              ) -> np.ndarray | None:
    """Values at chunk-local points (``xyz``, else linear ``offsets``) via the C decoder, or None
    when it is unavailable (asked once, by the call: this runs once per chunk)."""
    _check_dtype(spec)
    args = {"data": data, "itemsize": spec.dtype.itemsize, "chunk_shape": spec.shape[:3],
            "num_channels": spec.shape[3], "block_size": _block_size(spec)}
    if xyz is None:
        offsets = np.asarray(offsets)
        if offsets.dtype != np.uint32:  # the C code checks each offset against the chunk, once 32-bit
            if len(offsets) and (offsets.min() < 0 or offsets.max() >= np.prod(spec.shape[:3])):
                raise spec.error("a point lies outside the chunk")
            offsets = offsets.astype(np.uint32)
        args["offsets"] = np.ascontiguousarray(offsets)
        lookup, n = _cseg_api.lookup_offsets, len(offsets)
    else:
        args["xyz"] = pts = np.ascontiguousarray(xyz, dtype=np.int64).reshape(-1, 3)
        lookup, n = _cseg_api.lookup_points, len(pts)
    out = np.empty((n, spec.shape[3]), dtype=spec.dtype)
    try:
        lookup(**args, out=out)  # type: ignore[operator]
    except ImportError:  # not built, hidden, or turned off by CVL_NO_C_EXT
        return None
    except ValueError as e:
        raise spec.error(str(e)) from None
    return out


def decode_points(data: bytes, spec: ChunkSpec, xyz: np.ndarray) -> np.ndarray:
    """Values at chunk-local points ``xyz`` (N, 3) as (N, C), without decoding the chunk.

    Per point: one block header, one index word, one table entry. The C decoder does it when
    built (without the GIL); otherwise numpy gathers do, vectorised over the points.
    """
    fast = _lookup_c(data, spec, xyz)
    if fast is not None:
        return fast
    _fallback()
    return points_numpy(data, spec, xyz)


def decode_offsets(data: bytes, spec: ChunkSpec, offsets: np.ndarray) -> np.ndarray:
    """:func:`decode_points` for points given as linear offsets (N,) into the chunk's shape, x
    fastest (what grouping points by chunk gives, without building (N, 3) coordinates)."""
    fast = _lookup_c(data, spec, None, offsets)
    if fast is not None:
        return fast
    _fallback()
    ex, ey, _, _ = spec.shape
    offsets = np.asarray(offsets, dtype=np.int64)
    xyz = np.stack([offsets % ex, (offsets // ex) % ey, offsets // (ex * ey)], axis=1)
    return points_numpy(data, spec, xyz)


def points_numpy(data: bytes, spec: ChunkSpec, xyz: np.ndarray) -> np.ndarray:
    """:func:`decode_points` in numpy alone (the fallback when the C decoder is not built; no warning)."""
    words, bases, ends, grid = _layout(data, spec)
    wpv = spec.dtype.itemsize // 4
    bx, by, bz = _block_size(spec)
    xyz = np.asarray(xyz, dtype=np.int64).reshape(-1, 3)
    if len(xyz) and (np.any(xyz < 0) or np.any(xyz >= spec.shape[:3])):
        raise spec.error(f"a point lies outside the chunk's shape {spec.shape[:3]}")
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
