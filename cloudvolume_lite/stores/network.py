"""What the network stores (http, gs, s3) do the same way, written once.

- Keys: ``key`` names the object ``<url.path>/<key>`` (just ``key`` at a bucket's or host's root).
- ``get``: a whole read undoes the object's ``Content-Encoding`` (:func:`decode_content`, within
  the store's ``decoded_limit``, streamed or not); a ranged read checks its range (``start < 0``
  is an error, an empty range asks whether the object exists) and returns the stored bytes of
  it. ``get_ranges`` coalesces nearby ranges.
- Batches (``iter_get``) of more than one key stream through the one-thread fetcher
  (``http_fetch.py``, via :class:`~.streaming.FastGets`) when the backend can use it; otherwise the
  default batch of ``get`` calls.
- The fetcher for an origin (:func:`fast_gets`) has one proxy rule and one CA rule: no fetcher
  when the environment names a proxy for that origin (``HTTP(S)_PROXY``/``ALL_PROXY``, minus
  ``NO_PROXY``) or the SDK has proxies configured, since the fetcher does not speak to proxies;
  its TLS trusts the first bundle named by :data:`CA_BUNDLE_VARS`, else the system's. Its time
  limit per request is the retry policy's ``deadline``.
"""

from __future__ import annotations

import os
import ssl
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar
from urllib.parse import urlsplit

import requests
import urllib3

from .. import compression
from ..errors import RequestError
from ..errors import ConflictError
from .base import ByteRange, Store, Versioned, check_key
from .batch import data_only
from .http_fetch import Fetcher, Reply
from .retry import RetryPolicy, get_ranges_coalesced
from .streaming import REDO, FastGets, Later
from .url import StoreURL

if TYPE_CHECKING:
    from ..runtime import Runtime

T = TypeVar("T")
#: environment variables that name a CA bundle for the streaming fetcher and HTTP's pool, the
#: first one set wins (boto3 and the GCS SDK read their own for their own requests)
CA_BUNDLE_VARS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "AWS_CA_BUNDLE")
#: Content-Encoding tokens that leave the bytes as they are (S3 reports its upload framing)
_NO_OP = frozenset({"", "identity", "aws-chunked"})
#: ``absent`` in :meth:`NetworkStore._call` when a "not found" from the SDK is an error
RAISE = object()
#: what a backend's one try at a whole read gives: stored bytes (None: unchanged, under
#: ``if_none_match``), their ``Content-Encoding`` and the generation
Whole = tuple["bytes | None", "str | None", "str | None"]


class Cond(NamedTuple):
    """The conditions of one read: ``if_match`` (bytes of this generation, or ConflictError)
    and ``if_none_match`` (nothing, if the object is still at this generation)."""

    if_match: str | None = None
    if_none_match: str | None = None


def ca_bundle() -> str | None:
    """The CA bundle file named by the first of :data:`CA_BUNDLE_VARS` set, or None."""
    for name in CA_BUNDLE_VARS:
        if os.environ.get(name):
            return os.environ[name]
    return None


