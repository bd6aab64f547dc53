"""Many HTTP/1.1 GETs in flight from one thread: non-blocking keep-alive sockets and a selector.

A thread per request spends most of its CPU fighting the others for the GIL once dozens are
in flight; one loop over many sockets keeps a full read over a high-latency link
latency-bound instead of CPU-bound (figures in docs/performance.md). It does only the common case: ``GET`` with a ``Content-Length`` answer.
Anything else (a broken or silent connection, chunked framing, a malformed answer) comes back
as a :class:`Failure`, and the caller does that request again the slow, careful way
(:class:`~.http.HTTPStore`'s ``read``, with its retries, redirects and error messages).

Bodies are received straight into one buffer each (``recv_into``), never joined from pieces,
and the buffers are reused within a call: a fresh buffer per body costs more in page faults
than the rest of the request (and than the copy a caller makes of it). A call receives only a
few bodies at once (:meth:`Fetcher.receiving`); the answers past that wait, their bodies left in
the kernel, which costs nothing where the network's round trip is short and keeps the buffers
in the CPU's caches, and lets requests go out before their sizes are known. (Leaving each body in
the kernel until it has come whole, ``SO_RCVLOWAT``, to ``recv`` it as one ``bytes`` without a
copy was tried: it cost more CPU than the copy, and stalled the senders.) Idle connections are
kept between calls; each call owns the connections it uses.

How many requests are in flight is what the server's latency needs (:meth:`Fetcher.wanted`:
enough to keep the network busy through two of its quickest first-byte times of the last few
seconds; a careful request's, the volume's ``info`` say, counts), within a window that closes on overload
(:class:`~.window.Window`): fewer when the server refuses, resets, throttles or leaves a
request unanswered far longer than usual. Such a stuck request is sent again on a
fresh connection (twice at most). A request that takes longer than ``deadline`` in all, even
while bytes trickle in, fails for good (``Failure.final``): sending it again would only wait
as long again.

The loop never lets the network wait on itself: a big first wave is sent a few requests at a
time, with what has come taken in between (:data:`START_BURST`); a connection whose answer is
in takes its next request before that answer is handed on; and a new plain connection sends
its request at once (on loopback it is open by the time ``connect`` returns).
"""

from __future__ import annotations

import errno
import math
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from typing import Callable, Iterable, Iterator

from .http_answer import MAX_HEAD, Failure, Reply, origin, parse_head
from .http_answer import Conn as _Conn
from .http_answer import Broken as _Broken
from .http_answer import Unusual as _Unusual
from .window import CONNECT_STUCK_FLOOR, STUCK_FLOOR, Bodies, Window

_HEAD_READ = 4096  # headers are small (S3's about 1 KiB); the body goes straight into its buffer
_STALE = "stale keep-alive connection"
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError, InterruptedError)
#: answers that say "too much, slow down" (S3's SlowDown is a 503)
OVERLOAD_STATUS = frozenset({429, 502, 503, 504})
#: how often one request is sent again after it got stuck
_RESENDS = 3
#: requests a call keeps in flight while nothing is known of the server's latency
INITIAL_WINDOW = 128
#: and at least this many once it is (see ``Fetcher.wanted``)
MIN_IN_FLIGHT = 16
#: requests are sent while the bodies they will bring (judged from the sizes seen so far)
#: stay within this many times ``max_bytes``: bodies past what a call receives at once wait
#: in the kernel, so a first guess that is too big (a chunk's decoded size) costs no round trip
PROMISE_FACTOR = 2
#: a call receives at least this many bytes of bodies at once (or one body), and more only
#: where the network's round trip needs more to keep it busy (see ``Fetcher.receiving``)
RECEIVE_FLOOR = 4 << 20
#: the bandwidth that need is judged at (bytes per second): a fast cloud VM's
LINK_BYTES_PER_S = 2e9
#: ``_step``'s answer for an answer whose body must wait for room
_WAIT = -1
#: requests begun at most between two looks at what has come: opening a few hundred
#: connections takes a loaded machine 100 ms and more, and the first answers should not wait
START_BURST = 16
#: the requests in flight are looked over for their time limits at least this often while any
#: is in flight (seconds), and when the soonest limit of one comes, not after every wake-up
#: (with hundreds in flight that is hundreds of checks each time)
SCAN_EVERY = 0.05


