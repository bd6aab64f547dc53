"""The Store interface every backend implements."""

from __future__ import annotations

import posixpath
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Callable, ContextManager, Iterable, Iterator, Mapping, NamedTuple, Sequence

from ..errors import ConflictError, RequestError, UnsupportedEncodingError
from .url import StoreURL

if TYPE_CHECKING:
    from ..runtime import Runtime

ByteRange = tuple[int, int]  # [start, end) in bytes

#: as ``put(..., if_generation=ABSENT)``: write only if the object does not exist yet
ABSENT = "<absent>"
#: a read-modify-write in :meth:`Store.update_many`: old bytes (None: absent) -> new bytes,
#: None (delete) or False (leave it)
Update = Callable[["bytes | None"], "bytes | None | bool"]


class Versioned(NamedTuple):
    """What :meth:`Store.read` returns: the bytes and the generation they came from.

    A generation is an opaque string that changes whenever the object is replaced (an ETag, a
    GCS generation, ``inode-size-mtime`` on disk, a counter in memory); ``None`` when the store
    cannot tell. ``data`` is ``None`` only when ``read(..., if_none_match=g)`` found the object
    still at ``g``: nothing was transferred.
    """

    data: bytes | None
    generation: str | None


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
    #: the most bytes one object may inflate to (transport decompression); larger is a DecodeError
    decoded_limit: int | None = None
    #: True when a request waits on a network: worth many in flight. Local stores are CPU-bound,
    #: so a batch over them is worth about one loop per core.
    latency_bound: bool = True
    #: True when :meth:`get_decoded_ranges` reads just the ranges and costs no more than a
    #: whole ``get`` (plain local files): a reader may then fetch only the part of a chunk it
    #: needs. False for adapters, whose caching or grouping only works on whole objects.
    cheap_ranges: bool = False
    #: True when getting a chunk inflates it here (a sharded scale's gzip ``data_encoding``):
    #: then even a few chunks are worth spreading over the cores
    inflates: bool = False

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
        return self.supports_conditional_writes or type(self).create_exclusive is not Store.create_exclusive

    @property
    def supports_generations(self) -> bool:
        """Whether :meth:`read` reports generations and honours ``if_match``/``if_none_match``."""
        return type(self).read is not Store.read

    @property
    def supports_conditional_writes(self) -> bool:
        """Whether ``put(..., if_generation=...)`` is atomic here (compare-and-swap)."""
        return False

    @abstractmethod
    def get(self, key: str, byte_range: ByteRange | None = None) -> bytes | None:
        """The bytes at ``key`` (or the ``[start, end)`` slice of them), or ``None`` if absent."""

    def read(self, key: str, byte_range: ByteRange | None = None, *, if_match: str | None = None,
             if_none_match: str | None = None) -> Versioned | None:
        """``get`` with the object's generation; ``None`` if absent.

        ``if_match=g``: the bytes must come from generation ``g``, else :class:`ConflictError`
        (also when the object is gone), so a ranged read cannot mix two versions of an object.
        ``if_none_match=g``: when the object is still at ``g``, ``Versioned(None, g)`` and no
        bytes are sent (a revalidation). The default knows no generations: it refuses conditions.
        """
        if if_match is not None or if_none_match is not None:
            raise UnsupportedEncodingError(f"{type(self).__name__} cannot read conditionally (it has no generations)")
        data = self.get(key, byte_range)
        return None if data is None else Versioned(data, None)

    def stat(self, key: str) -> str | None:
        """The object's current generation, or ``None`` if it is absent."""
        got = self.read(key, (0, 0))
        if got is None:
            return None
        if got.generation is None:
            raise UnsupportedEncodingError(f"{type(self).__name__} has no generations")
        return got.generation

    @abstractmethod
    def put(self, key: str, data: bytes, *, content_type: str | None = None, content_encoding: str | None = None,
            if_generation: str | None = None) -> str | None:
        """Store ``data`` at ``key``; the new generation (``None`` if the store cannot tell).

        ``content_encoding`` says the bytes are already compressed. ``if_generation=g`` writes
        only if the object is still at ``g`` (:data:`ABSENT`: only if there is none), atomically,
        else :class:`ConflictError`; stores without ``supports_conditional_writes`` refuse it.
        """

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
        if self.supports_conditional_writes:
            try:
                self.put(key, data, if_generation=ABSENT)
            except ConflictError:
                return False
            return True
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

        if not self.supports_conditional_create:
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

    def iter_read(self, keys: Iterable[str], expected_bytes: int | None = None,
                  runtime: "Runtime | None" = None) -> Iterator[tuple[str, Versioned | None]]:
        """:meth:`iter_get` with generations: ``(key, Versioned | None)`` for each key."""
        from .batch import Gets

        return Gets(self.read, keys, self.batch_width(runtime))

    def iter_revalidate(self, generations: Mapping[str, str], runtime: "Runtime | None" = None
                        ) -> Iterator[tuple[str, Versioned | None]]:
        """Conditional reads of several keys, each ``read(key, if_none_match=generation)``:
        ``Versioned(None, g)`` for an object still at its generation, the new bytes for one
        that changed, None for one that is gone. Network stores stream them (one request each,
        no body when unchanged)."""
        from .batch import Gets

        return Gets(lambda k: self.read(k, if_none_match=generations[k]), list(generations), self.batch_width(runtime))

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
        """Write several keys (``None`` deletes), unconditionally. Sharded stores group them by shard."""
        for key, data in items.items():
            if data is None:
                self.delete(key)
            else:
                self.put(key, data, content_type=content_type, content_encoding=content_encoding)

    def update_many(self, items: Mapping[str, "bytes | None | Update"], *, content_type: str | None = None,
                    content_encoding: str | None = None) -> None:
        """Write several keys, some by read-modify-write: a value that is a function gets the
        key's current bytes (``None``: absent) and returns the new bytes (``None``: delete it,
        ``False``: leave it alone). Where the store can write conditionally, each change is
        compare-and-swap on the generation it read, redone on a conflict, so writers changing
        different parts of one object at once keep each other's changes. Sharded stores merge
        a shard's chunks in one rewrite."""
        plain = {k: v for k, v in items.items() if not callable(v)}
        if plain:
            self.put_many(plain, content_type=content_type, content_encoding=content_encoding)
        for key, fn in items.items():
            if callable(fn):
                self._update(key, fn, content_type, content_encoding)

    def _update(self, key: str, fn: "Update", content_type: str | None, content_encoding: str | None) -> None:
        from ..errors import StoreError
        from .retry import conflict_pause

        for attempt in range(64):
            got = self.read(key)
            new = fn(None if got is None else got.data)
            if new is False:
                return
            gen = None if got is None else got.generation
            if not self.supports_conditional_writes or (got is not None and gen is None):
                gen = None  # nothing to condition on: a plain write
            elif got is None:
                gen = ABSENT
            try:
                if new is None:
                    if got is not None:
                        self.delete(key)  # deletes are unconditional (no store offers more everywhere)
                    return
                self.put(key, new, content_type=content_type, content_encoding=content_encoding, if_generation=gen)
                return
            except ConflictError:
                conflict_pause(attempt)
        raise StoreError(f"{self.url.key_url(key)} was changed by other writers on each of 64 tries to update it; "
                         "try again later, or write with Volume(..., locking=True)")

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
        self.inflates = inner.inflates

    @property
    def supports_writes(self) -> bool:
        return self.inner.supports_writes

    @property
    def supports_listing(self) -> bool:
        return self.inner.supports_listing

    @property
    def supports_conditional_create(self) -> bool:
        return self.inner.supports_conditional_create

    @property
    def supports_generations(self) -> bool:
        return self.inner.supports_generations

    @property
    def supports_conditional_writes(self) -> bool:
        return self.inner.supports_conditional_writes

    def stat(self, key: str) -> str | None:
        return self.inner.stat(key)

    def list(self, prefix: str = "") -> Iterator[str]:
        return self.inner.list(prefix)

    def lock(self, key: str) -> ContextManager[None]:
        return self.inner.lock(key)

    def close(self) -> None:
        self.inner.close()


