"""``neuroglancer_uint64_sharded_v1`` as a store adapter: chunk name in, chunk bytes out.

The Volume asks for chunks by their unsharded name (``x0-x1_y0-y1_z0-z1``); this adapter
maps the name to a grid cell, the cell to its shard and minishard (``sharding.py``), and does
the ranged reads of the shard file format (``shard_index.py``). Shard indices and minishard
indices are cached (bounded), so a warm chunk read is one ranged GET.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Callable, ContextManager, Iterable, Iterator, Mapping, NamedTuple, Sequence, TypeVar

import numpy as np

from .. import compression
from ..errors import ConflictError, DecodeError, RequestError, StoreError
from ..info import Scale
from ..sharding import SCALAR_MOST, ShardLayout, morton_decode
from .base import ByteRange, Store, Versioned, WrapperStore
from .batch import Chain, Gets, Groups, data_only, items
from .lru import ChunkLRU
from .recheck import Recheck
from .retry import get_ranges_coalesced
from .shard_index import (MAX_RANGE, MinishardIndex, ShardFiles, ShardIndex, check_members, decode_minishard_index,
                          parse_shard, wanted_chunks)
from .shard_writes import ShardWrites
from .url import StoreURL

if TYPE_CHECKING:
    from ..runtime import Runtime

_WHOLE_INDEX_LIMIT = 1 << 16  # read a shard's whole index when it is at most this many bytes
#: a shard file on local disk (or in memory) is read whole for a batch (one read for all its
#: chunks and indices) when it is at most WHOLE_MOST bytes and WHOLE_PER_CHUNK per chunk wanted:
#: a read saved (~15 us) is worth copying ~15 KiB more; a 16 MiB shard read by one loop is not
WHOLE_MOST, WHOLE_PER_CHUNK = 8 << 20, 32 << 10
#: chunks of one shard read as one group of a batch, at most
GROUP_MOST = 512
#: chunk locations (name -> chunk id, shard, minishard) a store remembers, at most: a warm
#: read of a few hundred chunks then hashes none (~50 us saved on 75 chunks)
LOCATIONS_MOST = 1 << 16
T = TypeVar("T")
#: reads of a shard that other writers keep changing are tried this many times (backing off
#: up to a quarter of a second between tries, about 3 s in all), then fail
ATTEMPTS = 16


class Indexed(NamedTuple):
    """A cached shard or minishard index, the shard generation it was read from, and when
    it was last known to be current (``time.time()``)."""

    value: "ShardIndex | MinishardIndex | None"
    generation: str | None
    at: float


def _index_size(entry: Indexed) -> int:
    return getattr(entry.value, "nbytes", 64)


class _Changed(Exception):
    """The shard changed under a read: forget its indices and read again."""


class ShardedStore(ShardWrites, WrapperStore):
    """Chunks of one sharded scale, addressed by their unsharded chunk names.

    Generations: a chunk's generation is its shard file's. Cached indices remember the shard
    generation they came from, and chunk bytes are read on the condition that the shard is
    still at it (``read(..., if_match=)``): when another writer has rewritten the shard, the
    indices are read again and the read retried, so a reader sees the old chunk or the new
    one, never bytes of another. An answer "absent" from cached indices is as fresh as
    ``recheck`` asks. Shard rewrites are compare-and-swap on the generation read, retried on
    conflict, when the inner store can write conditionally: writers of one shard keep each
    other's chunks without a lock.
    """

    def __init__(self, inner: Store, scale: Scale, index_cache_bytes: int = 64 << 20,
                 recheck: Recheck | None = None):
        if scale.sharding is None:
            raise RequestError(f"scale {scale.key} is not sharded")
        super().__init__(inner)
        self.layout = ShardLayout(scale.sharding, scale)
        self.inflates = inner.inflates or scale.sharding.data_encoding == "gzip"
        self.recheck = recheck if recheck is not None else Recheck("open")
        self._index_cache_bytes = index_cache_bytes
        self._indices = ChunkLRU(index_cache_bytes, sizeof=_index_size)
        self._located: dict[str, tuple[int, int, int]] = {}  # see LOCATIONS_MOST; the layout never changes
        # a minishard index lists at most every chunk of the scale, 24 bytes each: a gzip'd one
        # that inflates past that is damage (or a bomb), not an index
        grid = scale.grid_size
        self._index_limit = 24 * int(grid[0]) * int(grid[1]) * int(grid[2]) + (64 << 10)
        base = inner.url.key_url("")
        self._base = base if inner.url.key_url("0.shard") == f"{base}/0.shard" else ""  # else: joined each time

    def _where(self, shard: int) -> str:
        """A shard file's address, for messages (made often: for every chunk's decompression)."""
        name = self.layout.shard_name(shard)
        return f"{self._base}/{name}" if self._base else self.inner.url.key_url(name)

    def _ranged(self, shard: int, rng: ByteRange, what: str, gen: str | None = None) -> Versioned | None:
        """Stored bytes ``rng`` of a shard, from generation ``gen`` when given (else any)."""
        if rng[1] - rng[0] > MAX_RANGE or rng[0] < 0 or rng[1] < rng[0]:
            raise DecodeError(f"{what} in {self._where(shard)} has an implausible byte range {rng}; the shard is corrupt")
        try:
            got = self.inner.read(self.layout.shard_name(shard), rng, if_match=gen)
        except ConflictError:
            raise _Changed() from None
        if got is None:
            return None
        if got.data is None or len(got.data) != rng[1] - rng[0]:
            raise DecodeError(
                f"{what} in {self._where(shard)}: asked for bytes {rng[0]}-{rng[1]}, got "
                f"{0 if got.data is None else len(got.data)}; the shard is truncated"
            )
        return got

    # -- indices ----------------------------------------------------------------------------------
    def _shard_index(self, shard: int) -> Indexed | None:
        """The whole shard index (when small) and its generation; None if the shard is absent."""

        def load() -> Indexed | None:
            got = self._ranged(shard, (0, self.layout.index_bytes), "shard index")
            if got is None:
                return None
            table = ShardIndex(np.frombuffer(got.data, "<u8").reshape(-1, 2))  # type: ignore[arg-type]
            return Indexed(table, got.generation, time.time())

        return self._indices.fetch(("shard", shard), load)

    def _minishard_range(self, shard: int, mini: int) -> tuple[tuple[int, int] | None, str | None] | None:
        """([start, end) of a minishard index relative to the index end, or None if empty;
        the shard generation), or None if the shard is absent."""
        ib = self.layout.index_bytes
        if ib <= _WHOLE_INDEX_LIMIT:
            entry = self._shard_index(shard)
            if entry is None:
                return None
            table, gen = entry.value, entry.generation
            start, end = int(table.entries[mini, 0]), int(table.entries[mini, 1])  # type: ignore[union-attr]
        else:
            got = self._ranged(shard, (16 * mini, 16 * mini + 16), "shard index entry")
            if got is None:
                return None
            gen = got.generation
            start, end = (int(v) for v in np.frombuffer(got.data, "<u8"))  # type: ignore[arg-type]
        if end < start:
            raise DecodeError(f"shard index of {self._where(shard)} has entry {mini} ending before it starts")
        return (None if start == end else (start, end)), gen

    def _minishard(self, shard: int, mini: int) -> Indexed | None:
        """A minishard index (value None: the minishard is empty) with its shard generation;
        None if the shard is absent. Raises _Changed if the shard changed while it was read."""

        def load() -> Indexed | None:
            found = self._minishard_range(shard, mini)
            if found is None:
                return None
            rng, gen = found
            if rng is None:
                return Indexed(None, gen, time.time())
            ib = self.layout.index_bytes
            got = self._ranged(shard, (ib + rng[0], ib + rng[1]), f"minishard {mini} index", gen)
            if got is None:
                raise _Changed()  # the shard vanished after its index was read
            index = decode_minishard_index(got.data, self.layout, mini, self._where(shard), self._index_limit)  # type: ignore[arg-type]
            check_members({mini: index}, self.layout, shard, self._where(shard))
            return Indexed(index, gen, time.time())

        return self._indices.fetch(("mini", shard, mini), load)

    def _locate(self, shard: int, mini: int, cid: int) -> tuple[tuple[int, int] | None, str | None, bool]:
        """(the chunk's byte range or None, the shard generation, whether the answer came from
        indices old enough for ``recheck`` to ask about them)."""
        entry = self._minishard(shard, mini)
        if entry is None:
            return None, None, False
        loc = None if entry.value is None else entry.value.find(cid)  # type: ignore[union-attr]
        return loc, entry.generation, self.recheck.due(entry.at)

    def _still(self, shard: int, gen: str | None, minis: Iterable[int] = ()) -> bool:
        """Whether the shard is still at ``gen`` (asked of the store); refreshes the cached
        indices' time when it is, forgets them when not."""
        if gen is None:
            return True  # the store cannot tell: nothing better to do than trust the indices
        if self.inner.stat(self.layout.shard_name(shard)) != gen:
            self._forget(shard)
            return False
        now = time.time()
        for key in [("shard", shard)] + [("mini", shard, m) for m in minis]:
            entry = self._indices.get(key)
            if entry is not None and entry.generation == gen:
                self._indices.put(key, entry._replace(at=now))
        return True

    def _chunk_location(self, key: str) -> tuple[int, int, int]:
        loc = self._located.get(key)
        return self.layout.location(key) if loc is None else loc

    # -- reading ------------------------------------------------------------------------------------
    def get(self, key: str, byte_range: ByteRange | None = None) -> bytes | None:
        got = self.read(key, byte_range)
        return None if got is None else got.data

    def read(self, key: str, byte_range: ByteRange | None = None, *, if_match: str | None = None,
             if_none_match: str | None = None) -> Versioned | None:
        """A chunk with its shard's generation (conditions are on the shard's generation)."""
        if byte_range is not None:
            raise RequestError("byte ranges of chunks inside a shard are not supported; read the whole chunk")
        cid, shard, mini = self._chunk_location(key)
        if if_match is not None or if_none_match is not None:
            now = self.inner.stat(self.layout.shard_name(shard))
            if if_none_match is not None and now == if_none_match:
                return Versioned(None, now)
            if if_match is not None and now != if_match:
                raise ConflictError(f"{self._where(shard)} is not at generation {if_match} (it is at "
                                    f"{now or 'nothing'}): another writer changed it")
            got = self._attempts(shard, lambda: self._get_chunk(key, cid, shard, mini, must=now))
            if got is None and if_match is not None:
                raise ConflictError(f"chunk {key} is not in {self._where(shard)} at generation {if_match}")
            return got
        return self._read_at(key, cid, shard, mini)

    def _read_at(self, key: str, cid: int, shard: int, mini: int) -> Versioned | None:
        """A chunk whose id, shard and minishard are known."""
        return self._attempts(shard, lambda: self._get_chunk(key, cid, shard, mini))

    def _attempts(self, shard: int, fn: "Callable[[], T]") -> "T":
        """``fn()``, again with fresh indices while the shard changes under it (a bounded number
        of times). Without generations a DecodeError may be stale indices too: once more."""
        for attempt in range(ATTEMPTS):
            try:
                return fn()
            except _Changed:
                self._forget(shard)
            except DecodeError:
                if attempt or self.inner.supports_generations:
                    raise
                self._forget(shard)
            time.sleep(min(0.25, 0.001 * 2 ** attempt) * random.random())
        raise StoreError(f"{self._where(shard)} changed on each of {ATTEMPTS} reads: another writer keeps rewriting "
                         "it; try again later")

    def _get_chunk(self, key: str, cid: int, shard: int, mini: int, must: str | None = None) -> Versioned | None:
        loc, gen, due = self._locate(shard, mini, cid)
        if must is not None and gen != must:
            raise _Changed()  # cached indices are of another generation than the shard's now
        if loc is None:
            if due and must is None and not self._still(shard, gen, [mini]):
                raise _Changed()
            return None
        got = self._ranged(shard, loc, f"chunk {key}", gen)
        if got is None:
            raise _Changed()  # the shard vanished between index read and data read
        data = got.data
        if self.layout.sharding.data_encoding == "gzip":
            data = compression.decompress(data, "gzip", f"chunk {key} in {self._where(shard)}", self.decoded_limit)
        return Versioned(data, gen if gen is not None else got.generation)

    def lock(self, key: str) -> "ContextManager[None]":
        """Locking a chunk locks its whole shard file: a shard is rewritten as one object."""
        _, shard, _ = self._chunk_location(key)
        return self.inner.lock(self.layout.shard_name(shard))

    def _shard_chunks(self, shard: int, members: list[tuple[str, int, int]]) -> dict[str, Versioned | None]:
        """Chunks of one shard, all from one generation of it (raises _Changed when the shard
        changed under the read)."""
        got: dict[str, Versioned | None] = {}
        if self._dense(len(members)):
            # most of the shard is wanted: one request for the whole file beats many
            whole = self.inner.read(self.layout.shard_name(shard))
            found = {} if whole is None else self._parse_shard(shard, whole.data, {cid for _, cid, _ in members})  # type: ignore[arg-type]
            for key, cid, _ in members:
                data = found.get(cid)
                got[key] = None if data is None else Versioned(data, whole.generation)  # type: ignore[union-attr]
            return got
        located: list[tuple[str, tuple[int, int]]] = []
        gens: set[str | None] = set()
        stale: list[int] = []  # minishards whose "absent" answers recheck asks about
        for key, cid, mini in members:
            loc, gen, due = self._locate(shard, mini, cid)
            if gen is not None or loc is not None:
                gens.add(gen)
            if loc is None:
                got[key] = None
                if due:
                    stale.append(mini)
            else:
                located.append((key, loc))
        if len(gens) > 1:
            raise _Changed()  # indices cached from different versions of the shard
        gen = next(iter(gens), None)
        if stale and not self._still(shard, gen, stale):
            raise _Changed()
        if not located:
            return got
        for _, (a, b) in located:
            if b - a > MAX_RANGE or b < a:
                raise DecodeError(f"{self._where(shard)} has an implausible chunk range {(a, b)}; the shard is corrupt")
        datas = self._read_ranges(shard, [loc for _, loc in located], gen)
        for (key, (a, b)), data in zip(located, datas):
            if data is None:
                raise _Changed()  # the shard vanished after its indices were read
            if len(data) != b - a:
                raise DecodeError(f"chunk {key} in {self._where(shard)}: asked for bytes {a}-{b}, got {len(data)}; "
                                  "the shard is truncated")
            if self.layout.sharding.data_encoding == "gzip":
                data = compression.decompress(data, "gzip", f"chunk {key} in {self._where(shard)}", self.decoded_limit)
            got[key] = Versioned(data, gen)
        return got

    def _read_ranges(self, shard: int, ranges: list[tuple[int, int]], gen: str | None) -> list[bytes | None]:
        """Stored byte ranges of a shard, all from generation ``gen`` (when known); a network
        store's nearby ranges come back in one request."""
        name = self.layout.shard_name(shard)

        def one(rng: ByteRange) -> bytes | None:
            try:
                got = self.inner.read(name, rng, if_match=gen)
            except ConflictError:
                raise _Changed() from None
            return None if got is None else got.data

        if self.inner.latency_bound:
            return get_ranges_coalesced(one, ranges)
        return [one(r) for r in ranges]

    def _dense(self, n: int) -> bool:
        """Whether ``n`` chunks are most of a shard, and a shard is small enough to fetch whole."""
        sc = self.layout.scale
        total = sc.grid_size[0] * sc.grid_size[1] * sc.grid_size[2]
        per_shard = -(-total // (1 << self.layout.sharding.shard_bits))
        chunk_bytes = sc.chunk_size[0] * sc.chunk_size[1] * sc.chunk_size[2] * 8  # generous: 8 bytes a voxel
        return self.inner.latency_bound and 2 * n >= per_shard and per_shard * chunk_bytes <= (512 << 20)

    def iter_read(self, keys: Iterable[str], expected_bytes: int | None = None,
                  runtime: "Runtime | None" = None) -> Iterator[tuple[str, Versioned | None]]:
        """The batched read. Over a network, keys are grouped by shard (at most
        ``GROUP_MOST`` to a group, so big reads still spread over the loops) and each group is
        read with few requests (see :meth:`_fetch_group`); on local disk see :meth:`_local_batch`."""
        keys = list(keys)
        if len(keys) < 2:
            return super().iter_read(keys, expected_bytes, runtime)
        where = self._locations(keys)  # hashed for all at once: numpy's fixed cost is ~50 us a call
        if not self.inner.latency_bound:
            return self._local_batch(keys, where, runtime)
        by_shard: dict[int, list[str]] = {}
        for key in keys:
            by_shard.setdefault(where[key][1], []).append(key)
        groups = [g[i : i + GROUP_MOST] for g in by_shard.values() for i in range(0, len(g), GROUP_MOST)]
        return Groups(lambda group: self._fetch_group(group, where), groups, 1 if runtime is None else runtime.parallel)

    def _local_batch(self, keys: list[str], where: Mapping[str, tuple[int, int, int]],
                     runtime: "Runtime | None", versioned: bool = True) -> Gets:
        """A batch from a store without latency (disk, memory), each chunk fetched by the loop
        that decodes it: from a small shard read whole, once (see ``WHOLE_MOST``), or by a
        ranged read through the cached indices. Items are ``Versioned`` (``versioned``) or
        the bytes alone (what ``iter_get`` gives, with no wrapper to unwrap each item)."""
        by_shard: dict[int, tuple[list[str], dict[int, set[int]]]] = {}  # shard -> (its keys, minishard -> ids)
        for key in keys:
            cid, shard, mini = where[key]
            group = by_shard.get(shard)
            if group is None:
                group = by_shard[shard] = ([], {})
            group[0].append(key)
            ids = group[1].get(mini)
            if ids is None:
                group[1][mini] = {cid}
            else:
                ids.add(cid)
        whole = {shard: minis for shard, (ks, minis) in by_shard.items() if self._whole_worth(shard, len(ks))}
        files = ShardFiles(lambda shard: self._read_whole(shard, whole[shard]), {s: len(by_shard[s][0]) for s in whole})
        named = {shard: self._where(shard) for shard in whole}  # for messages: made once a shard, not once a chunk
        width = self.batch_width(runtime)
        if whole:
            # a whole shard's chunks one after another, so its bytes are let go sooner; the first
            # chunk of each of the first ``width`` shards first, so loops read those at once
            # rather than wait for one loop to read the first
            order = sorted(whole)
            keys = [by_shard[s][0][0] for s in order[:width]] + \
                [k for i, s in enumerate(order) for k in by_shard[s][0][(1 if i < width else 0):]] + \
                [k for s, (ks, _) in by_shard.items() if s not in whole for k in ks]

        def get(key: str) -> Versioned | bytes | None:
            cid, shard, mini = where[key]
            if shard not in whole:
                got = self._read_at(key, cid, shard, mini)
                return got if versioned or got is None else got.data
            data, gen = files.take(shard, cid)
            if data is None:
                return None
            if gzipped:
                data = compression.decompress(data, "gzip", f"chunk {key} in {named[shard]}", self.decoded_limit)
            return Versioned(data, gen) if versioned else data

        gzipped = self.layout.sharding.data_encoding == "gzip"
        return Gets(get, keys, width)

    def _whole_worth(self, shard: int, n: int) -> bool:
        """Whether reading a shard whole beats reading ``n`` of its chunks one by one (see
        ``WHOLE_MOST``); its size is known from its cached shard index."""
        if self.layout.index_bytes > _WHOLE_INDEX_LIMIT:
            return False
        entry = self._shard_index(shard)  # absent: one read says so; else its last minishard index ends the file
        size = 0 if entry is None else self.layout.index_bytes + entry.value.end  # type: ignore[union-attr]
        return size <= min(WHOLE_MOST, n * WHOLE_PER_CHUNK)

    def _read_whole(self, shard: int, wanted: Mapping[int, set[int]]) -> tuple[dict[int, bytes], str | None]:
        """The stored bytes of the chunks ``wanted`` (minishard -> chunk ids) of a shard read
        whole (``data_encoding`` not undone), and the shard's generation. Indices parsed from
        it are cached; cached ones of its generation are used rather than parsed again."""
        since = self._indices.epoch
        got = self.inner.read(self.layout.shard_name(shard))
        if got is None:
            self._forget(shard)  # indices cached before it vanished are of nothing now
            return {}, None
        gen, now = got.generation, time.time()
        if gen is None:  # nothing tells this version from the one older indices came from
            self._forget(shard)
            since = self._indices.epoch
        known = {}
        for mini in wanted if gen is not None else ():
            entry = self._indices.get(("mini", shard, mini))
            if entry is not None and entry.generation == gen:
                known[mini] = entry.value
        # gzip'd chunks are views of the file (inflating them makes their bytes), else copies
        data = memoryview(got.data) if self.layout.sharding.data_encoding == "gzip" else got.data  # type: ignore[arg-type]
        chunks, parsed, table = wanted_chunks(data, self.layout, shard, self._where(shard), wanted, known,  # type: ignore[arg-type]
                                              self._index_limit)
        # the cached index of this generation is kept (a fresher time); a new one is a copy: a
        # view would keep the whole file alive in the index cache
        cached = self._indices.get(("shard", shard))
        kept = cached.value if cached is not None and gen is not None and cached.generation == gen else \
            ShardIndex(table.copy())
        self._indices.put(("shard", shard), Indexed(kept, gen, now), since)
        for mini, index in parsed.items():
            self._indices.put(("mini", shard, mini), Indexed(index, gen, now), since)
        return chunks, gen

    def iter_get(self, keys: Iterable[str], expected_bytes: int | None = None,
                 runtime: "Runtime | None" = None) -> Iterator[tuple[str, bytes | None]]:
        keys = list(keys)
        if len(keys) >= 2 and not self.inner.latency_bound:  # bytes straight from the batch
            return self._local_batch(keys, self._locations(keys), runtime, versioned=False)  # type: ignore[return-value]
        return data_only(self.iter_read(keys, expected_bytes, runtime))

    def iter_revalidate(self, generations: Mapping[str, str], runtime: "Runtime | None" = None
                        ) -> Iterator[tuple[str, Versioned | None]]:
        """Checks of cached chunks, one metadata request per shard (a chunk's generation is its
        shard's): the chunks of unchanged shards are unchanged; the others are read afresh."""
        keys = list(generations)
        where = self._locations(keys)
        shards = sorted({where[k][1] for k in keys})
        now: dict[int, str | None] = {}

        def ask(shard: int) -> None:
            now[shard] = self.inner.stat(self.layout.shard_name(shard))

        if runtime is None:
            for shard in shards:
                ask(shard)
        else:
            runtime.run(ask, shards, self.inner.batch_width(runtime))
        same = [(k, Versioned(None, generations[k])) for k in keys if now[where[k][1]] == generations[k]]
        changed = [k for k in keys if now[where[k][1]] != generations[k]]
        for shard in {where[k][1] for k in changed}:
            self._forget(shard)  # its cached indices are of an older version too
        return Chain([items(same), self.iter_read(changed, None, runtime)])  # type: ignore[list-item]

    def _locations(self, keys: Sequence[str]) -> dict[str, tuple[int, int, int]]:
        """(chunk id, shard, minishard) of every key: remembered ones as they were (see
        ``LOCATIONS_MOST``), the others hashed all at once (a few keys: one by one, cheaper
        than numpy's fixed costs)."""
        known = self._located
        found: dict[str, tuple[int, int, int]] = {}
        missing = []
        for k in keys:
            loc = known.get(k)
            if loc is None:
                missing.append(k)
            else:
                found[k] = loc
        if not missing:
            return found
        if len(missing) <= SCALAR_MOST:
            new = {k: self.layout.location(k) for k in missing}
        else:
            cids, shards, minis = self.layout.locations(missing)
            new = dict(zip(missing, zip(cids.tolist(), shards.tolist(), minis.tolist())))
        if len(known) + len(new) > LOCATIONS_MOST:
            known.clear()
        if len(new) <= LOCATIONS_MOST:
            known.update(new)
        found.update(new)
        return found

    def _fetch_group(self, keys: Sequence[str], where: Mapping[str, tuple[int, int, int]] | None = None
                     ) -> dict[str, Versioned | None]:
        """Chunks of one shard with few requests: when they are most of it (and it is not
        huge), one read of the whole file; otherwise their ranges are read on the condition
        that the shard is at the generation of the indices that located them, coalesced by
        network stores (neighbouring chunks, less than 256 KiB apart, come back in one request)."""
        out: dict[str, Versioned | None] = {}
        by_shard: dict[int, list[tuple[str, int, int]]] = {}
        where = self._locations(keys) if where is None else where
        for key in keys:
            cid, shard, mini = where[key]
            by_shard.setdefault(shard, []).append((key, cid, mini))
        for shard, members in by_shard.items():
            out.update(self._attempts(shard, lambda: self._shard_chunks(shard, members)))  # noqa: B023
        return out

    def exists(self, key: str) -> bool:
        return self.read(key) is not None if self.recheck.setting is True else self._exists(key)

    def _exists(self, key: str) -> bool:
        cid, shard, mini = self._chunk_location(key)

        def look() -> bool:
            loc, gen, due = self._locate(shard, mini, cid)
            if loc is None and due and not self._still(shard, gen, [mini]):
                raise _Changed()
            return loc is not None

        return self._attempts(shard, look)

    # -- writing ----------------------------------------------------------------------------------
    def _read_all(self, shard: int, wanted: set[int] | None = None) -> dict[int, bytes]:
        """Every chunk in a shard file (or those in ``wanted``), data_encoding undone."""
        got = self.inner.read(self.layout.shard_name(shard))
        return {} if got is None else self._parse_shard(shard, got.data, wanted)  # type: ignore[arg-type]

    def _parse_shard(self, shard: int, data: bytes, wanted: set[int] | None) -> dict[int, bytes]:
        return parse_shard(data, self.layout, shard, self._where(shard), wanted, self._index_limit, self.decoded_limit)

    def stat(self, key: str) -> str | None:
        """The generation of the chunk's shard if the chunk is in it, else None."""
        got = self.read(key)
        return None if got is None else got.generation

    def _forget(self, shard: int) -> None:
        self._indices.discard(("shard", shard))
        for m in range(min(1 << self.layout.sharding.minishard_bits, 1 << 16)):
            self._indices.discard(("mini", shard, m))

    def list(self, prefix: str = "") -> Iterator[str]:
        """Chunk names present in the shard files (reads every shard's indices)."""
        sc = self.layout.scale
        for name in self.inner.list(""):
            if not name.endswith(".shard") or "/" in name:
                continue
            try:
                shard = int(name[: -len(".shard")], 16)
            except ValueError:
                continue
            for cid in sorted(self._read_all(shard)):
                cname = sc.chunk_name(morton_decode(cid, sc.grid_size))
                if cname.startswith(prefix):
                    yield cname

    @property
    def supports_conditional_create(self) -> bool:
        return self.inner.supports_conditional_writes  # create_exclusive is put(if_generation=ABSENT)

    def _with_url(self, url: StoreURL) -> "ShardedStore":
        return ShardedStore(self.inner._with_url(url), self.layout.scale, self._index_cache_bytes, self.recheck)
