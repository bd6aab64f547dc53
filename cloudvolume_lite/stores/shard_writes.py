"""Writing chunks of a sharded scale: each touched shard file is read, merged and rewritten
once, by compare-and-swap on the generation read where the inner store can write conditionally.
The chunks a rewrite does not change keep their stored bytes (see ``shard_keep.py``): only the
chunks written are encoded, and only those an update function reads are inflated.

A mixin of :class:`~cloudvolume_lite.stores.sharded.ShardedStore`, which provides what it uses:
``inner`` (the store holding the shard files), ``layout`` (a ``ShardLayout``),
``_chunk_location(key)``, ``_where(shard)`` (for messages), ``_forget(shard)`` (drop its
cached indices), ``_index_limit`` and ``decoded_limit`` (bounds on inflating a minishard index
and a chunk).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from .. import compression
from ..errors import ConflictError, RequestError, StoreError
from .base import ABSENT, Update
from .retry import conflict_pause
from .shard_index import apply_updates, build_shard, stored_shard
from .shard_keep import ShardChunks, StoredChunk

if TYPE_CHECKING:
    from ..sharding import ShardLayout
    from .base import Store


class ShardWrites:
    """``put``, ``put_many``, ``update_many`` and ``delete`` of a sharded store."""

    inner: "Store"
    layout: "ShardLayout"
    decoded_limit: int | None
    _index_limit: int

    def put_many(self, items: Mapping[str, bytes | None], *, content_type: str | None = None,
                 content_encoding: str | None = None) -> None:
        """Write (or, with ``None``, delete) several chunks: each touched shard is read, merged
        and rewritten once, so chunks already in the shard are kept; the rewrite is conditional
        on the generation read (when the inner store can do that), and redone on a conflict."""
        self.update_many(items, content_type=content_type, content_encoding=content_encoding)

    def update_many(self, items: Mapping[str, "bytes | None | Update"], *, content_type: str | None = None,
                    content_encoding: str | None = None) -> None:
        """Plain writes and read-modify-writes of chunks, each touched shard merged and
        rewritten once by compare-and-swap (the functions see the chunks of the shard version
        the rewrite builds on, and run again if it has to be redone). A
        :class:`~cloudvolume_lite.stores.shard_keep.StoredChunk` is already encoded as the
        shard holds it (``content_encoding`` does not apply to it): its bytes are copied in."""
        def plain(data: "bytes | None | bool", key: str) -> "bytes | None | bool":
            if isinstance(data, (bytes, bytearray, memoryview)) and content_encoding is not None:
                return compression.decompress(data, content_encoding, key)  # shards use data_encoding
            return data

        by_shard: dict[int, dict[int, "bytes | None | StoredChunk | Update"]] = {}
        for key, value in items.items():
            cid, shard, _ = self._chunk_location(key)
            if isinstance(value, StoredChunk):  # encoded as the shard stores it: not by content_encoding
                by_shard.setdefault(shard, {})[cid] = value
            elif callable(value):
                by_shard.setdefault(shard, {})[cid] = lambda old, fn=value, key=key: plain(fn(old), key)
            else:
                by_shard.setdefault(shard, {})[cid] = plain(value, key)  # type: ignore[assignment]
        for shard, updates in by_shard.items():
            self._rewrite(shard, updates)

    def _rewrite(self, shard: int, updates: Mapping[int, "bytes | None | StoredChunk | Update"], expect: str | None = None,
                 absent: int | None = None) -> str | None:
        """Merge ``updates`` into a shard by compare-and-swap, retried on conflict; the new
        generation. ``expect``: fail (ConflictError) unless the shard is at that generation;
        ``absent``: unless chunk id ``absent`` is not in it."""
        name = self.layout.shard_name(shard)
        cas = self.inner.supports_conditional_writes
        try:
            for attempt in range(64):
                got = self.inner.read(name)
                gen = None if got is None else got.generation
                if expect is not None and (gen or ABSENT) != expect:
                    raise ConflictError(f"{self._where(shard)} is not at generation {expect} (it is at "
                                        f"{gen or 'nothing'}): another writer changed it")
                merged = self._stored(shard, None if got is None else got.data)
                if absent is not None and absent in merged:
                    raise ConflictError(f"chunk {absent} already exists in {self._where(shard)}")
                if not apply_updates(merged, updates):
                    return gen
                cond = (ABSENT if got is None else gen) if cas else None
                try:
                    if merged or (cas and got is not None):
                        # an emptied shard is rewritten as an empty index rather than deleted, when
                        # deleting could drop a chunk another writer adds meanwhile
                        data = build_shard(merged.fresh, self.layout, merged.stored)
                        return self.inner.put(name, data,
                                              content_type="application/octet-stream", if_generation=cond)
                    if got is not None:
                        self.inner.delete(name)
                    return None
                except ConflictError:
                    if expect is not None:
                        raise
                    conflict_pause(attempt)
            raise StoreError(f"{self._where(shard)} was changed by other writers on each of 64 tries to rewrite it; "
                             "try again later, or give writers disjoint shards")
        finally:
            self._forget(shard)

    def _stored(self, shard: int, data: bytes | None) -> ShardChunks:
        """A shard file's chunks as stored (none when it is absent), its indices checked."""
        where = self._where(shard)
        # views of the file: kept chunks are copied once, into the new file
        stored = {} if data is None else stored_shard(memoryview(data), self.layout, shard, where, None,
                                                      self._index_limit)
        return ShardChunks(stored, self.layout.sharding.data_encoding == "gzip", where, self.decoded_limit)

    def put(self, key: str, data: bytes, *, content_type: str | None = None, content_encoding: str | None = None,
            if_generation: str | None = None) -> str | None:
        """One chunk; ``if_generation`` is the shard's generation (:data:`ABSENT`: the chunk
        must not exist yet, whatever else the shard holds)."""
        if if_generation is not None and not self.inner.supports_conditional_writes:
            raise RequestError(f"{type(self.inner).__name__} cannot write conditionally")
        cid, shard, _ = self._chunk_location(key)
        if content_encoding is not None:
            data = compression.decompress(data, content_encoding, key)
        if if_generation is None:
            return self._rewrite(shard, {cid: data})
        if if_generation == ABSENT:
            return self._rewrite(shard, {cid: data}, absent=cid)
        return self._rewrite(shard, {cid: data}, expect=if_generation)

    def delete(self, key: str) -> None:
        self.put_many({key: None})



__all__ = ["ShardWrites"]