def _defined_at(store: Store, name: str) -> int:
    """How far up ``store``'s class hierarchy method ``name`` is defined (0: its own class)."""
    mro = type(store).__mro__
    return next((i for i, cls in enumerate(mro) if name in cls.__dict__), len(mro))


def whole_reader(store: Store) -> Callable[[str], Versioned | None]:
    """How a cache over ``store`` reads one whole object with its generation.

    A cache layer's own ``cached_read`` (so a cache over a cache reads through it); else
    ``read``, unless ``get`` is overridden below it (a store written before generations, over
    one that has them, whose ``get`` counts or delays): then ``get``, with the generation asked
    by ``stat`` *before* the bytes where that costs no request, so a copy is never credited
    with a newer generation than its bytes (else the generation is unknown).
    """
    own = getattr(store, "cached_read", None)
    if own is not None:
        return own  # type: ignore[no-any-return]
    if _defined_at(store, "get") >= _defined_at(store, "read"):
        return store.read
    cheap_stat = store.supports_generations and not store.latency_bound

    def read(key: str) -> Versioned | None:
        gen = None
        if cheap_stat:
            try:
                gen = store.stat(key)
            except UnsupportedEncodingError:
                gen = None
        data = store.get(key)
        return None if data is None else Versioned(data, gen)

    return read