def environ_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``NO_PROXY`` honoured), or None."""
    scheme = urlsplit(url).scheme or "http"
    return requests.utils.get_environ_proxies(url).get(scheme)


def fast_gets(base_url: str, parallel: int, retry: RetryPolicy, headers: dict[str, str] | None = None,
              proxied: bool = False, in_flight: int | None = None) -> FastGets:
    """Streaming gets against ``base_url``'s origin, at most ``in_flight`` (default
    ``parallel``) in flight, with ``retry``'s timeouts and deadline; none (``FastGets(None)``)
    when ``proxied``, when the environment names a proxy for it, or when it is not plain http(s)."""
    url = urllib3.util.parse_url(base_url)
    if proxied or url.scheme not in ("http", "https") or not url.host or environ_proxy(base_url):
        return FastGets(None, parallel)
    tls = ssl.create_default_context(cafile=ca_bundle()) if url.scheme == "https" else None
    fetcher = Fetcher(url.scheme, url.host.strip("[]"), url.port, dict(headers or {}), retry.timeout, tls,
                      in_flight or parallel, deadline=retry.deadline)
    return FastGets(fetcher, parallel)


def _codings(value: str | None) -> list[str]:
    """The encodings a ``Content-Encoding`` value lists that change the bytes, in the order applied."""
    return [e for e in (part.strip() for part in (value or "").split(",")) if e.lower() not in _NO_OP]


def needs_decoding(value: str | None) -> bool:
    """Whether a ``Content-Encoding`` value asks for any decompression."""
    return bool(_codings(value))


def decode_content(data: bytes | bytearray, value: str | None, what: str, limit: int | None = None) -> bytes:
    """Undo a ``Content-Encoding`` header value: ``"gzip, br"`` means gzip was applied first, so
    it is undone last; ``identity`` and S3's ``aws-chunked`` change nothing. ``what`` names the
    object in a :class:`DecodeError`; ``limit`` (a store's ``decoded_limit``) bounds what each
    step may inflate to, past it a :class:`DecodeError`."""
    for enc in reversed(_codings(value)):
        data = compression.decompress(data, enc, what, limit)
    # immutable, so no decoded view can ever write into what a cache keeps
    return data if isinstance(data, bytes) else bytes(data)


class NetworkStore(Store):
    """A store behind a network: the shared ``get``/``get_ranges``/``iter_get`` skeleton.

    A backend supplies one attempt of a whole read (:meth:`_read_whole`) and of a ranged read
    (:meth:`_read_range`), sorts its SDK's errors in :meth:`_call`, and may stream batches
    (:meth:`_streaming`, :meth:`_stream`).
    """

    #: answers to a streamed GET that mean "absent"
    absent_status: frozenset[int] = frozenset({404})

    def __init__(self, url: StoreURL, retry: RetryPolicy | None = None):
        super().__init__(url)
        self.retry = retry or RetryPolicy()

    # -- addresses -----------------------------------------------------------------------------
    def _name(self, key: str) -> str:
        """The object name (path below the bucket or host) of ``key``."""
        return f"{self.url.path}/{check_key(key)}" if self.url.path else check_key(key)

    def _public(self, key: str) -> str:
        """``key``'s address for messages: never any credentials."""
        return self.url.key_url(key)

    # -- what a backend supplies ---------------------------------------------------------------
    def _call(self, fn: Callable[[], T], what: str, until: float | None = None, absent: Any = RAISE) -> T:
        """``fn()`` under the retry policy (``what`` names the request in errors). Backends
        override it to sort their SDK's errors; ``absent`` is what "not found" returns."""
        return self.retry.call(fn, what, until)

    @abstractmethod
    def _read_whole(self, key: str, what: str, until: float | None, cond: Cond) -> Whole | None:
        """One try at the whole object: its stored bytes, ``Content-Encoding`` and generation,
        or None if absent. Under ``cond.if_none_match`` still current: ``(None, None, gen)``;
        ``cond.if_match`` not current (or the object gone): :class:`ConflictError`."""

    @abstractmethod
    def _read_range(self, key: str, start: int, end: int, what: str, until: float | None,
                    cond: Cond) -> tuple[bytes, str | None] | None:
        """One try at stored bytes ``[start, end)`` (``b""`` past the end) and the generation
        they came from, or None if absent; ``cond.if_match`` as in :meth:`_read_whole`."""

    def _generation(self, headers: Mapping[str, str]) -> str | None:
        """The generation an answer's (lower-cased) headers name; the default: its ETag."""
        return headers.get("etag") or None

    @abstractmethod
    def _streaming(self) -> FastGets:
        """The store family's streaming gets (shared with its children)."""

    def _stream(self, fast: FastGets, keys: list[str], expected_bytes: int | None, runtime: Runtime | None = None,
                unless: Mapping[str, str] | None = None) -> Iterator[tuple[str, Versioned | None]] | None:
        """The batch streamed through ``fast`` (its careful re-requests done by :meth:`read`, the
        finishing work on ``runtime``'s fetch and cpu lanes), as ``(key, Versioned | None)``, or
        None to leave it to the default batch. ``unless``: key -> generation, for a batch of
        :meth:`iter_revalidate` (requests conditional on it, see :meth:`_unless`, :meth:`_redo`)."""
        return None

    def _intact(self, answer: Reply) -> bool:
        """Whether a streamed 200 answer's body is whole (a backend checks its hash here)."""
        return True

    def _finish(self, key: str, answer: Reply) -> Versioned | None | object:
        """A streamed answer as a :class:`Versioned`, None (absent), REDO, or decoding for a worker."""
        if answer.status in self.absent_status:
            return None
        if answer.status != 200 or not self._intact(answer):
            return REDO
        data, value = bytes(answer.body), answer.headers.get("content-encoding")
        gen = self._generation(answer.headers)
        if not needs_decoding(value):
            return Versioned(data, gen)
        return Later(lambda: Versioned(decode_content(data, value, self._public(key), self.decoded_limit), gen))

    # -- Store ---------------------------------------------------------------------------------
    @property
    def supports_generations(self) -> bool:
        return True

    def get(self, key: str, byte_range: ByteRange | None = None) -> bytes | None:
        got = self._read(key, byte_range, self.retry.until())
        return None if got is None else got.data

    def read(self, key: str, byte_range: ByteRange | None = None, *, if_match: str | None = None,
             if_none_match: str | None = None) -> Versioned | None:
        return self._read(key, byte_range, self.retry.until(), Cond(if_match, if_none_match))

    def _read(self, key: str, byte_range: ByteRange | None, until: float | None, cond: Cond = Cond()
              ) -> Versioned | None:
        """``read``, all of it over by ``until`` (``time.monotonic()``, None: no bound)."""
        what = f"GET {self._public(key)}"
        if byte_range is None:
            got = self._call(lambda: self._read_whole(key, what, until, cond), what, until, absent=None)
            if got is None:
                if cond.if_match is not None:
                    raise ConflictError(f"{what}: the object is gone (it was at generation {cond.if_match})")
                return None
            data, encoding, gen = got
            if data is None:
                return Versioned(None, gen)
            return Versioned(decode_content(data, encoding, self._public(key), self.decoded_limit), gen)
        start, end = int(byte_range[0]), int(byte_range[1])
        if start < 0:
            raise RequestError(f"{what}: byte range {byte_range} starts before 0")
        if end <= start:
            end = start + 1  # one byte tells existence and generation (b"" past the end)
        got = self._call(lambda: self._read_range(key, start, end, what, until, cond),
                         f"{what} bytes={start}-{end - 1}", until, absent=None)
        if got is None:
            if cond.if_match is not None:
                raise ConflictError(f"{what}: the object is gone (it was at generation {cond.if_match})")
            return None
        data, gen = got
        if cond.if_match is not None and gen is not None and gen != cond.if_match:
            raise ConflictError(f"{what}: the object changed (generation {gen}, expected {cond.if_match})")
        return Versioned(data[: max(0, int(byte_range[1]) - start)], gen)

    def get_ranges(self, key: str, ranges: Sequence[ByteRange]) -> list[bytes | None]:
        return get_ranges_coalesced(lambda rng: self.get(key, rng), ranges)

    def iter_read(self, keys: Iterable[str], expected_bytes: int | None = None,
                  runtime: Runtime | None = None) -> Iterator[tuple[str, Versioned | None]]:
        """Streamed through the fetcher when it is usable and there is more than one key (what
        it cannot finish plainly is done again by ``read``, retries and all, and its errors are
        raised here); else the default batch."""
        keys = list(keys)
        fast = self._streaming()
        batch = self._stream(fast, keys, expected_bytes, runtime) if fast.usable and len(keys) > 1 else None
        return super().iter_read(keys, expected_bytes, runtime) if batch is None else batch

    def iter_revalidate(self, generations: Mapping[str, str], runtime: Runtime | None = None
                        ) -> Iterator[tuple[str, Versioned | None]]:
        """Checks of several cached copies streamed like any batch, each request conditional on
        its copy's generation: an unchanged object costs a round trip and no body."""
        keys = list(generations)
        fast = self._streaming()
        batch = self._stream(fast, keys, None, runtime, generations) if fast.usable and len(keys) > 1 else None
        return super().iter_revalidate(generations, runtime) if batch is None else batch

    def _unless(self, finish: Callable[[str, Reply], object], unless: Mapping[str, str] | None
                ) -> Callable[[str, Reply], object]:
        """``finish`` for a batch of conditional reads: a 304 is "still at the generation asked about"."""
        if not unless:
            return finish

        def conditional(key: str, answer: Reply) -> object:
            if answer.status == 304 and key in unless:
                return Versioned(None, unless[key])
            return finish(key, answer)

        return conditional

    def _redo(self, unless: Mapping[str, str] | None) -> Callable[[str], Versioned | None]:
        """The careful read of one key of a streamed batch (conditional like the batch)."""
        if not unless:
            return self.read
        return lambda key: self.read(key, if_none_match=unless.get(key))

    def iter_get(self, keys: Iterable[str], expected_bytes: int | None = None,
                 runtime: Runtime | None = None) -> Iterator[tuple[str, bytes | None]]:
        """:meth:`iter_read` without the generations."""
        return data_only(self.iter_read(keys, expected_bytes, runtime))


__all__ = ["CA_BUNDLE_VARS", "RAISE", "Cond", "NetworkStore", "Whole", "ca_bundle", "decode_content", "environ_proxy", "fast_gets",
           "needs_decoding"]
