"""``neuroglancer_uint64_sharded_v1`` as a store adapter: chunk name in, chunk bytes out.

The Volume asks for chunks by their unsharded name (``x0-x1_y0-y1_z0-z1``); this adapter
maps the name to a grid cell, the cell to its compressed Morton code, the code to a shard
file and minishard, and does the ranged reads (spec section 7). Shard indices and minishard
indices are cached (bounded), so a warm chunk read is one ranged GET.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ContextManager, Iterable, Iterator, Mapping

import numpy as np

from . import compression
from .cache import ChunkLRU
from .errors import DecodeError, RequestError
from .info import Scale, Sharding
from .stores.base import ByteRange, Store
from .stores.url import StoreURL

_NAME = re.compile(r"^(-?\d+)-(-?\d+)_(-?\d+)-(-?\d+)_(-?\d+)-(-?\d+)$")
_WHOLE_INDEX_LIMIT = 1 << 16  # read a shard's whole index when it is at most this many bytes
_MAX_RANGE = 1 << 32  # no single chunk or minishard index is larger than 4 GiB

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


# -- minishard indices ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MinishardIndex:
    """Sorted chunk ids with absolute byte ranges in the shard file."""

    ids: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray

    @property
    def nbytes(self) -> int:
        return 24 * len(self.ids) + 64

    def find(self, chunk_id: int) -> tuple[int, int] | None:
        i = int(np.searchsorted(self.ids, np.uint64(chunk_id)))
        if i < len(self.ids) and self.ids[i] == np.uint64(chunk_id):
            return int(self.starts[i]), int(self.starts[i] + self.sizes[i])
        return None


def parse_minishard_index(data: bytes, index_bytes: int, where: str) -> MinishardIndex:
    if len(data) % 24:
        raise DecodeError(f"minishard index in {where} is {len(data)} bytes, not a multiple of 24; the shard is corrupt")
    n = len(data) // 24
    arr = np.frombuffer(data, dtype="<u8").reshape(3, n)
    with np.errstate(over="ignore"):
        ids = np.cumsum(arr[0], dtype=np.uint64)
        sizes = arr[2].astype(np.uint64)
        gaps = arr[1].astype(np.uint64)
        # start_i = end_{i-1} + delta_i; start_0 = index_bytes + delta_0
        prev_ends = np.concatenate([[np.uint64(0)], np.cumsum(sizes, dtype=np.uint64)[:-1]])
        starts = np.uint64(index_bytes) + np.cumsum(gaps, dtype=np.uint64) + prev_ends
    if n and (np.any(sizes > _MAX_RANGE) or np.any(starts > np.uint64(1 << 62))):
        raise DecodeError(f"minishard index in {where} has implausible offsets or sizes; the shard is corrupt")
    order = np.argsort(ids, kind="stable")
    return MinishardIndex(ids[order], starts[order], sizes[order])


def encode_minishard_index(ids: np.ndarray, starts: np.ndarray, sizes: np.ndarray, index_bytes: int) -> bytes:
    """The [3, n] delta-encoded table for chunks already sorted by id and laid out in that order."""
    ids = np.asarray(ids, np.uint64)
    starts = np.asarray(starts, np.uint64)
    sizes = np.asarray(sizes, np.uint64)
    prev_ends = np.concatenate([[np.uint64(index_bytes)], starts[:-1] + sizes[:-1]])
    with np.errstate(over="ignore"):
        rows = np.stack([np.diff(ids, prepend=np.uint64(0)), starts - prev_ends, sizes])
    return rows.astype("<u8").tobytes()


def build_shard(chunks: Mapping[int, bytes], layout: ShardLayout) -> bytes:
    """A whole shard file from chunk id -> encoded chunk bytes (``data_encoding`` applied here).

    Layout, as TensorStore writes it: [shard index][minishard 0 data][minishard 0 index]...
    """
    s = layout.sharding
    ids = np.array(sorted(chunks), dtype=np.uint64)
    _, minis = layout.locate(ids)
    index = np.zeros((1 << s.minishard_bits, 2), dtype="<u8")
    body: list[bytes] = []
    pos = layout.index_bytes
    for m in np.unique(minis):
        sel = ids[minis == m]
        starts, sizes = [], []
        for cid in sel:
            payload = compression.compress(chunks[int(cid)], "gzip" if s.data_encoding == "gzip" else None, level=9)
            starts.append(pos)
            sizes.append(len(payload))
            body.append(payload)
            pos += len(payload)
        idx = encode_minishard_index(sel, np.array(starts, np.uint64), np.array(sizes, np.uint64), layout.index_bytes)
        if s.minishard_index_encoding == "gzip":
            idx = compression.compress(idx, "gzip", level=9)
        index[int(m)] = (pos - layout.index_bytes, pos - layout.index_bytes + len(idx))
        body.append(idx)
        pos += len(idx)
    return index.tobytes() + b"".join(body)


# -- the store adapter ---------------------------------------------------------------------------
class ShardedStore(Store):
    """Chunks of one sharded scale, addressed by their unsharded chunk names."""

    def __init__(self, inner: Store, scale: Scale, index_cache_bytes: int = 64 << 20):
        if scale.sharding is None:
            raise RequestError(f"scale {scale.key} is not sharded")
        super().__init__(inner.url)
        self.inner = inner
        self.layout = ShardLayout(scale.sharding, scale)
        self.default_parallel = inner.default_parallel
        self.latency_bound = inner.latency_bound
        self._indices = ChunkLRU(index_cache_bytes, sizeof=lambda v: getattr(v, "nbytes", 64))

    def _where(self, shard: int) -> str:
        return self.inner.url.key_url(self.layout.shard_name(shard))

    def _ranged(self, shard: int, rng: ByteRange, what: str) -> bytes | None:
        if rng[1] - rng[0] > _MAX_RANGE or rng[0] < 0 or rng[1] < rng[0]:
            raise DecodeError(f"{what} in {self._where(shard)} has an implausible byte range {rng}; the shard is corrupt")
        data = self.inner.get(self.layout.shard_name(shard), rng)
        if data is not None and len(data) != rng[1] - rng[0]:
            raise DecodeError(
                f"{what} in {self._where(shard)}: asked for bytes {rng[0]}-{rng[1]}, got {len(data)}; "
                "the shard is truncated"
            )
        return data

    def _minishard_range(self, shard: int, mini: int) -> tuple[int, int] | None:
        """[start, end) of a minishard index relative to the index end, None if absent/empty."""
        ib = self.layout.index_bytes
        if ib <= _WHOLE_INDEX_LIMIT:
            table = self._indices.fetch(("shard", shard), lambda: self._load_shard_index(shard))
            if table is None:
                return None
            start, end = int(table.entries[mini, 0]), int(table.entries[mini, 1])
        else:
            raw = self._ranged(shard, (16 * mini, 16 * mini + 16), "shard index entry")
            if raw is None:
                return None
            start, end = (int(v) for v in np.frombuffer(raw, "<u8"))
        if end < start:
            raise DecodeError(f"shard index of {self._where(shard)} has entry {mini} ending before it starts")
        return None if start == end else (start, end)

    def _load_shard_index(self, shard: int) -> "_ShardIndex | None":
        raw = self._ranged(shard, (0, self.layout.index_bytes), "shard index")
        return None if raw is None else _ShardIndex(np.frombuffer(raw, "<u8").reshape(-1, 2))

    def _minishard(self, shard: int, mini: int) -> MinishardIndex | None:
        def load() -> MinishardIndex | None:
            rng = self._minishard_range(shard, mini)
            if rng is None:
                return None
            ib = self.layout.index_bytes
            raw = self._ranged(shard, (ib + rng[0], ib + rng[1]), f"minishard {mini} index")
            if raw is None:
                return None
            if self.layout.sharding.minishard_index_encoding == "gzip":
                raw = compression.decompress(raw, "gzip", f"minishard {mini} index in {self._where(shard)}")
            return parse_minishard_index(raw, ib, self._where(shard))

        return self._indices.fetch(("mini", shard, mini), load)

    def _chunk_location(self, key: str) -> tuple[int, int, int]:
        cell = self.layout.cell_of(key)
        cid = self.layout.chunk_ids(np.array([cell]))
        shard, mini = self.layout.locate(cid)
        return int(cid[0]), int(shard[0]), int(mini[0])

    def get(self, key: str, byte_range: ByteRange | None = None) -> bytes | None:
        if byte_range is not None:
            raise RequestError("byte ranges of chunks inside a shard are not supported; read the whole chunk")
        cid, shard, mini = self._chunk_location(key)
        try:
            return self._get_chunk(key, cid, shard, mini)
        except DecodeError:
            # the shard may have been rewritten since its indices were cached: read them afresh
            # once; a second failure is real damage
            self._forget(shard)
            return self._get_chunk(key, cid, shard, mini)

    def _get_chunk(self, key: str, cid: int, shard: int, mini: int) -> bytes | None:
        index = self._minishard(shard, mini)
        loc = None if index is None else index.find(cid)
        if loc is None:
            return None
        data = self._ranged(shard, loc, f"chunk {key}")
        if data is None:
            return None  # the shard vanished between index read and data read
        if self.layout.sharding.data_encoding == "gzip":
            data = compression.decompress(data, "gzip", f"chunk {key} in {self._where(shard)}")
        return data

    def lock(self, key: str) -> "ContextManager[None]":
        """Locking a chunk locks its whole shard file: a shard is rewritten as one object."""
        _, shard, _ = self._chunk_location(key)
        return self.inner.lock(self.layout.shard_name(shard))

    def _shard_chunks(self, shard: int, members: list[tuple[str, int, int]]) -> dict[str, bytes | None]:
        got: dict[str, bytes | None] = {}
        if self._dense(len(members)):
            # most of the shard is wanted: one request for the whole file beats many
            found = self._read_all(shard, {cid for _, cid, _ in members})
            for key, cid, _ in members:
                got[key] = found.get(cid)
            return got
        located: list[tuple[str, tuple[int, int]]] = []
        for key, cid, mini in members:
            index = self._minishard(shard, mini)
            loc = None if index is None else index.find(cid)
            if loc is None:
                got[key] = None
            else:
                located.append((key, loc))
        if not located:
            return got
        name = self.layout.shard_name(shard)
        ranges = [loc for _, loc in located]
        for _, (a, b) in located:
            if b - a > _MAX_RANGE or b < a:
                raise DecodeError(f"{self._where(shard)} has an implausible chunk range {(a, b)}; the shard is corrupt")
        datas = self.inner.get_ranges(name, ranges)
        for (key, (a, b)), data in zip(located, datas):
            if data is not None and len(data) != b - a:
                raise DecodeError(f"chunk {key} in {self._where(shard)}: asked for bytes {a}-{b}, got {len(data)}; "
                                  "the shard is truncated")
            if data is not None and self.layout.sharding.data_encoding == "gzip":
                data = compression.decompress(data, "gzip", f"chunk {key} in {self._where(shard)}")
            got[key] = data
        return got

    def _dense(self, n: int) -> bool:
        """Whether ``n`` chunks are most of a shard, and a shard is small enough to fetch whole."""
        sc = self.layout.scale
        total = sc.grid_size[0] * sc.grid_size[1] * sc.grid_size[2]
        per_shard = -(-total // (1 << self.layout.sharding.shard_bits))
        chunk_bytes = sc.chunk_size[0] * sc.chunk_size[1] * sc.chunk_size[2] * 8  # generous: 8 bytes a voxel
        return self.inner.latency_bound and 2 * n >= per_shard and per_shard * chunk_bytes <= (512 << 20)

    def get_many(self, keys: Iterable[str], executor: object = None) -> dict[str, bytes | None]:
        """Several chunks with few requests. Per shard: when they are most of it (and it is not
        huge), one read of the whole file; otherwise their ranges go to the inner store's
        ``get_ranges`` in one call, which network stores coalesce (neighbouring chunks, less than
        256 KiB apart, come back in one request)."""
        out: dict[str, bytes | None] = {}
        by_shard: dict[int, list[tuple[str, int, int]]] = {}
        for key in keys:
            cid, shard, mini = self._chunk_location(key)
            by_shard.setdefault(shard, []).append((key, cid, mini))
        for shard, members in by_shard.items():
            try:
                out.update(self._shard_chunks(shard, members))
            except DecodeError:
                self._forget(shard)  # a rewritten shard under stale cached indices: once more, afresh
                out.update(self._shard_chunks(shard, members))
        return out

    def exists(self, key: str) -> bool:
        cid, shard, mini = self._chunk_location(key)
        index = self._minishard(shard, mini)
        return index is not None and index.find(cid) is not None

    # -- writing ----------------------------------------------------------------------------------
    def _read_all(self, shard: int, wanted: set[int] | None = None) -> dict[int, bytes]:
        """Every chunk in a shard file (or those in ``wanted``), data_encoding undone."""
        data = self.inner.get(self.layout.shard_name(shard))
        if data is None:
            return {}
        return self._parse_shard(shard, data, wanted)

    def _parse_shard(self, shard: int, data: bytes, wanted: set[int] | None) -> dict[int, bytes]:
        ib = self.layout.index_bytes
        if len(data) < ib:
            raise DecodeError(f"{self._where(shard)} is {len(data)} bytes, shorter than its {ib}-byte index")
        table = np.frombuffer(data[:ib], "<u8").reshape(-1, 2)
        out: dict[int, bytes] = {}
        for mini, (start, end) in enumerate(table):
            if start == end:
                continue
            raw = data[ib + int(start) : ib + int(end)]
            if self.layout.sharding.minishard_index_encoding == "gzip":
                raw = compression.decompress(raw, "gzip", f"minishard {mini} index in {self._where(shard)}")
            idx = parse_minishard_index(raw, ib, self._where(shard))
            for cid, st, sz in zip(idx.ids, idx.starts, idx.sizes):
                if wanted is not None and int(cid) not in wanted:
                    continue
                if int(st + sz) > len(data):
                    raise DecodeError(f"chunk {int(cid)} in {self._where(shard)} runs past the end of the file")
                payload = data[int(st) : int(st + sz)]
                if self.layout.sharding.data_encoding == "gzip":
                    payload = compression.decompress(payload, "gzip", f"chunk {int(cid)} in {self._where(shard)}")
                out[int(cid)] = payload
        return out

    def put_many(self, items: Mapping[str, bytes | None], *, content_type: str | None = None,
                 content_encoding: str | None = None) -> None:
        """Write (or, with ``None``, delete) several chunks: each touched shard is read, merged
        and rewritten once, so chunks already in the shard are kept."""
        by_shard: dict[int, dict[int, bytes | None]] = {}
        for key, data in items.items():
            if data is not None and content_encoding is not None:
                data = compression.decompress(data, content_encoding, key)  # shards use data_encoding
            cid, shard, _ = self._chunk_location(key)
            by_shard.setdefault(shard, {})[cid] = data
        for shard, updates in by_shard.items():
            merged = self._read_all(shard)
            for cid, data in updates.items():
                if data is None:
                    merged.pop(cid, None)
                else:
                    merged[cid] = data
            name = self.layout.shard_name(shard)
            if merged:
                self.inner.put(name, build_shard(merged, self.layout), content_type="application/octet-stream")
            else:
                self.inner.delete(name)
            self._forget(shard)

    def put(self, key: str, data: bytes, *, content_type: str | None = None, content_encoding: str | None = None) -> None:
        self.put_many({key: data}, content_encoding=content_encoding)

    def delete(self, key: str) -> None:
        self.put_many({key: None})

    def _forget(self, shard: int) -> None:
        self._indices.discard(("shard", shard))
        for m in range(min(1 << self.layout.sharding.minishard_bits, 1 << 16)):
            self._indices.discard(("mini", shard, m))

    def list(self, prefix: str = "") -> Iterator[str]:
        """Chunk names present in the shard files (reads every shard's indices)."""
        sc = self.layout.scale
        grid = sc.grid_size
        for name in self.inner.list(""):
            if not name.endswith(".shard") or "/" in name:
                continue
            try:
                shard = int(name[: -len(".shard")], 16)
            except ValueError:
                continue
            for cid in sorted(self._read_all(shard)):
                cell = _morton_decode(cid, grid)
                cname = sc.chunk_name(cell)
                if cname.startswith(prefix):
                    yield cname

    def _with_url(self, url: StoreURL) -> "ShardedStore":
        return ShardedStore(self.inner._with_url(url), self.layout.scale)

    def close(self) -> None:
        self.inner.close()


@dataclass(frozen=True)
class _ShardIndex:
    entries: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.entries.nbytes)


def _morton_decode(code: int, grid_size: Iterable[int]) -> tuple[int, int, int]:
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