def iter_through_cache(keys: Iterable[str], lookup: Callable[[str], "tuple[Versioned, object] | None"],
                       revalidate: Callable[[str, object], Versioned | None], keep: Callable[[str, Versioned], None],
                       inner: Store, expected_bytes: int | None, runtime: "Runtime | None" = None,
                       read: Callable[[str], Versioned | None] | None = None,
                       ask: "Callable[[object], str | None] | None" = None,
                       settle: "Callable[[str, object, Versioned | None], Versioned | None] | None" = None
                       ) -> Iterator[tuple[str, Versioned | None]]:
    """A cache layer's ``iter_read``: ``(key, Versioned | None)`` for each key, as concurrent as
    ``inner``'s batch.

    ``lookup(key)`` gives ``None`` (a miss) or ``(copy, due)``: ``due`` is None for a copy fit
    to serve, else what ``revalidate(key, due)`` needs to check it with the store (and update
    the cache). Fresh hits come first, then the due ones, revalidated by the batch's loops at
    once (``inner.batch_width`` of them), then the misses as ``inner.iter_read`` delivers them,
    each found handed to ``keep``. With ``ask`` and ``settle``, due copies whose generation
    ``ask(due)`` names are checked in one batch of ``inner.iter_revalidate`` (streamed by network
    stores) and ``settle(key, due, answer)`` applies each answer to the cache; the others go to
    ``revalidate``. When ``inner`` reads key by key anyway (the default batch),
    the cache's own ``read`` is used for every key instead, so that concurrent reads of one key
    still cost one load.
    """
    from .batch import Chain, Gets, Mapped, Serial, items

    keys = list(keys)
    width = inner.batch_width(runtime)
    by_read = _defined_at(inner, "iter_read") <= _defined_at(inner, "iter_get")
    if read is not None and by_read and type(inner).iter_read is Store.iter_read:
        return Gets(read, keys, width)
    fresh, due, missing = [], {}, []
    for key in keys:
        found = lookup(key)
        if found is None:
            missing.append(key)
        elif found[1] is None:
            fresh.append((key, found[0]))
        else:
            due[key] = found[1]
    parts: list[Iterator] = [items(fresh)]  # type: ignore[arg-type]
    asked: dict[str, str] = {}
    if ask is not None and settle is not None:
        for k, d in due.items():
            g = ask(d)
            if g is not None:
                asked[k] = g
    others = [k for k in due if k not in asked]
    if others:
        parts.append(Gets(lambda k: revalidate(k, due[k]), others, width))
    if asked:
        checks: Iterator = inner.iter_revalidate(asked, runtime)
        if not getattr(checks, "concurrent_next", False):
            checks = Serial(checks)
        parts.append(Mapped(checks, None, lambda k, got: settle(k, due[k], got)))  # type: ignore[misc]
    if not missing:
        return Chain(parts)  # type: ignore[return-value]
    if by_read:
        misses: Iterator = inner.iter_read(missing, expected_bytes, runtime)
    else:  # a store that batches only without generations (iter_get overridden below iter_read)
        misses = Mapped(inner.iter_get(missing, expected_bytes, runtime),
                        lambda d: None if d is None else Versioned(d, None))  # type: ignore[arg-type]
    if not getattr(misses, "concurrent_next", False):
        misses = Serial(misses)

    def see(key: str, got: object) -> None:
        if got is not None and got.data is not None:  # type: ignore[attr-defined]
            keep(key, got)  # type: ignore[arg-type]

    return Chain(parts + [misses], see)  # type: ignore[return-value]
