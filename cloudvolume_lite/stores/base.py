"""The Store interface every backend implements."""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from concurrent.futures import Executor
from typing import Callable, ContextManager, Iterable, Iterator, Mapping, Sequence

from ..errors import RequestError, UnsupportedEncodingError
from .url import StoreURL

ByteRange = tuple[int, int]  # [start, end) in bytes


def check_key(key: str) -> str:
    """Refuse keys that would leave the store's root (``..``, absolute paths)."""
    if not isinstance(key, str):
        raise RequestError(f"store keys are strings, got {type(key).__name__}")
    norm = posixpath.normpath("/" + key)
    if key.startswith("/") or "\\" in key or norm.lstrip("/") != key.strip("/") or ".." in key.split("/"):
        raise RequestError(f"store key {key!r} is not a plain relative path; it may not leave the store's root")
    return key


class Store(ABC):
    """A flat map from string keys to bytes, rooted at a URL.

    Required: ``get``, ``put``, ``delete``, ``list``. A missing key reads as ``None``: it is the
    caller that decides between zeros and an error. ``get`` returns the object's bytes with any
    transport compression (HTTP Content-Encoding, a ``.gz`` sibling on disk) removed; a ranged
    ``get`` returns the stored bytes of that range, never transcoded.
    """

    #: a good number of requests to keep in flight against this backend
    default_parallel: int = 8
    #: True when a request waits on a network: worth many in flight. Local stores are CPU-bound,
    #: so the Volume runs about one worker per core on them.
    latency_bound: bool = True
    #: True when :meth:`iter_get` keeps many requests in flight from the calling thread, so a
    #: reader should drive it from a few threads rather than give each request a thread.
    streams: bool = False

    def __init__(self, url: StoreURL):
        self.url = url

    @abstractmethod
    def get(self, key: str, byte_range: ByteRange | None = None) -> bytes | None:
        """The bytes at ``key`` (or the ``[start, end)`` slice of them), or ``None`` if absent."""

    @abstractmethod
    def put(self, key: str, data: bytes, *, content_type: str | None = None, content_encoding: str | None = None) -> None:
        """Store ``data`` at ``key``. ``content_encoding`` says the bytes are already compressed."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; removing an absent key is not an error."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys that start with ``prefix``, relative to the store's root."""

    def exists(self, key: str) -> bool:
        return self.get(key) is not None

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist, atomically; False if it exists.

        Object stores implement it with a conditional PUT; it is what :meth:`lock` builds on.
        """
        raise UnsupportedEncodingError(
            f"{type(self).__name__} cannot create objects conditionally, so it cannot lock; "
            "give each writer disjoint chunks (or shards) instead"
        )

    def lock(self, key: str) -> ContextManager[None]:
        """Exclusive lock on ``key`` across threads, processes and machines, for read-modify-write.

        The default is a lease object made with :meth:`create_exclusive` (see ``lease.py``);
        local disk uses ``flock``. Backends that cannot lock say so rather than pretend.
        """
        from .lease import lease_lock

        if type(self).create_exclusive is Store.create_exclusive:
            self.create_exclusive(key, b"")  # raises the explanation
        return lease_lock(self, key)

    def get_many(self, keys: Iterable[str], executor: Executor | None = None) -> dict[str, bytes | None]:
        """Fetch several keys, concurrently when given an executor."""
        keys = list(keys)
        if executor is None or len(keys) < 2:
            return {k: self.get(k) for k in keys}
        return dict(zip(keys, executor.map(self.get, keys)))

    def iter_get(self, keys: Iterable[str], expected_bytes: int | None = None) -> Iterator[tuple[str, bytes | None]]:
        """``(key, get(key))`` for each key, in the order they arrive (not necessarily ``keys``'s).

        The default gets one at a time. Streaming stores (``streams``) keep many requests in
        flight; ``next`` is then safe from one thread at a time, not several at once.
        ``expected_bytes`` (about how big one object is) lets them bound memory from the start.
        """
        for key in keys:
            yield key, self.get(key)

    def put_many(self, items: Mapping[str, bytes | None], *, content_type: str | None = None,
                 content_encoding: str | None = None) -> None:
        """Write several keys (``None`` deletes). Sharded stores group them by shard."""
        for key, data in items.items():
            if data is None:
                self.delete(key)
            else:
                self.put(key, data, content_type=content_type, content_encoding=content_encoding)

    def get_decoded_ranges(self, key: str, ranges: Sequence[ByteRange]) -> list[bytes] | None:
        """Byte ranges of the object *after* transport decompression (``None`` if it is absent).

        The default fetches the whole object; a store that knows an object is stored plain may
        read just the ranges (the local store does, so a raw chunk's few voxels cost a few reads).
        """
        data = self.get(key)
        return None if data is None else [data[a:b] for a, b in ranges]

    def get_ranges(self, key: str, ranges: Sequence[ByteRange]) -> list[bytes | None]:
        """Several byte ranges of one object. Backends may coalesce nearby ranges."""
        return [self.get(key, r) for r in ranges]

    def child(self, relpath: str) -> "Store":
        """A store of the same backend rooted at ``relpath`` under this one (``..`` allowed).

        The info file may name a scale directory such as ``../other/8_8_8``; TensorStore
        follows such keys, so we do too, but only here, not in ``get``/``put`` keys.
        """
        return self._with_url(self.url.join(relpath))

    @abstractmethod
    def _with_url(self, url: StoreURL) -> "Store":
        """A store like this one (sharing clients and sessions) rooted elsewhere."""

    def close(self) -> None:
        """Release pooled connections; the default holds none."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.url)!r})"


def iter_through_cache(keys: Iterable[str], lookup: Callable[[str], bytes | None], keep: Callable[[str, bytes], None],
                       inner: Store, expected_bytes: int | None) -> Iterator[tuple[str, bytes | None]]:
    """A cache layer's ``iter_get``: hits (``lookup``) first, then the misses as ``inner``
    delivers them, each one found handed to ``keep``."""
    missing = []
    for key in keys:
        data = lookup(key)
        if data is None:
            missing.append(key)
        else:
            yield key, data
    for key, data in inner.iter_get(missing, expected_bytes):
        if data is not None:
            keep(key, data)
        yield key, data
