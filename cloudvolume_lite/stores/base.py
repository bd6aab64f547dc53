"""The Store interface every backend implements."""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Callable, ContextManager, Iterable, Iterator, Mapping, Sequence

from ..errors import RequestError, UnsupportedEncodingError
from .url import StoreURL

if TYPE_CHECKING:
    from ..runtime import Runtime

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
    #: so a batch over them is worth about one loop per core.
    latency_bound: bool = True

    def __init__(self, url: StoreURL):
        self.url = url

    # -- capabilities ----------------------------------------------------------------------------
    @property
    def supports_writes(self) -> bool:
        """Whether ``put``/``delete`` work here (HTTP: no)."""
        return True

    @property
    def supports_listing(self) -> bool:
        """Whether ``list`` works here (HTTP: no)."""
        return True

    @property
    def supports_conditional_create(self) -> bool:
        """Whether ``create_exclusive`` (and so ``lock``) works here."""
        return type(self).create_exclusive is not Store.create_exclusive

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

    def iter_get(self, keys: Iterable[str], expected_bytes: int | None = None,
                 runtime: "Runtime | None" = None) -> Iterator[tuple[str, bytes | None]]:
        """The batched read: ``(key, bytes | None)`` for each key, in the order they arrive.

        What comes back is a batch (``stores/batch.py``) that the reader's loops share; its
        ``width`` says how many loops are worth running (``runtime.parallel`` when requests wait
        on a network, one per decode thread when they are CPU-bound). The default fetches each
        key with :meth:`get` in the thread that asks for it. Adapters override it: the sharded
        store groups keys by shard, the caches serve hits and batch the misses, streaming stores
        keep many requests in flight from one thread. ``expected_bytes`` (about how big one
        object is) lets a streaming store bound memory from the start.
        """
        from .batch import Gets

        return Gets(self.get, keys, self.batch_width(runtime))

    def batch_width(self, runtime: "Runtime | None") -> int:
        """Loops worth running over a batch of single gets: ``runtime.parallel`` when a get waits
        on a network, one per decode thread when it is CPU-bound."""
        if runtime is None:
            return 1
        return runtime.parallel if self.latency_bound else runtime.workers_for_cpu

    def get_many(self, keys: Iterable[str], executor: object = None) -> dict[str, bytes | None]:
        """``dict(iter_get(keys))``: kept for callers that want a mapping (``executor`` is ignored)."""
        return dict(self.iter_get(keys))

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


class WrapperStore(Store):
    """A store over a store (the caches, sharding): it takes the inner store's URL, its
    parallelism and its capabilities, and closes it; subclasses change only what they add."""

    def __init__(self, inner: Store):
        super().__init__(inner.url)
        self.inner = inner
        self.default_parallel = inner.default_parallel
        self.latency_bound = inner.latency_bound

    @property
    def supports_writes(self) -> bool:
        return self.inner.supports_writes

    @property
    def supports_listing(self) -> bool:
        return self.inner.supports_listing

    @property
    def supports_conditional_create(self) -> bool:
        return self.inner.supports_conditional_create

    def list(self, prefix: str = "") -> Iterator[str]:
        return self.inner.list(prefix)

    def lock(self, key: str) -> ContextManager[None]:
        return self.inner.lock(key)

    def close(self) -> None:
        self.inner.close()


def iter_through_cache(keys: Iterable[str], lookup: Callable[[str], bytes | None], keep: Callable[[str, bytes], None],
                       inner: Store, expected_bytes: int | None, runtime: "Runtime | None" = None,
                       get: Callable[[str], bytes | None] | None = None) -> Iterator[tuple[str, bytes | None]]:
    """A cache layer's ``iter_get``: the hits (``lookup``) first, then the misses as ``inner``
    delivers them, each one found handed to ``keep``; as concurrent as ``inner``'s batch.

    When ``inner`` reads key by key anyway (the default ``iter_get``), the cache's own ``get``
    is used for every key instead, so that concurrent reads of one key still cost one load.
    """
    from .batch import Chain, Gets, items

    keys = list(keys)
    if get is not None and type(inner).iter_get is Store.iter_get:
        return Gets(get, keys, inner.batch_width(runtime))
    hits, missing = [], []
    for key in keys:
        data = lookup(key)
        if data is None:
            missing.append(key)
        else:
            hits.append((key, data))

    def see(key: str, data: bytes | None) -> None:
        if data is not None:
            keep(key, data)

    misses = inner.iter_get(missing, expected_bytes, runtime)
    return Chain([items(hits), Chain([misses], see)])
