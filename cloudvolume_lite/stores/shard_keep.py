"""A shard's chunks while a rewrite merges changes into it: the chunks it leaves alone keep
their stored bytes (``data_encoding`` still applied) and go into the new file as they are;
the chunks it writes are held plain and encoded when the file is built. So patching one
chunk of a shard of hundreds costs one chunk's compression, not the shard's.

A writer with many new chunks for a shard encodes them itself, on several threads, as
:class:`StoredChunk` s (:func:`shard_payload`, the one encoding a shard file's chunks get):
the rewrite, which runs in one thread per shard, then only copies their bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, MutableMapping

from .. import compression
from ..errors import DecodeError

#: a gzip member's first bytes: magic, then method 8 (deflate); it is at least 18 bytes long
_GZIP_HEAD = b"\x1f\x8b\x08"
_GZIP_LEAST = 18


def shard_payload(data: bytes, data_encoding: str) -> bytes:
    """One chunk's bytes as a shard file of ``data_encoding`` holds them: gzip at level 9
    (what TensorStore writes), or the bytes as they are (``raw``)."""
    return compression.compress(data, "gzip", level=9) if data_encoding == "gzip" else data


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A chunk for a sharded store's ``update_many``, given as a shard file of ``encoding``
    (its ``data_encoding``) holds it: ``payload`` is :func:`shard_payload` of the plain chunk,
    so the file built from it is the one the plain chunk would make. A rewrite of a shard of
    that encoding copies the payload as it is. Called (as a read-modify-write ignoring the
    old bytes), it gives the plain chunk: what any other store, or a shard of another
    encoding, stores in its place."""

    payload: bytes
    encoding: str

    def __call__(self, old: "bytes | None" = None) -> bytes:
        if self.encoding == "gzip":
            return compression.decompress(self.payload, "gzip", "a chunk gzip'd for a shard")
        return self.payload

    @classmethod
    def of(cls, data: bytes, data_encoding: str) -> "StoredChunk":
        """The stored form of the plain chunk ``data`` in a shard file of ``data_encoding``."""
        return cls(shard_payload(data, data_encoding), data_encoding)


class ShardChunks(MutableMapping[int, bytes]):
    """Chunk id -> plain chunk bytes (``data_encoding`` undone) of one shard being rewritten.

    ``stored`` holds the chunks as the shard file has them; reading one of those (an update
    function asking for the old chunk) inflates it, bounded by ``limit``. Setting a chunk
    moves it to ``fresh`` (to be encoded); deleting drops it from either. Without inflating
    them, kept gzip chunks are checked as far as their framing tells (header, length, the
    size the trailer states against ``limit``), so a rewrite still refuses a shard whose
    chunks are plainly not gzip, or are bombs, as it did when it inflated each; a kept
    chunk's CRC is checked whenever it is read.
    """

    def __init__(self, stored: Mapping[int, "bytes | memoryview"], gzipped: bool, where: str,
                 limit: int | None = None):
        self.stored: dict[int, bytes | memoryview] = dict(stored)
        self.fresh: dict[int, bytes] = {}
        self._gzipped = gzipped
        self._where = where
        self._limit = limit
        if gzipped:
            for cid, payload in self.stored.items():
                self._check(cid, payload)

    def _check(self, cid: int, payload: "bytes | memoryview") -> None:
        if not len(payload):
            return  # nothing inflates to nothing (as decompress has it): kept as it is
        if len(payload) < _GZIP_LEAST or bytes(payload[:3]) != _GZIP_HEAD:
            raise DecodeError(f"chunk {cid} in {self._where}: its {len(payload)} stored bytes are not a gzip "
                              "stream; the shard is damaged, restore it from its source")
        stated = int.from_bytes(payload[-4:], "little")
        if self._limit is not None and stated > self._limit:
            raise DecodeError(f"chunk {cid} in {self._where}: its gzip stream states {stated} bytes, past the "
                              f"{self._limit} one chunk of this scale may decode to: it is damaged or hostile (a "
                              "decompression bomb); restore the shard from its source")

    def __getitem__(self, cid: int) -> bytes:
        if cid in self.fresh:
            return self.fresh[cid]
        payload = self.stored[cid]
        if self._gzipped:
            where = f"chunk {cid} in {self._where}"
            return compression.decompress(payload, "gzip", where, self._limit)  # type: ignore[arg-type]
        return bytes(payload)

    def __setitem__(self, cid: int, data: bytes) -> None:
        self.stored.pop(cid, None)
        self.fresh[cid] = data

    def takes(self, chunk: StoredChunk) -> bool:
        """Whether ``chunk``'s payload is in this shard's ``data_encoding`` (then :meth:`keep` it)."""
        return (chunk.encoding == "gzip") == self._gzipped

    def keep(self, cid: int, payload: bytes) -> None:
        """Set chunk ``cid`` to ``payload``, already encoded as this shard stores chunks (see
        :meth:`takes`): it goes into the file as it is. Not checked as kept chunks are: it was
        made here, not read from a file."""
        self.fresh.pop(cid, None)
        self.stored[cid] = payload

    def __delitem__(self, cid: int) -> None:
        if self.stored.pop(cid, None) is None and self.fresh.pop(cid, None) is None:
            raise KeyError(cid)

    def __contains__(self, cid: object) -> bool:
        return cid in self.fresh or cid in self.stored

    def __iter__(self) -> Iterator[int]:
        yield from self.stored
        yield from self.fresh

    def __len__(self) -> int:
        return len(self.stored) + len(self.fresh)


__all__ = ["ShardChunks", "StoredChunk", "shard_payload"]
