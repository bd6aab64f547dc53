"""``mem://name/prefix``: an in-process store, shared by every Volume in the process."""

from __future__ import annotations

import threading
from typing import Iterator

from .. import compression
from .base import ByteRange, Store, check_key
from .url import StoreURL


class MemoryBuckets:
    """Named in-memory buckets: a process-wide 'disk' for ``mem://`` volumes.

    This is the one deliberate piece of process-wide state: like a filesystem, a ``mem://``
    volume written by one ``Volume`` must be readable by the next one opened on the same URL.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[str, tuple[bytes, str | None]]] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    def bucket(self, name: str) -> dict[str, tuple[bytes, str | None]]:
        with self._lock:
            return self._buckets.setdefault(name, {})

    def key_lock(self, bucket: str, key: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault((bucket, key), threading.Lock())

    def drop(self, name: str) -> None:
        with self._lock:
            self._buckets.pop(name, None)


BUCKETS = MemoryBuckets()


class MemoryStore(Store):
    """Objects kept as ``(bytes, content_encoding)`` in a named in-process bucket."""

    default_parallel = 4
    latency_bound = False

    def __init__(self, url: StoreURL, buckets: MemoryBuckets = BUCKETS):
        super().__init__(url)
        self._buckets = buckets
        self._data = buckets.bucket(url.netloc)

    def _path(self, key: str) -> str:
        check_key(key)
        return f"{self.url.path}/{key}".strip("/") if self.url.path else key

    def get(self, key: str, byte_range: ByteRange | None = None) -> bytes | None:
        item = self._data.get(self._path(key))
        if item is None:
            return None
        data, enc = item
        if byte_range is not None:
            return data[byte_range[0] : byte_range[1]]  # ranges see stored bytes, like GCS/S3
        return compression.decompress(data, enc, self.url.key_url(key))

    def put(self, key: str, data: bytes, *, content_type: str | None = None, content_encoding: str | None = None) -> None:
        self._data[self._path(key)] = (bytes(data), compression.normalize(content_encoding))

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