class Fetcher:
    """GETs against one origin (``scheme://host:port``), driven by the thread that iterates.

    ``headers`` go with every request; ``timeout`` is (connect, read) in seconds, the read
    timeout being the longest silence allowed while a request is outstanding; ``deadline``
    (seconds, or None) bounds a request in all. At most ``limit`` requests are in flight across
    all the calls of all threads (and as many connections kept), fewer while the server shows
    overload (``window``). A call receives at most :meth:`receiving` bytes of bodies at once
    (or one body bigger than that), never more than ``max_bytes``: the answers past it wait,
    their bodies left in the kernel, so big chunks do not multiply memory by ``limit``; and it
    stops adding requests once the bodies in flight would pass :data:`PROMISE_FACTOR` times
    ``max_bytes`` (judged by the sizes seen so far). It keeps no more requests in flight than
    the server's latency needs (:meth:`wanted`; ``initial`` while that is unknown).
    ``peak_bytes`` is the most body bytes a call has held at once.
    """

    def __init__(self, scheme: str, host: str, port: int | None, headers: dict[str, str],
                 timeout: tuple[float, float], ssl_context: ssl.SSLContext | None = None, limit: int = 64,
                 max_bytes: int = 128 * 2**20, deadline: float | None = None, initial: int = INITIAL_WINDOW):
        if scheme not in ("http", "https"):
            raise ValueError(f"Fetcher speaks http and https, not {scheme!r}")
        self.scheme, self.host = scheme, host
        self.port = port or (443 if scheme == "https" else 80)
        self.timeout = timeout
        self._tls = (ssl_context or ssl.create_default_context()) if scheme == "https" else None
        default_port = self.port == (443 if scheme == "https" else 80)
        host_header = f"[{host}]" if ":" in host else host
        self._fixed = {"Host": host_header if default_port else f"{host_header}:{self.port}", **headers}
        self._idle: list[socket.socket] = []
        self._addr: tuple[float, tuple] | None = None  # (when resolved, getaddrinfo entry)
        self._lock = threading.Lock()
        self._max_idle = max(1, limit)
        self.window = Window(limit, limit)  # it closes on overload; a call asks only what it needs
        self.initial = max(1, int(initial))
        self.max_bytes = max_bytes
        self.deadline = deadline
        self.peak_bytes = 0

    def wanted(self, body: float) -> int:
        """Requests a call keeps in flight for bodies of ``body`` bytes: enough to keep the
        network busy through two of the server's quickest first-byte times (at
        :data:`LINK_BYTES_PER_S`), at least :data:`MIN_IN_FLIGHT`; ``initial`` before any answer.
        More would only wait: on loopback, 128 requests of 2 MB in flight took 1.7x the CPU of 16
        (their bodies fill the kernel's buffers and the caches)."""
        return self._wanted(self.window.least_first_byte(), body)

    def _wanted(self, latency: float | None, body: float) -> int:
        if latency is None:
            return self.initial
        return max(MIN_IN_FLIGHT, math.ceil(2 * latency * LINK_BYTES_PER_S / max(1.0, body)))

    def receiving(self) -> int:
        """Bytes of bodies a call receives at once: what keeps the network busy for two of its
        round trips (the quickest connect seen, at :data:`LINK_BYTES_PER_S`), at least
        :data:`RECEIVE_FLOOR`, at most ``max_bytes``. On a short round trip a waiting body loses
        nothing (its sender resumes at once), and few bodies in progress keep their buffers in
        the CPU's caches: on loopback, 2 MB bodies took a quarter of the CPU with 8 MiB in
        progress that they took with 128 MiB."""
        rtt = self.window.round_trip
        need = self.max_bytes if rtt is None else 2 * rtt * LINK_BYTES_PER_S
        return int(min(self.max_bytes, max(RECEIVE_FLOOR, need)))

    @property
    def origin(self) -> str:
        """The ``scheme://host[:port]`` every request goes to (see :func:`origin`)."""
        return origin(self.scheme, self.host, self.port)

    # -- connections ---------------------------------------------------------------------------
    def _take_idle(self) -> socket.socket | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def _give_back(self, sock: socket.socket) -> None:
        with self._lock:
            if len(self._idle) < self._max_idle:
                self._idle.append(sock)
                return
        sock.close()

    def _open(self) -> _Conn:
        """Start a non-blocking connect (name resolution blocks, briefly, as everywhere)."""
        family, kind, proto, _, addr = self._resolve()
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # requests are one small write
        err = sock.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            sock.close()
            raise OSError(err, f"connect to {self.host}:{self.port}: {errno.errorcode.get(err, err)}")
        return _Conn(sock, False, "connect")

    def _resolve(self) -> tuple:
        """The server's address, looked up at most once a minute (not once per connection)."""
        now = time.monotonic()
        if self._addr is None or now - self._addr[0] > 60:
            self._addr = (now, socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)[0])
        return self._addr[1]

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for s in idle:
            s.close()

    # -- the loop ------------------------------------------------------------------------------
    def fetch(self, requests: Iterable[tuple[object, str, dict[str, str]]], expected_bytes: int | None = None
              ) -> Iterator[tuple[object, Reply | Failure]]:
        """GET each ``(tag, path, headers)``, keeping as many in flight as the limits allow;
        yield ``(tag, Reply | Failure)`` as each finishes, in no particular order.
        ``expected_bytes`` guesses a body's size until real ones are seen (default: 1 MiB).

        A reply's body is the caller's when it is ``bytes``; a ``bytearray`` body is only valid
        until the next item is asked for (its buffer is then reused), so copy what you keep.
        Closing the generator early closes the busy connections.
        """
        # requests are taken as they are sent, not all at once: making one may cost something
        # (an S3 signature), and that should overlap the first answers' wait
        source = iter(requests)
        # ones to send again first (stale or stuck): (tag, path, headers, first sent at, resends)
        todo: deque[tuple[object, str, dict[str, str], float, int]] = deque()
        window = self.window

        def more() -> bool:
            if not todo:
                item = next(source, None)
                if item is None:
                    return False
                todo.append((*item, 0.0, 0))
            return True

        bodies = Bodies(self.receiving, 2**20 if expected_bytes is None else max(0, int(expected_bytes)))
        waiting: deque[_Conn] = deque()  # answers whose bodies wait for room, oldest first
        sel = selectors.DefaultSelector()
        busy: set[_Conn] = set()
        done: list[_Conn] = []

        def finish(conn: _Conn) -> None:
            busy.discard(conn)
            done.append(conn)
            window.release()
            reply = conn.result
            if isinstance(reply, Reply):
                if reply.status in OVERLOAD_STATUS:
                    window.congested(conn.sent_at)
                else:
                    window.healthy(conn.first_byte - conn.sent_at)
            else:
                bodies.release(conn.held)  # a body cut short holds nothing any more
                conn.held = 0
                if isinstance(reply, Failure) and reply.reason != _STALE and conn.overload:
                    window.congested(conn.sent_at)

        def advance(conn: _Conn) -> None:
            self._advance(conn, sel)
            if conn.state == "wait":
                waiting.append(conn)
            elif conn.result is not None:
                finish(conn)

        def resume() -> None:
            """Answers waiting for room receive their bodies, oldest first, while it lasts."""
            while waiting and bodies.admit(waiting[0].length):
                conn = waiting.popleft()
                conn.held = conn.length
                self._begin_body(conn, conn.rest)
                conn.rest = b""
                advance(conn)

        def room() -> bool:
            if len(busy) < 2:
                return True
            latency = window.least_first_byte()
            return (len(busy) < self._wanted(latency, bodies.least(latency))
                    and (len(busy) + 1) * bodies.likely() <= PROMISE_FACTOR * self.max_bytes)

        def give_up(conn: _Conn, failure: Failure) -> None:
            self._close(conn, sel)
            conn.result = failure
            finish(conn)

        next_scan = [0.0]  # when the requests in flight are next looked over for their time limits

        def start() -> Iterator[tuple[object, Failure]]:
            """Send requests while there is room, at most START_BURST; a connection that cannot
            be made is yielded as a Failure. Whether the burst filled it."""
            started = 0
            # another call may hold every slot: wait for one only when there is nothing to do
            while started < START_BURST and more() and room() and window.acquire(blocking=not busy and not done):
                tag, path, headers, first_sent, resends = todo.popleft()
                conn = self._connection()
                if isinstance(conn, Failure):
                    window.release()
                    window.congested(time.monotonic())
                    yield tag, conn
                    continue
                self._start(conn, tag, path, headers, bodies)
                conn.born, conn.resends = first_sent or conn.sent_at, resends
                busy.add(conn)
                started += 1
                advance(conn)
                # the soonest its time limits can come (the stuck ones have floors)
                next_scan[0] = min(next_scan[0], conn.deadline,
                                   conn.sent_at + (CONNECT_STUCK_FLOOR if conn.state == "connect" else STUCK_FLOOR))
            return started == START_BURST

        try:
            while more() or busy or done:  # (resume() may finish answers after the last yield)
                burst = yield from start()
                if busy and not done:
                    # more to send: only take in what has come, so that the first answers are read
                    # (and handed on) while the rest of a big first wave is still being sent
                    sending = burst and more() and room()
                    wait = 0.0 if sending else max(0.0, next_scan[0] - time.monotonic())
                    for key, _ in sel.select(min(wait, 3600.0)):
                        advance(key.data)
                    now = time.monotonic()
                    if now >= next_scan[0]:
                        next_scan[0] = self._scan(busy, now, sel, give_up, todo)
                    # the connections just freed take their next requests before the answers
                    # are handed on: the server works on them while the caller decodes
                    if done:
                        yield from start()
                finished, done = done, []
                for conn in finished:
                    if isinstance(conn.result, Failure) and conn.result.reason == _STALE:
                        todo.appendleft((conn.tag, *conn.request, conn.born, conn.resends))
                        continue
                    yield conn.tag, conn.result  # type: ignore[misc]
                    if isinstance(conn.result, Reply):
                        bodies.release(conn.held, conn.result.body)
                        conn.held = 0
                    conn.result = conn.reply = None
                resume()
        finally:
            for conn in busy:
                self._close(conn, sel)
                window.release()
            sel.close()
            self.peak_bytes = max(self.peak_bytes, bodies.peak)

    def _scan(self, busy: set[_Conn], now: float, sel: selectors.BaseSelector, give_up: Callable[[_Conn, Failure], None],
              todo: deque) -> float:
        """Look over the requests in flight for their time limits: one past its deadline in all
        fails for good, one silent past its read timeout fails, one stuck (no first byte long
        after answers usually come) is sent again on a fresh connection; returns when to look
        next (at most :data:`SCAN_EVERY` from now: the stuck limits move as answers come)."""
        window = self.window
        stuck, stuck_open = window.stuck_after(), window.connect_stuck_after()
        lost: list[float] = []  # when the requests found stuck in this pass were sent
        soonest = now + SCAN_EVERY
        for conn in list(busy):
            t = self._next_check(conn, stuck, stuck_open)
            if t > now:
                soonest = min(soonest, t)
            elif self.deadline is not None and now - conn.born >= self.deadline:
                give_up(conn, Failure(f"no complete answer within {self.deadline:g} s (in {conn.state}, "
                                      f"{conn.got} bytes of the body so far)", final=True))
            elif conn.deadline <= now:
                give_up(conn, Failure(f"no answer within {self._limit(conn):g} s (while in {conn.state})"))
            elif conn.resends < _RESENDS:  # stuck: overload; send it again on a fresh connection
                self._close(conn, sel)
                busy.discard(conn)
                window.release()
                lost.append(conn.sent_at)
                todo.appendleft((conn.tag, *conn.request, conn.born, conn.resends + 1))
            else:
                give_up(conn, Failure(f"no answer after {now - conn.born:.1f} s, sent {_RESENDS + 1} "
                                      "times, while answers usually come much sooner"))
        if lost:
            window.stuck(max(lost), len(lost))
        return soonest

    def _next_check(self, conn: _Conn, stuck: float | None, stuck_open: float | None) -> float:
        """When ``conn`` must be looked at even if nothing arrives: its silence limit, its
        deadline in all, or (no answer begun yet) the moment it would count as stuck. An answer
        waiting for room is never looked at: the wait is the caller's, not the server's."""
        if conn.state == "wait":
            return float("inf")
        t = conn.deadline
        if self.deadline is not None:
            t = min(t, conn.born + self.deadline)
        if stuck is not None and not conn.first_byte:
            t = min(t, conn.sent_at + stuck)
        if stuck_open is not None and conn.state == "connect":
            t = min(t, conn.sent_at + stuck_open)
        return t

    def _connection(self) -> _Conn | Failure:
        sock = self._take_idle()
        if sock is not None:
            return _Conn(sock, True, "send")
        try:
            return self._open()
        except OSError as e:
            return Failure(f"cannot connect to {self.host}:{self.port}: {e}")

    def _start(self, conn: _Conn, tag: object, path: str, headers: dict[str, str], bodies: Bodies) -> None:
        conn.tag, conn.request, conn.bodies = tag, (path, headers), bodies
        lines = [f"GET {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in {**self._fixed, **headers}.items()]
        conn.out = memoryview(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        conn.sent_at = time.monotonic()
        conn.deadline = conn.sent_at + self._limit(conn)

    def _limit(self, conn: _Conn) -> float:
        return self.timeout[0] if conn.state in ("connect", "handshake") else self.timeout[1]

    def _watch(self, conn: _Conn, sel: selectors.BaseSelector, events: int) -> None:
        if conn.events == events:
            return
        if conn.events:
            sel.modify(conn.sock, events, conn)
        else:
            sel.register(conn.sock, events, conn)
        conn.events = events

    def _unwatch(self, conn: _Conn, sel: selectors.BaseSelector) -> None:
        if conn.events:
            sel.unregister(conn.sock)
            conn.events = 0

    def _close(self, conn: _Conn, sel: selectors.BaseSelector) -> None:
        self._unwatch(conn, sel)
        conn.sock.close()

    def _advance(self, conn: _Conn, sel: selectors.BaseSelector) -> None:
        """Move ``conn`` on as far as it goes without blocking; set ``conn.result`` when done."""
        try:
            if conn.state == "connect" and self._tls is None and not conn.events:
                # a plain connection just begun: sending at once says whether it is open (on
                # loopback it is by now), which saves a wait for the selector and three calls
                if not self._send_first(conn):
                    self._watch(conn, sel, selectors.EVENT_WRITE)
                    conn.deadline = time.monotonic() + self._limit(conn)
                    return
            elif conn.state == "connect" and self._connected(conn):
                self._opened(conn, sel)
            want = self._step(conn)
        except (_Broken, OSError) as e:
            # a kept-alive connection the server closed meanwhile: not a failure, just reconnect
            stale = conn.reused and not conn.head and conn.state in ("send", "head")
            conn.overload = not isinstance(e, _Unusual)
            self._close(conn, sel)
            conn.result = Failure(_STALE if stale else str(e))
            return
        if want == _WAIT:  # its body stays in the kernel until the call has room for it
            self._unwatch(conn, sel)
            conn.state = "wait"
            return
        if want:
            self._watch(conn, sel, want)
            conn.deadline = time.monotonic() + self._limit(conn)
            return
        self._unwatch(conn, sel)
        conn.result = conn.reply
        if conn.closing:
            conn.sock.close()
        else:
            self._give_back(conn.sock)

    def _opened(self, conn: _Conn, sel: selectors.BaseSelector) -> None:
        """``conn``'s connection has just opened: on to sending (or the TLS handshake)."""
        conn.state = "send"
        self.window.connected(time.monotonic() - conn.sent_at)
        if self._tls is not None:
            self._unwatch(conn, sel)  # wrapping moves the descriptor to a new socket object
            conn.sock = self._tls.wrap_socket(conn.sock, server_hostname=self.host, do_handshake_on_connect=False)
            conn.state = "handshake"

    def _send_first(self, conn: _Conn) -> bool:
        """Try the first send on a plain connection being opened: True when it went (the
        connection is open), False while it is still opening; raises when it failed."""
        try:
            n = conn.sock.send(conn.out)
        except _WOULD_BLOCK:
            return False
        except OSError as e:
            if e.errno == errno.ENOTCONN:  # some systems say so while the connect is under way
                return False
            raise _Broken(f"connect to {self.host}:{self.port}: {type(e).__name__}: {e}") from None
        conn.state = "send"
        self.window.connected(time.monotonic() - conn.sent_at)
        conn.out = conn.out[n:]
        return True

    def _connected(self, conn: _Conn) -> bool:
        """Whether a non-blocking connect has finished (raises if it failed)."""
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            raise _Broken(f"connect to {self.host}:{self.port}: {errno.errorcode.get(err, err)}")
        return _writable(conn.sock)

    def _step(self, conn: _Conn) -> int:
        """Do what can be done now; the selector events to wait for, or 0 when answered."""
        try:
            if conn.state == "connect":
                return selectors.EVENT_WRITE
            if conn.state == "handshake":
                try:
                    conn.sock.do_handshake()  # type: ignore[attr-defined]
                except ssl.SSLWantReadError:
                    return selectors.EVENT_READ
                except ssl.SSLWantWriteError:
                    return selectors.EVENT_WRITE
                conn.state = "send"
            if conn.state == "send":
                while conn.out:
                    try:
                        n = conn.sock.send(conn.out)
                    except _WOULD_BLOCK:
                        return selectors.EVENT_WRITE
                    conn.out = conn.out[n:]
                conn.state = "head"
                # no answer can be there yet: asking would only cost a failed recv
                return selectors.EVENT_READ
            if conn.state == "head":
                end = self._read_head(conn)
                if end < 0:
                    return selectors.EVENT_READ
                rest = self._parse_head(conn, end)
                if not conn.length:  # no body, or an empty one
                    conn.state = "done"
                    return 0
                if not conn.bodies.admit(conn.length):  # type: ignore[union-attr]
                    conn.rest = rest
                    return _WAIT
                conn.held = conn.length
                self._begin_body(conn, rest)
            if conn.state == "body":
                return self._read_body(conn)
        except OSError as e:  # resets, refused connections, TLS errors (ssl.SSLError is an OSError)
            raise _Broken(f"{type(e).__name__}: {e}") from None
        raise AssertionError(conn.state)

    def _read_head(self, conn: _Conn) -> int:
        """Take in the answer's head; where it ends in ``conn.head``, or -1 while more must come
        (what came after it is the body's first bytes)."""
        while True:
            try:
                data = conn.sock.recv(_HEAD_READ)
            except _WOULD_BLOCK:
                return -1
            if not data:
                raise _Broken("connection closed before an answer")
            if not conn.head:
                conn.first_byte = time.monotonic()
            conn.head += data
            end = conn.head.find(b"\r\n\r\n", max(0, len(conn.head) - len(data) - 3))
            if end >= 0:
                return end
            if len(conn.head) > MAX_HEAD:
                raise _Unusual("answer headers too long")

    def _begin_body(self, conn: _Conn, rest: bytes | bytearray) -> None:
        """Get ready to receive ``conn``'s body into a buffer, ``rest`` of it read with the head."""
        conn.state = "body"
        conn.body = conn.bodies.buffer(conn.length)  # type: ignore[union-attr]
        conn.body[: len(rest)] = rest
        conn.got = len(rest)

    def _read_body(self, conn: _Conn) -> int:
        """Receive what has come of the body; 0 when all of it is in, else the events to wait for."""
        body, n = conn.body, conn.length
        assert body is not None and conn.reply is not None
        view = memoryview(body)
        plain = self._tls is None  # a TLS socket may hold decrypted bytes the selector cannot see
        while conn.got < n:
            try:
                k = conn.sock.recv_into(view[conn.got:])
            except _WOULD_BLOCK:
                return selectors.EVENT_READ
            if not k:
                raise _Broken(f"body cut short at {conn.got} of {n} bytes")
            conn.got += k
            if plain and conn.got < n:
                # a plain socket gives all it holds at once: it is empty now, and asking again
                # would only fail (the selector says when more has come)
                return selectors.EVENT_READ
        conn.reply.body = body
        conn.state = "done"
        return 0

    def _parse_head(self, conn: _Conn, end: int) -> bytes | bytearray:
        """Parse the head ending at ``end``; set ``conn.reply`` (its body ``b""`` so far) and
        ``conn.length`` (0 for a bodiless answer) and return the body's bytes read with it."""
        rest = conn.head[end + 4:]
        conn.reply, conn.closing, conn.length = parse_head(bytes(conn.head[:end]), len(rest))
        conn.body = None
        if conn.length:
            conn.bodies.seen(conn.length)  # type: ignore[union-attr]
        return rest


def _writable(sock: socket.socket) -> bool:
    """A connecting socket reports SO_ERROR 0 before it is connected; ask the kernel directly."""
    try:
        sock.getpeername()
        return True
    except OSError:
        return False


__all__ = ["Failure", "Fetcher", "Reply", "origin"]
