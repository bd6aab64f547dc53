"""``mem://name/prefix``: an in-process store, shared by every Volume in the process."""

from __future__ import annotations

import itertools
import threading
from typing import Iterator

from .. import compression
from ..errors import ConflictError
from .base import ABSENT, ByteRange, Store, Versioned, check_key
from .url import StoreURL

#: an object at rest: (bytes, content_encoding, generation)
Item = tuple[bytes, "str | None", str]


class MemoryBuckets:
    """Named in-memory buckets: a process-wide 'disk' for ``mem://`` volumes.

    This is the one deliberate piece of process-wide state: like a filesystem, a ``mem://``
    volume written by one ``Volume`` must be readable by the next one opened on the same URL.
    Every write takes the next number of one counter as its generation, so no two versions
    of an object ever share one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[str, Item]] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._count = itertools.count(1)

    def bucket(self, name: str) -> dict[str, Item]:
        with self._lock:
            return self._buckets.setdefault(name, {})

    def write(self, name: str, path: str, data: bytes, encoding: str | None = None,
              if_generation: str | None = None) -> str:
        """Put an object (compare-and-swap with ``if_generation``); its new generation."""
        bucket = self.bucket(name)
        with self._lock:
            if if_generation is not None:
                now = bucket.get(path)
                if (now[2] if now is not None else ABSENT) != if_generation:
                    raise ConflictError(f"mem://{name}/{path} is not at generation {if_generation}: it was changed")
            gen = str(next(self._count))
            bucket[path] = (bytes(data), encoding, gen)
            return gen

    def key_lock(self, bucket: str, key: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault((bucket, key), threading.Lock())

    def drop(self, name: str) -> None:
        with self._lock:
            self._buckets.pop(name, None)


BUCKETS = MemoryBuckets()


class MemoryStore(Store):
    """Objects kept as ``(bytes, content_encoding, generation)`` in a named in-process bucket."""

    default_parallel = 4
    latency_bound = False

    def __init__(self, url: StoreURL, buckets: MemoryBuckets = BUCKETS):
        super().__init__(url)
        self._buckets = buckets
        self._data = buckets.bucket(url.netloc)

    @property
    def supports_conditional_writes(self) -> bool:
        return True

    def _path(self, key: str) -> str:
        check_key(key)
        return f"{self.url.path}/{key}".strip("/") if self.url.path else key

    def get(self, key: str, byte_range: ByteRange | None = None) -> bytes | None:
        got = self.read(key, byte_range)
        return None if got is None else got.data

    def read(self, key: str, byte_range: ByteRange | None = None, *, if_match: str | None = None,
             if_none_match: str | None = None) -> Versioned | None:
        item = self._data.get(self._path(key))  # one lookup: bytes and generation agree
        if item is None:
            if if_match is not None:
                raise ConflictError(f"{self.url.key_url(key)} is gone (it was at generation {if_match})")
            return None
        data, enc, gen = item
        if if_match is not None and gen != if_match:
            raise ConflictError(f"{self.url.key_url(key)} changed (generation {gen}, expected {if_match})")
        if if_none_match is not None and gen == if_none_match:
            return Versioned(None, gen)
        if byte_range is not None:
            return Versioned(data[byte_range[0] : byte_range[1]], gen)  # ranges see stored bytes, like GCS/S3
        return Versioned(compression.decompress(data, enc, self.url.key_url(key), self.decoded_limit), gen)

    def stat(self, key: str) -> str | None:
        item = self._data.get(self._path(key))
        return None if item is None else item[2]

    def put(self, key: str, data: bytes, *, content_type: str | None = None, content_encoding: str | None = None,
            if_generation: str | None = None) -> str:
        return self._buckets.write(self.url.netloc, self._path(key), data, compression.normalize(content_encoding),
                                   if_generation)

    def delete(self, key: str) -> None:
        self._data.pop(self._path(key), None)

    def lock(self, key: str) -> threading.Lock:
        """An in-process lock per key (``mem://`` lives in one process)."""
        return self._buckets.key_lock(self.url.netloc, self._path(key))

    def exists(self, key: str) -> bool:
        return self._path(key) in self._data

    def list(self, prefix: str = "") -> Iterator[str]:
        root = f"{self.url.path}/" if self.url.path else ""
        full = root + prefix
        for k in sorted(list(self._data)):
            if k.startswith(full):
                yield k[len(root) :]

    def _with_url(self, url: StoreURL) -> "MemoryStore":
        return MemoryStore(url, self._buckets)
