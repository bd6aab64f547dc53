"""``neuroglancer_uint64_sharded_v1`` maths: where a chunk lives (spec section 7).

A chunk's grid cell becomes its compressed Morton code, the code (preshifted, hashed) its shard
and minishard; and :func:`propose_sharding` chooses a spec for a volume. No I/O here: the
index format is ``stores/shard_index.py``, the store adapter ``stores/sharded.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .errors import RequestError
from .info import Scale, Sharding

_NAME = re.compile(r"^(-?\d+)-(-?\d+)_(-?\d+)-(-?\d+)_(-?\d+)-(-?\d+)$")

M32 = np.uint64(0xFFFFFFFF)


# -- keys ----------------------------------------------------------------------------------------
def morton_bits(grid_size: Iterable[int]) -> tuple[int, int, int]:
    """Bits per axis: ceil(log2(grid)), 0 for an axis of one cell (strict ``<``, spec 7.2)."""
    return tuple(max(0, int(g - 1).bit_length()) for g in grid_size)  # type: ignore[return-value]


def low_bits_per_axis(bits: Iterable[int], n: int) -> tuple[int, int, int]:
    """How many of the lowest ``n`` Morton bits belong to x, y and z: a box of 2**k chunks per
    axis shares them (a minishard or shard's shape, spec 7.6)."""
    bits = tuple(bits)
    per_axis = [0, 0, 0]
    j = 0
    for i in range(max(bits) if bits else 0):
        for d in range(3):
            if i < bits[d] and j < n:
                per_axis[d] += 1
                j += 1
    return tuple(per_axis)  # type: ignore[return-value]


def compressed_morton(cells: np.ndarray, grid_size: Iterable[int]) -> np.ndarray:
    """Compressed Morton codes (uint64) of grid cells ``cells`` (N, 3)."""
    cells = np.asarray(cells, dtype=np.uint64).reshape(-1, 3)
    bits = morton_bits(grid_size)
    if sum(bits) > 64:
        raise RequestError(f"grid {tuple(grid_size)} needs {sum(bits)} Morton bits; sharding allows 64")
    code = np.zeros(len(cells), dtype=np.uint64)
    j = 0
    for i in range(max(bits) if bits else 0):
        for d in range(3):
            if i < bits[d]:
                code |= ((cells[:, d] >> np.uint64(i)) & np.uint64(1)) << np.uint64(j)
                j += 1
    return code


def _rotl32(x: np.ndarray, r: int) -> np.ndarray:
    return ((x << np.uint64(r)) | (x >> np.uint64(32 - r))) & M32


def _fmix32(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(16))
    h = (h * np.uint64(0x85EBCA6B)) & M32
    h = h ^ (h >> np.uint64(13))
    h = (h * np.uint64(0xC2B2AE35)) & M32
    return h ^ (h >> np.uint64(16))


def murmurhash3_x86_128_low64(keys: np.ndarray) -> np.ndarray:
    """Low 64 bits of MurmurHash3_x86_128 (seed 0) of each key's 8 little-endian bytes."""
    k = np.asarray(keys, dtype=np.uint64)
    c1, c2, c3 = np.uint64(0x239B961B), np.uint64(0xAB0E9789), np.uint64(0x38B34AE5)
    with np.errstate(over="ignore"):
        k2 = (((k >> np.uint64(32)) & M32) * c2) & M32
        k2 = (_rotl32(k2, 16) * c3) & M32
        h2 = k2
        k1 = ((k & M32) * c1) & M32
        k1 = (_rotl32(k1, 15) * c2) & M32
        h1 = k1
        h3 = np.zeros_like(k)
        h4 = np.zeros_like(k)
        h1, h2, h3, h4 = (h ^ np.uint64(8) for h in (h1, h2, h3, h4))
        h1 = (h1 + h2 + h3 + h4) & M32
        h2, h3, h4 = (h2 + h1) & M32, (h3 + h1) & M32, (h4 + h1) & M32
        h1, h2, h3, h4 = _fmix32(h1), _fmix32(h2), _fmix32(h3), _fmix32(h4)
        h1 = (h1 + h2 + h3 + h4) & M32
        h2 = (h2 + h1) & M32
    return h1 | (h2 << np.uint64(32))


@dataclass(frozen=True)
class ShardLayout:
    """Where each chunk of one sharded scale lives."""

    sharding: Sharding
    scale: Scale

    @property
    def index_bytes(self) -> int:
        return 16 << self.sharding.minishard_bits

    def chunk_ids(self, cells: np.ndarray) -> np.ndarray:
        return compressed_morton(cells, self.scale.grid_size)

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(shard numbers, minishard numbers) of chunk ids."""
        s = self.sharding
        h = np.asarray(ids, dtype=np.uint64) >> np.uint64(min(s.preshift_bits, 63))
        if s.preshift_bits >= 64:
            h = np.zeros_like(h)
        if s.hash == "murmurhash3_x86_128":
            h = murmurhash3_x86_128_low64(h)
        mini = h & np.uint64((1 << s.minishard_bits) - 1)
        shard = (h >> np.uint64(s.minishard_bits)) & np.uint64((1 << s.shard_bits) - 1)
        return shard, mini

    def shard_name(self, shard: int) -> str:
        digits = max(1, -(-self.sharding.shard_bits // 4))
        return f"{int(shard):0{digits}x}.shard"

    def cell_of(self, name: str) -> tuple[int, int, int]:
        """The grid cell named by an unsharded chunk name (checked against the grid)."""
        m = _NAME.match(name)
        if not m:
            raise RequestError(f"{name!r} is not a chunk name like 0-64_0-64_0-64")
        lo = [int(m.group(i)) for i in (1, 3, 5)]
        cell = tuple((v - o) // c for v, o, c in zip(lo, self.scale.voxel_offset, self.scale.chunk_size))
        if any(not 0 <= g < n for g, n in zip(cell, self.scale.grid_size)) or self.scale.chunk_name(cell) != name:
            raise RequestError(f"{name!r} is not a chunk of scale {self.scale.key}")
        return cell  # type: ignore[return-value]



def morton_decode(code: int, grid_size: Iterable[int]) -> tuple[int, int, int]:
    """The grid cell of a compressed Morton code (the inverse of :func:`compressed_morton`)."""
    bits = morton_bits(grid_size)
    cell = [0, 0, 0]
    j = 0
    for i in range(max(bits)):
        for d in range(3):
            if i < bits[d]:
                cell[d] |= ((code >> j) & 1) << i
                j += 1
    return tuple(cell)  # type: ignore[return-value]


# -- planning ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShardingProposal:
    """A sharding spec and the box of voxels one shard covers (align whole-shard writes to it)."""

    sharding: Sharding
    shard_shape: tuple[int, int, int]  # voxels per shard along x, y, z (rectangular: identity hash)
    chunks_per_shard: int


def propose_sharding(
    size: Iterable[int],
    chunk_size: Iterable[int],
    dtype: str | np.dtype = "uint8",
    num_channels: int = 1,
    target_shard_bytes: int = 1 << 30,
    encoding: str = "raw",
) -> ShardingProposal:
    """Choose a sharding spec whose shards are boxes of about ``target_shard_bytes`` raw data.

    Identity hash, so each shard is an axis-aligned box of chunks (spec 7.6); up to 9
    preshift bits (512 chunks per minishard), the rest of the within-shard bits to
    minishards; gzip minishard indices; gzip data except for jpeg.
    """
    size, chunk = tuple(size), tuple(chunk_size)
    grid = tuple(-(-s // c) for s, c in zip(size, chunk))
    bits = morton_bits(grid)
    total = sum(bits)
    chunk_bytes = int(np.prod(chunk)) * np.dtype(dtype).itemsize * num_channels
    want = max(0, int(round(np.log2(max(1, target_shard_bytes / chunk_bytes)))))
    inner = min(total, want)
    preshift = min(9, inner)
    sharding = Sharding(
        preshift_bits=preshift, hash="identity", minishard_bits=inner - preshift, shard_bits=total - inner,
        minishard_index_encoding="gzip", data_encoding="raw" if encoding == "jpeg" else "gzip",
    )
    per_axis = low_bits_per_axis(bits, inner)
    shape = tuple(min(c << n, s) for c, n, s in zip(chunk, per_axis, size))
    return ShardingProposal(sharding, shape, 1 << inner)  # type: ignore[arg-type]
