"""``neuroglancer_uint64_sharded_v1`` as a store adapter: chunk name in, chunk bytes out.

The Volume asks for chunks by their unsharded name (``x0-x1_y0-y1_z0-z1``); this adapter
maps the name to a grid cell, the cell to its shard and minishard (``sharding.py``), and does
the ranged reads of the shard file format (``shard_index.py``). Shard indices and minishard
indices are cached (bounded), so a warm chunk read is one ranged GET.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ContextManager, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .. import compression
from ..errors import DecodeError, RequestError
from ..info import Scale
from ..sharding import ShardLayout, morton_decode
from .base import ByteRange, Store, WrapperStore
from .batch import Groups
from .lru import ChunkLRU
from .shard_index import MAX_RANGE, MinishardIndex, ShardIndex, build_shard, parse_minishard_index
from .url import StoreURL

if TYPE_CHECKING:
    from ..runtime import Runtime

_WHOLE_INDEX_LIMIT = 1 << 16  # read a shard's whole index when it is at most this many bytes
#: chunks of one shard read as one group of a batch, at most
GROUP_MOST = 512

class ShardedStore(WrapperStore):
    """Chunks of one sharded scale, addressed by their unsharded chunk names."""

    def __init__(self, inner: Store, scale: Scale, index_cache_bytes: int = 64 << 20):
        if scale.sharding is None:
            raise RequestError(f"scale {scale.key} is not sharded")
        super().__init__(inner)
        self.layout = ShardLayout(scale.sharding, scale)
        self._indices = ChunkLRU(index_cache_bytes, sizeof=lambda v: getattr(v, "nbytes", 64))

    def _where(self, shard: int) -> str:
        return self.inner.url.key_url(self.layout.shard_name(shard))

    def _ranged(self, shard: int, rng: ByteRange, what: str) -> bytes | None:
        if rng[1] - rng[0] > MAX_RANGE or rng[0] < 0 or rng[1] < rng[0]:
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

    def _load_shard_index(self, shard: int) -> "ShardIndex | None":
        raw = self._ranged(shard, (0, self.layout.index_bytes), "shard index")
        return None if raw is None else ShardIndex(np.frombuffer(raw, "<u8").reshape(-1, 2))

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
            if b - a > MAX_RANGE or b < a:
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

    def iter_get(self, keys: Iterable[str], expected_bytes: int | None = None,
                 runtime: "Runtime | None" = None) -> Iterator[tuple[str, bytes | None]]:
        """The batched read. Over a network, keys are grouped by shard (at most
        ``GROUP_MOST`` to a group, so big reads still spread over the loops) and each group is
        read with few requests (see :meth:`_fetch_group`); on local disk each chunk is one
        ranged read through the cached indices, fetched by the loop that decodes it."""
        keys = list(keys)
        if not self.inner.latency_bound or len(keys) < 2:
            return super().iter_get(keys, expected_bytes, runtime)
        where = self._locations(keys)
        by_shard: dict[int, list[str]] = {}
        for key in keys:
            by_shard.setdefault(where[key][1], []).append(key)
        groups = [g[i : i + GROUP_MOST] for g in by_shard.values() for i in range(0, len(g), GROUP_MOST)]
        return Groups(lambda group: self._fetch_group(group, where), groups, 1 if runtime is None else runtime.parallel)

    def _locations(self, keys: Sequence[str]) -> dict[str, tuple[int, int, int]]:
        """(chunk id, shard, minishard) of every key, the hashing done for all of them at once."""
        cells = np.array([self.layout.cell_of(k) for k in keys], dtype=np.int64).reshape(-1, 3)
        cids = self.layout.chunk_ids(cells)
        shards, minis = self.layout.locate(cids)
        return {k: (int(c), int(s), int(m)) for k, c, s, m in zip(keys, cids.tolist(), shards.tolist(), minis.tolist())}

    def _fetch_group(self, keys: Sequence[str], where: Mapping[str, tuple[int, int, int]] | None = None
                     ) -> dict[str, bytes | None]:
        """Chunks of one shard with few requests: when they are most of it (and it is not
        huge), one read of the whole file; otherwise their ranges go to the inner store's
        ``get_ranges`` in one call, which network stores coalesce (neighbouring chunks, less than
        256 KiB apart, come back in one request)."""
        out: dict[str, bytes | None] = {}
        by_shard: dict[int, list[tuple[str, int, int]]] = {}
        where = self._locations(keys) if where is None else where
        for key in keys:
            cid, shard, mini = where[key]
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
                cell = morton_decode(cid, grid)
                cname = sc.chunk_name(cell)
                if cname.startswith(prefix):
                    yield cname

    @property
    def supports_conditional_create(self) -> bool:
        return False  # chunks live inside shard files: there is no object to create alone

    def _with_url(self, url: StoreURL) -> "ShardedStore":
        return ShardedStore(self.inner._with_url(url), self.layout.scale)
