"""What the network stores (http, gs, s3) share: the retry policy, a lazily made client, range coalescing.

Retry policy: a request that fails with HTTP 408/429/5xx, a dropped or reset connection, a
timeout or a corrupt transfer (checksum or length mismatch) is tried again after a jittered
exponential backoff, up to ``attempts`` tries in all and within ``deadline`` seconds in all;
then :class:`StoreError` names the URL, the last status and the number of attempts. A 404 is an answer ("absent"), never retried; other
4xx answers are the caller's problem and fail at once. The backends turn off their SDKs' own
retries so that this is the only policy in force (no retries multiplied by retries).
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Generic, Sequence, TypeVar

from ..errors import RequestError, StoreError
from .base import ByteRange

T = TypeVar("T")


def is_retryable_status(status: int) -> bool:
    """408 (request timeout), 429 (slow down) and every 5xx are worth another try."""
    return status in (408, 429) or 500 <= status <= 599


class Transient(Exception):
    """A failure worth another try. Backends raise it inside :meth:`RetryPolicy.call`."""

    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (the HTTP-date form is ignored)."""
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded, jittered exponential backoff plus per-request timeouts.

    ``attempts`` counts tries, not retries: ``attempts=1`` never retries. ``connect_timeout`` and
    ``read_timeout`` (seconds) bound each try; ``read_timeout`` is the longest silence allowed
    while a response arrives. ``deadline`` (seconds, or None for no bound) is the most one
    request may take in all, every try, wait and byte included: it is what ends a read from a
    server that trickles bytes forever. Pass one to a Volume as
    ``Volume(url, retry=cvl.RetryPolicy(...))``; ``Volume(url, timeout=s)`` sets the deadline.
    """

    attempts: int = 8  # waits of at most 0.25, 0.5, ... 16 s: rides out ~30 s of throttling
    base_delay: float = 0.25
    max_delay: float = 16.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    #: a silent server costs one read_timeout on the fast path and one on the careful path:
    #: about two minutes, then a named error
    deadline: float | None = 120.0

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int) or self.attempts < 1:
            raise RequestError(f"RetryPolicy.attempts must be an int >= 1, got {self.attempts!r}")
        for name in ("base_delay", "max_delay", "connect_timeout", "read_timeout", "deadline"):
            v = getattr(self, name)
            if v is None and name == "deadline":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or v != v:
                raise RequestError(f"RetryPolicy.{name} must be a number of seconds > 0, got {v!r}")

    def until(self) -> float | None:
        """The ``time.monotonic()`` by which a request starting now must end (None: no bound)."""
        return None if self.deadline is None else time.monotonic() + self.deadline

    def timeouts(self, until: float | None) -> tuple[float, float]:
        """(connect, read) timeouts for one try, shortened to what is left before ``until``."""
        if until is None:
            return self.timeout
        left = max(0.001, until - time.monotonic())
        return (min(self.connect_timeout, left), min(self.read_timeout, left))

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        # "full jitter": clients that failed together do not come back together
        delay = random.uniform(0.0, ceiling)
        if retry_after is not None:  # the server said when; listen, within our own cap
            delay = max(delay, min(retry_after, self.max_delay))
        return delay

    def call(self, fn: Callable[[], T], what: str, until: float | None = None) -> T:
        """Run ``fn`` until it returns or raises something other than :class:`Transient`.

        ``what`` names the request in the final error (``"GET https://host/key"``); it must not
        hold credentials. ``until`` (``time.monotonic()``) ends the retries sooner than the
        ``deadline`` counted from now would (a request that already spent time elsewhere).
        """
        start = time.monotonic()
        end = self.until() if until is None else until
        last: Transient | None = None
        attempt = 0
        while attempt < self.attempts:
            attempt += 1
            try:
                return fn()
            except Transient as e:
                last = e
            if attempt < self.attempts:
                delay = self.backoff(attempt, last.retry_after)
                if end is not None and time.monotonic() + delay >= end:
                    break
                time.sleep(delay)
        assert last is not None
        status = f"HTTP {last.status}" if last.status is not None else "no HTTP status"
        tries = "attempt" if attempt == 1 else "attempts"
        if attempt < self.attempts or (end is not None and time.monotonic() >= end):
            raise StoreError(
                f"{what} failed: {status} ({last.reason}) after {attempt} {tries} in "
                f"{time.monotonic() - start:.0f} s, its time limit; "
                "the server is too slow or keeps failing: try again later, lower `parallel`, or allow more time "
                "with Volume(..., timeout=SECONDS) or Volume(..., retry=cvl.RetryPolicy(deadline=SECONDS))"
            )
        raise StoreError(
            f"{what} failed: {status} ({last.reason}) after {attempt} {tries}; "
            "the server or the network kept failing: try again later, lower `parallel`, "
            "or allow more attempts with Volume(..., retry=cvl.RetryPolicy(attempts=N))"
        )


def status_error(what: str, status: int, reason: str = "") -> StoreError:
    """The error for an answer that retrying cannot fix (400, 401, 403, ...)."""
    hint = {
        401: "the server wants credentials: pass secrets=",
        403: "access denied: check the credentials in secrets= and the object's permissions",
    }.get(status, "the request was refused; check the URL")
    detail = f" {reason}" if reason and reason != str(status) else ""
    return StoreError(f"{what} failed: HTTP {status}{detail} (not retried: {hint})")


class SharedClient(Generic[T]):
    """One client (session, SDK client) for a store and every child of it.

    Made on first use, so opening a store costs no request; ``close()`` drops it and the next
    request makes a new one, so a closed Volume can still be used. A forked child makes its own:
    sharing the parent's kept-alive connections would mix two processes' answers on one socket.
    """

    def __init__(self, make: Callable[[], T], close: Callable[[T], None]):
        self._make = make
        self._close = close
        self._lock = threading.Lock()
        self._client: T | None = None
        self._pid = os.getpid()

    def get(self) -> T:
        client = self._client
        if client is None or self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():  # the parent's client is the parent's: leave it be
                    self._client, self._pid = None, os.getpid()
                if self._client is None:
                    self._client = self._make()
                client = self._client
        return client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            self._close(client)


#: merge two ranges when the gap between them is at most this: one round trip (~20-100 ms
#: against an object store) costs more than reading a few hundred KB that we throw away
COALESCE_GAP = 256 * 1024
#: but never grow one request beyond this
COALESCE_MAX = 16 * 1024 * 1024


def coalesce(ranges: Sequence[ByteRange], gap: int = COALESCE_GAP, max_span: int = COALESCE_MAX
             ) -> list[tuple[ByteRange, list[int]]]:
    """Group ``ranges`` into spans to fetch: ``[((start, end), [indices into ranges]), ...]``."""
    order = sorted(range(len(ranges)), key=lambda i: ranges[i])
    groups: list[tuple[ByteRange, list[int]]] = []
    for i in order:
        s, e = ranges[i]
        if groups:
            (gs, ge), members = groups[-1]
            if s <= ge + gap and max(ge, e) - gs <= max_span:
                groups[-1] = ((gs, max(ge, e)), members + [i])
                continue
        groups.append(((s, max(s, e)), [i]))
    return groups


def conflict_pause(attempt: int) -> None:
    """Wait before redoing a read-modify-write that lost a compare-and-swap: jittered and
    doubling (2 ms, 4 ms, ... up to 0.2 s), so writers of one object take turns."""
    time.sleep(min(0.2, 0.002 * 2 ** min(attempt, 7)) * random.random())


def get_ranges_coalesced(fetch: Callable[[ByteRange], bytes | None], ranges: Sequence[ByteRange],
                         gap: int = COALESCE_GAP) -> list[bytes | None]:
    """Read several ranges of one object with as few ``fetch((start, end))`` calls as sensible."""
    out: list[bytes | None] = [None] * len(ranges)
    for (gs, ge), members in coalesce(ranges, gap):
        span = fetch((gs, ge))
        for i in members:
            s, e = ranges[i]
            # a span shorter than asked (object ends early) slices like bytes do
            out[i] = None if span is None else span[s - gs : max(s, e) - gs]
    return out


def content_range_span(value: str | None) -> tuple[int, int] | None:
    """``bytes 100-199/1000`` -> (100, 200): the half-open span a 206 answer says it carries."""
    unit, _, rest = (value or "").strip().partition(" ")
    span = rest.partition("/")[0]
    first, _, last = span.partition("-")
    if unit.lower() != "bytes" or not first.isdigit() or not last.isdigit():
        return None
    return int(first), int(last) + 1


def check_span(body: bytes, content_range: str | None, start: int) -> None:
    """A ranged body must start where asked and be as long as its Content-Range says; a body
    cut short (or a Content-Length that undercounts) is a damaged transfer, worth a retry."""
    span = content_range_span(content_range)
    if span is None or span[0] != start:
        raise Transient(f"asked for bytes from {start}, the server sent {content_range!r}", 206)
    if len(body) != span[1] - span[0]:
        raise Transient(f"range {content_range} came with {len(body)} bytes", 206)


def short(e: BaseException) -> str:
    """An exception's text, cut to 200 characters for error messages."""
    text = str(e)
    return text if len(text) <= 200 else text[:200] + "..."
