"""``neuroglancer_uint64_sharded_v1`` maths: where a chunk lives (spec section 7).

A chunk's grid cell becomes its compressed Morton code, the code (preshifted, hashed) its shard
and minishard; and :func:`propose_sharding` chooses a spec for a volume. No I/O here: the
index format is ``stores/shard_index.py``, the store adapter ``stores/sharded.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Sequence

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


# MurmurHash3_x86_128's constants as numpy scalars, made once (each np.uint32() costs ~0.25 us)
_C1, _C2, _C3 = np.uint32(0x239B961B), np.uint32(0xAB0E9789), np.uint32(0x38B34AE5)
_F1, _F2 = np.uint32(0x85EBCA6B), np.uint32(0xC2B2AE35)
_S = {n: np.uint32(n) for n in (8, 13, 15, 16, 17)}  # shift counts (read only)
#: below this many keys the hash is cheaper in Python ints than in numpy
SCALAR_MOST = 12
#: a scale's chunk names are tabulated (:meth:`ShardLayout.name_tables`) only when its grid's
#: three axes have at most this many cells together (the tables then take ~1 ms to make)
NAME_TABLE_MOST = 1024


def _rotl32(x: np.ndarray, r: int) -> np.ndarray:
    return (x << _S[r]) | (x >> _S[32 - r])


def _fmix32(h: np.ndarray) -> np.ndarray:
    h ^= h >> _S[16]
    h *= _F1
    h ^= h >> _S[13]
    h *= _F2
    return h ^ (h >> _S[16])


def murmurhash3_x86_128_low64(keys: np.ndarray) -> np.ndarray:
    """Low 64 bits of MurmurHash3_x86_128 (seed 0) of each key's 8 little-endian bytes."""
    k = np.asarray(keys, dtype=np.uint64)
    if k.size <= SCALAR_MOST:
        return np.array([murmurhash3_low64_int(v) for v in k.reshape(-1).tolist()], np.uint64).reshape(k.shape)
    k = k.reshape(-1)
    # uint32 arithmetic wraps modulo 2**32 as the hash's does: no masking after each step
    k1 = (k & M32).astype(np.uint32)
    k1 *= _C1
    h1 = _rotl32(k1, 15)
    h1 *= _C2
    k2 = (k >> np.uint64(32)).astype(np.uint32)
    k2 *= _C2
    h2 = _rotl32(k2, 16)
    h2 *= _C3
    # the 8-byte key ends its blocks in h1 and h2; h3 = h4 = 0; every h is xor'd with the length
    h1 ^= _S[8]
    h2 ^= _S[8]
    h1 += h2
    h1 += _S[16]  # + h3 + h4, both 8
    h2 += h1
    h3 = h1 + _S[8]  # h3 = h4 = 8 + h1
    f1, f2, f3 = _fmix32(h1), _fmix32(h2), _fmix32(h3)
    f1 += f2
    f1 += f3
    f1 += f3
    f2 += f1
    out = f2.astype(np.uint64)
    out <<= np.uint64(32)
    out |= f1
    return out.reshape(np.shape(keys))


# -- one chunk at a time, in Python ints (numpy's fixed cost per call is ~50x a scalar step) ------
_U32 = 0xFFFFFFFF


