"""How many requests to keep in flight against one server: a window that adapts to its answers.

A fixed number is wrong somewhere. A cloud object store wants 100+ requests in flight to hide
its first-byte latency; ``python -m http.server`` (a listen backlog of 5, a new connection per
request) drops the connections it cannot accept, and 128 at once turned a 5 s read into 62 s.
So the window grows while answers come back healthy and shrinks when the server shows
overload, in the manner of TCP congestion control:

- it starts at ``initial`` and doubles every round of healthy answers ("slow start") until
  the first sign of overload, then grows by one per round;
- a sign of overload halves it: a refused, reset or silent connection, a 429/502/503/504
  answer, or requests that wait far longer than answers usually take (``stuck_after``), or
  connections that do not open within ten round trips (``connect_stuck_after``: a full listen
  backlog drops them) — two or more within a few seconds; one alone is forgiven. Many stuck
  at once shrink it by as many;
- one burst of overload cuts it once: signals from requests sent before the last cut are
  the same overload seen late, not a new one;
- a cut halves what was in use since the last one, not a size no caller filled (a window
  opened to 512 with 16 requests in flight is cut to 8, not to 256: RFC 7661's
  application-limited window);
- it never exceeds ``limit`` (the user's ``parallel``) nor drops below one.

The fetcher opens its window at ``limit`` and itself asks for no more requests than the
server's latency needs; :class:`Bodies` is how much of their answers one call receives at once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

#: how many recent first-byte times the stuck threshold is judged from
_SAMPLES = 64
#: a request is stuck once it waits this many times the usual (90th percentile) first-byte time
STUCK_FACTOR = 8.0
#: and never sooner than this (seconds): a busy but healthy server may pause briefly.
#: ``python -m http.server`` leaves connections it has no room for unanswered for a second
#: or more (the client's SYN is answered but the connection not accepted) while the rest take
#: a few milliseconds; catching them at 0.25 s rather than 1 s made its reads 3x faster.
STUCK_FLOOR = 0.25
#: a connection not open after this long (and 10x the quickest open) lost its SYN
CONNECT_STUCK_FLOOR = 0.02
#: the answers needed before anything is judged stuck (until then only timeouts count)
_MIN_SAMPLES = 8
#: stuck requests within this many seconds of each other are overload, not a slow answer
_STUCK_SPAN = 5.0
#: the server's latency is the quickest first byte seen within this many seconds: queueing only
#: ever adds to a first byte, and once every request waits behind others (a server that answers
#: one at a time, a client too busy to read) the quickest of the last few dozen is all queue.
#: At 0 ms on loopback that made 30-90 ms look like the latency, which asked for 500-1300
#: requests in flight, which made first bytes take 140-220 ms (medians). A server that really
#: slows down is followed this late.
LATENCY_SPAN = 10.0
#: a first-byte time this short makes a round trip cheap (seconds; see ``Bodies.least``)
SHORT_LATENCY = 0.005


class Window:
    """An adaptive limit on requests in flight, shared by every thread using one server.

    ``acquire``/``release`` work like a semaphore whose size moves; ``healthy`` and
    ``congested`` report each answer. Thread-safe.
    """

    def __init__(self, limit: int, initial: int = 16):
        self.limit = max(1, int(limit))
        self._size = float(min(self.limit, max(1, int(initial))))
        self._threshold = float(self.limit)  # slow start until the first sign of overload
        self._in_flight = 0
        self._used = 0  # the most in flight at once since the last cut
        self._last_cut = 0.0  # time.monotonic() of the last cut
        self._ttfb: deque[float] = deque(maxlen=_SAMPLES)
        # (when, first byte) with first bytes rising: its head is the quickest within LATENCY_SPAN
        self._quickest: deque[tuple[float, float]] = deque()
        self._stuck: deque[float] = deque(maxlen=2)  # when the latest stuck requests were seen
        self._connect: float | None = None  # the quickest connection opened so far (seconds)
        self._cond = threading.Condition()
        self.cuts = 0  # how often overload was seen (for tests and benchmarks)

    @property
    def size(self) -> int:
        """Requests that may be in flight now."""
        return max(1, int(self._size))

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Take a place in the window; False if none is free (without ``blocking``) or in time."""
        with self._cond:
            if blocking:
                if not self._cond.wait_for(lambda: self._in_flight < self.size, timeout):
                    return False
            elif self._in_flight >= self.size:
                return False
            self._in_flight += 1
            self._used = max(self._used, self._in_flight)
            return True

    def release(self) -> None:
        with self._cond:
            self._in_flight = max(0, self._in_flight - 1)
            self._cond.notify()

    def _seen(self, first_byte_s: float) -> None:
        """Keep a first-byte time (under the lock)."""
        self._ttfb.append(first_byte_s)
        now, quickest = time.monotonic(), self._quickest
        while quickest and quickest[-1][1] >= first_byte_s:
            quickest.pop()
        quickest.append((now, first_byte_s))
        while quickest[0][0] < now - LATENCY_SPAN:
            quickest.popleft()

    def healthy(self, first_byte_s: float) -> None:
        """An answer came back in ``first_byte_s`` seconds: grow."""
        with self._cond:
            self._seen(first_byte_s)
            if self._size < self._threshold:
                self._size = min(self._size + 1.0, self._threshold, float(self.limit))
            else:
                self._size = min(self._size + 1.0 / self._size, float(self.limit))
            self._cond.notify_all()

    def sample(self, first_byte_s: float) -> None:
        """An answer on another path (the careful one) came in ``first_byte_s`` seconds: a
        first-byte time to judge by, without growing the window."""
        with self._cond:
            self._seen(first_byte_s)

    def least_first_byte(self) -> float | None:
        """The quickest first-byte time (seconds) of the last :data:`LATENCY_SPAN` seconds (or
        the latest, when none is that recent): the server's latency with the least queueing in
        it; None before any answer."""
        with self._cond:
            if not self._quickest:
                return None
            now, quickest = time.monotonic(), self._quickest
            while len(quickest) > 1 and quickest[0][0] < now - LATENCY_SPAN:
                quickest.popleft()
            return quickest[0][1]

    def congested(self, sent_at: float) -> None:
        """The server showed overload on a request sent at ``sent_at`` (``time.monotonic()``)."""
        with self._cond:
            if sent_at < self._last_cut:
                return  # sent before the last cut: part of the overload already answered
            self._size = max(1.0, self._in_use() / 2)
            self._threshold = max(2.0, self._size)
            self._last_cut = time.monotonic()
            self.cuts += 1

    def stuck(self, sent_at: float, count: int = 1) -> None:
        """``count`` requests (the newest sent at ``sent_at``) got no answer in time: two or
        more within a few seconds are overload. The window then shrinks by as many as the
        server is holding, and at least by half: a server that left 120 of 128 requests
        unanswered is shown it takes about 8, at once rather than in four halvings."""
        now = time.monotonic()
        with self._cond:
            self._stuck.extend([now] * min(count, 2))
            overload = len(self._stuck) == 2 and now - self._stuck[0] <= _STUCK_SPAN
            if not overload or sent_at < self._last_cut:
                return
            used = self._in_use()
            self._size = max(1.0, min(used / 2, used - count))
            self._threshold = max(2.0, self._size)
            self._last_cut = now
            self.cuts += 1

    def _in_use(self) -> float:
        """What a cut halves (under the lock): the most in flight since the last cut, when the
        window was used at all, and never more than its size; it starts counting afresh."""
        used, self._used = self._used, 0
        return min(self._size, float(used)) if used else self._size

    def connected(self, seconds: float) -> None:
        """A new connection took ``seconds`` to open (the network's round trip, no server work)."""
        with self._cond:
            if self._connect is None or seconds < self._connect:
                self._connect = seconds

    @property
    def round_trip(self) -> float | None:
        """The network's round trip as the quickest connection opened so far took it (seconds),
        or None before any was opened."""
        return self._connect

    def connect_stuck_after(self) -> float | None:
        """Seconds after which an unopened connection counts as lost: its SYN was dropped, as a
        server with a full listen backlog does (the kernel's own retry comes after a second).
        Opening a connection involves no server work, so the bound can be tight."""
        with self._cond:
            if self._connect is None:
                return None
            return max(CONNECT_STUCK_FLOOR, 10 * self._connect)

    def stuck_after(self) -> float | None:
        """Seconds without a first byte after which a request counts as lost (and is sent
        again on a fresh connection); ``None`` until enough answers have been seen."""
        with self._cond:
            if len(self._ttfb) < _MIN_SAMPLES:
                return None
            usual = sorted(self._ttfb)[int(0.9 * (len(self._ttfb) - 1))]
        return max(STUCK_FLOOR, STUCK_FACTOR * usual)


