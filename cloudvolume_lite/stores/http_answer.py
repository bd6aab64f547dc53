"""The streaming fetcher's (``http_fetch.py``) requests and answers: one connection's state
(:class:`Conn`), what an answer comes to (a :class:`Reply` or a :class:`Failure`), and the head
of an answer parsed (:func:`parse_head`), the common case only: a status line, headers, and a
body framed by ``Content-Length`` (or none, for 204/304). Anything else is :class:`Unusual`,
for the caller to do again the careful way."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .window import Bodies

MAX_HEAD = 64 * 1024  # an answer's status line and headers, at most


@dataclass
class Reply:
    """An answer: status, headers (names lower-cased, repeats joined by ", ") and body. The
    store takes the object's generation from the headers (``etag``, ``last-modified``, ...)."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes | bytearray


@dataclass
class Failure:
    """No usable answer; ``reason`` says why. The caller retries the slow way, unless
    ``final``: the request ran out of time in all (see ``Fetcher``'s ``deadline``)."""

    reason: str
    final: bool = False


class Broken(Exception):
    """This connection cannot carry the request any further."""


class Unusual(Broken):
    """An answer the fetcher does not handle (chunked framing, say): no sign of overload."""


class Head(NamedTuple):
    """A parsed head: the reply (its body ``b""`` so far), whether the server closes the
    connection after it, and its body's length (0: no body)."""

    reply: Reply
    closing: bool
    length: int


class Conn:
    """One connection of the fetcher, the request it carries and the answer as read so far."""

    __slots__ = ("sock", "reused", "state", "events", "tag", "request", "out", "head", "body", "got", "length",
                 "rest", "held", "reply", "result", "deadline", "closing", "bodies", "sent_at", "born", "first_byte",
                 "resends", "overload")

    def __init__(self, sock: socket.socket, reused: bool, state: str):
        self.sock = sock
        self.reused = reused
        self.state = state  # "connect", "handshake", "send", "head", "wait", "body", "done"
        self.events = 0  # what the selector watches for (0: not registered)
        self.tag: object = None
        self.request: tuple[str, dict[str, str]] = ("", {})
        self.out = memoryview(b"")
        self.head = bytearray()
        self.body: bytearray | None = None
        self.got = 0
        self.length = 0  # the body's Content-Length
        self.rest: bytes | bytearray = b""  # of an answer waiting for room: its body's bytes read with the head
        self.held = 0  # bytes of the call's budget this body holds
        self.reply: Reply | None = None
        self.result: Reply | Failure | None = None
        self.deadline = 0.0
        self.closing = False  # the server said it closes the connection after this answer
        self.bodies: Bodies | None = None  # the call's budget and reusable buffers
        self.sent_at = 0.0  # time.monotonic() when this try of the request was sent
        self.born = 0.0  # ... and when its first try was (the deadline counts from there)
        self.first_byte = 0.0  # ... and when its answer began (0: not yet)
        self.resends = 0  # how often this request was sent again after getting stuck
        self.overload = True  # whether a failure here is a sign of overload (not of odd framing)


def origin(scheme: str, host: str, port: int | None) -> str:
    """``scheme://host[:port]``, the port left out when it is the scheme's default and an IPv6
    host in brackets: one spelling per origin, so two can be compared as strings."""
    default = 443 if scheme == "https" else 80
    host = f"[{host}]" if ":" in host else host.lower()
    return f"{scheme}://{host}" if port in (None, default) else f"{scheme}://{host}:{port}"


def parse_head(head: bytes, rest: int) -> Head:
    """Parse ``head`` (the status line and headers, without the blank line after them), of an
    answer whose ``rest`` bytes of body came with it; :class:`Unusual` for what the fetcher
    does not handle (1xx, framing other than ``Content-Length``, bytes past the body)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise Unusual(f"not an HTTP/1.x answer: {lines[0][:80]!r}")
    status = int(parts[1])
    if 100 <= status < 200:
        raise Unusual(f"interim answer {status}")  # never asked for; the slow path copes
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise Unusual(f"malformed header line {line[:80]!r}")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    keep = headers.get("connection", "").lower()
    closing = keep == "close" or (parts[0] == "HTTP/1.0" and keep != "keep-alive")
    reply = Reply(status, parts[2] if len(parts) > 2 else "", headers, b"")
    if status in (204, 304):  # no body (length 0)
        if rest:
            raise Unusual("bytes after a bodiless answer")
        return Head(reply, closing, 0)
    if "transfer-encoding" in headers or "content-length" not in headers:
        raise Unusual("answer framed without Content-Length")
    try:
        length = int(headers["content-length"])
    except ValueError:
        raise Unusual(f"bad Content-Length {headers['content-length']!r}") from None
    if length < 0 or rest > length:
        raise Unusual("answer longer than its Content-Length")
    return Head(reply, closing, length)


__all__ = ["MAX_HEAD", "Broken", "Conn", "Failure", "Head", "Reply", "Unusual", "origin", "parse_head"]