def _rotl32_int(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _U32


def _fmix32_int(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _U32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _U32
    return h ^ (h >> 16)


def murmurhash3_low64_int(key: int) -> int:
    """:func:`murmurhash3_x86_128_low64` of one key."""
    h1 = (_rotl32_int((key & _U32) * 0x239B961B & _U32, 15) * 0xAB0E9789) & _U32
    h2 = (_rotl32_int((key >> 32) * 0xAB0E9789 & _U32, 16) * 0x38B34AE5) & _U32
    h1 ^= 8
    h2 ^= 8
    h1 = (h1 + h2 + 16) & _U32
    h2 = (h2 + h1) & _U32
    h3 = (h1 + 8) & _U32
    f1, f2, f3 = _fmix32_int(h1), _fmix32_int(h2), _fmix32_int(h3)
    f1 = (f1 + f2 + 2 * f3) & _U32
    f2 = (f2 + f1) & _U32
    return f1 | (f2 << 32)


def morton_positions(bits: tuple[int, int, int]) -> tuple[list[int], list[int], list[int]]:
    """Where each axis's bits go in a compressed Morton code: ``[d][i]`` is the code bit that
    bit ``i`` of the cell's coordinate ``d`` becomes."""
    where: tuple[list[int], list[int], list[int]] = ([], [], [])
    j = 0
    for i in range(max(bits) if bits else 0):
        for d in range(3):
            if i < bits[d]:
                where[d].append(j)
                j += 1
    return where


def _spread(v: int, where: list[int]) -> int:
    """One axis's coordinate ``v`` as its bits of a compressed Morton code."""
    return sum(((v >> i) & 1) << j for i, j in enumerate(where))


def compressed_morton_int(cell: Iterable[int], bits: tuple[int, int, int]) -> int:
    """:func:`compressed_morton` of one cell, given the bits per axis (:func:`morton_bits`)."""
    cell = tuple(cell)
    code = j = 0
    for i in range(max(bits)):
        for d in range(3):
            if i < bits[d]:
                code |= ((cell[d] >> i) & 1) << j
                j += 1
    return code


@dataclass(frozen=True)
class ShardLayout:
    """Where each chunk of one sharded scale lives."""

    sharding: Sharding
    scale: Scale

    @property
    def index_bytes(self) -> int:
        return 16 << self.sharding.minishard_bits

    @cached_property
    def bits(self) -> tuple[int, int, int]:
        """Morton bits per axis of the scale's grid."""
        return morton_bits(self.scale.grid_size)

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

    def location(self, name: str) -> tuple[int, int, int]:
        """(chunk id, shard, minishard) of one chunk name, in Python ints: a single chunk's
        numpy route costs ~100 us of fixed overhead, this one ~5."""
        tables = self.__dict__.get("_name_tables")
        cid = self._table_id(name, tables) if tables else compressed_morton_int(self.cell_of(name), self.bits)
        s = self.sharding
        h = cid >> s.preshift_bits if s.preshift_bits < 64 else 0
        if s.hash == "murmurhash3_x86_128":
            h = murmurhash3_low64_int(h)
        return cid, (h >> s.minishard_bits) & ((1 << s.shard_bits) - 1), h & ((1 << s.minishard_bits) - 1)

    def locations(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(chunk ids, shards, minishards) of many chunk names, hashed all at once. Names are
        looked up in per-axis tables (:meth:`name_tables`) when the batch is worth them."""
        tables = self.name_tables(len(names))
        if tables:
            tx, ty, tz = tables
            try:
                ids = np.array([tx[x] | ty[y] | tz[z] for x, y, z in (n.split("_") for n in names)], np.uint64)
            except (KeyError, ValueError):  # not a name of this scale: say which
                ids = np.array([self._table_id(n, tables) for n in names], np.uint64)
        else:
            ids = self.chunk_ids(np.array([self.cell_of(n) for n in names], dtype=np.int64).reshape(-1, 3))
        return (ids, *self.locate(ids))

    def name_tables(self, batch: int = 0) -> tuple[dict[str, int], dict[str, int], dict[str, int]] | None:
        """Per axis, the ``lo-hi`` part of each chunk name along it -> that cell's bits of the
        compressed Morton code (so a name's chunk id is three dict lookups, ~0.3 us, where
        parsing and checking it costs ~3.5). Only exact names are keys: looking one up checks
        it too. Made when first wanted by a batch of ``batch`` names that outweighs making them
        (about a microsecond per cell of the three axes), then kept; None until then."""
        tables = self.__dict__.get("_name_tables")
        if tables is None:
            cells = sum(self.scale.grid_size)
            if cells > NAME_TABLE_MOST or cells > 8 * batch + 64:
                return None
            tables = tuple(
                {f"{o + i * c}-{o + min((i + 1) * c, n)}": _spread(i, where) for i in range(g)}
                for (o, c, n, g), where in zip(self._axes, morton_positions(self.bits))
            )
            self.__dict__["_name_tables"] = tables  # as cached_property stores (the dataclass is frozen)
        return tables  # type: ignore[return-value]

    def _table_id(self, name: str, tables: tuple[dict[str, int], ...]) -> int:
        """The chunk id of ``name`` from :meth:`name_tables` (RequestError: not a chunk name)."""
        parts = name.split("_")
        if len(parts) == 3:
            x, y, z = parts
            got = tables[0].get(x), tables[1].get(y), tables[2].get(z)
            if None not in got:
                return got[0] | got[1] | got[2]  # type: ignore[operator]
        return compressed_morton_int(self.cell_of(name), self.bits)  # raises, naming the name

    def shard_name(self, shard: int) -> str:
        digits = max(1, -(-self.sharding.shard_bits // 4))
        return f"{int(shard):0{digits}x}.shard"

    @cached_property
    def _axes(self) -> tuple[tuple[int, int, int, int], ...]:
        """(voxel offset, chunk size, volume size, grid size) of each axis."""
        sc = self.scale
        return tuple(zip(sc.voxel_offset, sc.chunk_size, sc.size, sc.grid_size))

    def cell_of(self, name: str) -> tuple[int, int, int]:
        """The grid cell named by an unsharded chunk name (checked against the grid)."""
        m = _NAME.match(name)
        if not m:
            raise RequestError(f"{name!r} is not a chunk name like 0-64_0-64_0-64")
        (ox, cx, nx, gx), (oy, cy, ny, gy), (oz, cz, nz, gz) = self._axes
        i, j, k = (int(m.group(1)) - ox) // cx, (int(m.group(3)) - oy) // cy, (int(m.group(5)) - oz) // cz
        # exactly the name Scale.chunk_name gives the cell (no "07", no other ends)
        if not (0 <= i < gx and 0 <= j < gy and 0 <= k < gz) or name != (
                f"{ox + i * cx}-{ox + min((i + 1) * cx, nx)}_{oy + j * cy}-{oy + min((j + 1) * cy, ny)}_"
                f"{oz + k * cz}-{oz + min((k + 1) * cz, nz)}"):
            raise RequestError(f"{name!r} is not a chunk of scale {self.scale.key}")
        return i, j, k


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