class Bodies:
    """The bodies one call of the fetcher holds: at most ``limit()`` bytes at once (or one body
    bigger than that), the buffers to reuse by length, and the sizes seen so far, which say
    what a request in flight is likely to bring (``guess`` until the first). One thread's."""

    __slots__ = ("limit", "held", "peak", "_spare", "_seen", "_bytes", "_guess")

    def __init__(self, limit: Callable[[], int], guess: int):
        self.limit = limit
        self.held = self.peak = 0
        self._spare: dict[int, list[bytearray]] = {}
        self._seen, self._bytes, self._guess = 0, 0, guess

    def seen(self, n: int) -> None:
        """An answer's head announced a body of ``n`` bytes."""
        self._seen += 1
        self._bytes += n

    def likely(self) -> float:
        """The body a request in flight is likely to bring: the mean of those seen, else the guess."""
        return self._bytes / self._seen if self._seen else self._guess

    def least(self, latency: float | None = None) -> float:
        """The body to size requests in flight by: the mean of those seen, else a quarter of the
        guess. The guess (a chunk's decoded size) overstates a compressed chunk several times,
        and a first wave too small costs a round trip, where one too big costs little: the
        bytes promised stay bounded by :meth:`likely`. But where the server's ``latency`` is
        under :data:`SHORT_LATENCY`, a round trip costs little too, and the connections of a
        first wave four times too big do not (at 0 ms on loopback: 120 opened where 30 would do,
        and the server's answers to them queued behind each other): the guess itself."""
        if self._seen:
            return self._bytes / self._seen
        return self._guess if latency is not None and latency < SHORT_LATENCY else self._guess / 4

    def admit(self, n: int) -> bool:
        """Whether a body of ``n`` bytes may be received now; if so it is held."""
        if self.held and self.held + n > self.limit():
            return False
        self.held += n
        self.peak = max(self.peak, self.held)
        return True

    def release(self, n: int, body: bytes | bytearray | None = None) -> None:
        """A body of ``n`` bytes is no longer held (a buffer goes back for reuse)."""
        self.held -= n
        if isinstance(body, bytearray):
            self._spare.setdefault(len(body), []).append(body)

    def buffer(self, n: int) -> bytearray:
        """A buffer of ``n`` bytes, reused when one is free."""
        free = self._spare.get(n)
        return free.pop() if free else bytearray(n)


__all__ = ["Bodies", "CONNECT_STUCK_FLOOR", "LATENCY_SPAN", "SHORT_LATENCY", "STUCK_FACTOR", "STUCK_FLOOR", "Window"]
