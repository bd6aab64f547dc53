"""A lean static file server for the HTTP benchmark: asyncio, keep-alive, Range, a fixed delay
before every answer (a cloud store's first-byte time), strong ETags with If-Match (412) and
If-None-Match (304) as object stores answer them, and little CPU of its own.

The test suite's server spends ~0.4 ms of CPU per request on a thread per connection; on a
2-core machine that CPU is taken from the clients being measured, which a cloud server never
does. This one spends about a quarter of that, so the clients, not the server, set the pace:
file bodies are kept in memory once read (:class:`Files`), an answer's body is written as it
is held (never joined to its headers), and pipelined requests are answered in order.

    python benchmarks/latency_server.py ROOT LATENCY_SECONDS   # prints its URL, serves forever
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import deque
from pathlib import Path
from urllib.parse import unquote, urlsplit


class Files:
    """File bodies kept in memory once read (a cloud server does not read a disk per request,
    and the bytes it sends cost the clients, not it), up to ``limit`` bytes; each request still
    stats its file, so a rewritten file is read again."""

    def __init__(self, limit: int = 2 << 30):
        self.limit, self.held = limit, 0
        self._bodies: dict[Path, tuple[str, bytes]] = {}

    def body(self, path: Path, etag: str) -> bytes:
        got = self._bodies.get(path)
        if got is not None and got[0] == etag:
            return got[1]
        data = path.read_bytes()
        if got is not None:
            self.held -= len(got[1])
            del self._bodies[path]
        if self.held + len(data) <= self.limit:
            self._bodies[path] = (etag, data)
            self.held += len(data)
        return data


class _Protocol(asyncio.Protocol):
    def __init__(self, root: Path, latency: float, files: Files):
        self.root, self.latency, self.files = root, latency, files
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        # answers (head, body) in request order (None: not yet due)
        self.pending: deque[tuple[bytes, memoryview | bytes] | None] = deque()
        self.first = 0  # the number of the request whose answer is pending[0]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            slot = self.first + len(self.pending)  # absolute: answers sent meanwhile shift the deque
            self.pending.append(None)
            answer = self.answer(head.decode("latin-1"))
            asyncio.get_running_loop().call_later(self.latency, self.due, slot, answer)

    def due(self, slot: int, answer: tuple[bytes, memoryview | bytes]) -> None:
        self.pending[slot - self.first] = answer
        while self.pending and self.pending[0] is not None:  # keep the order of pipelined requests
            head, body = self.pending.popleft()
            self.first += 1
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(head)  # two writes, not one joined copy of the body
                if body:
                    self.transport.write(body)  # type: ignore[arg-type]

    def answer(self, head: str) -> tuple[bytes, memoryview | bytes]:
        lines = head.split("\r\n")
        method, target = lines[0].split(" ")[:2]
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        rel = os.path.normpath("/" + unquote(urlsplit(target).path)).lstrip("/")
        path, enc = self.root / rel, None
        if not path.is_file() and path.with_name(path.name + ".gz").is_file():
            path, enc = path.with_name(path.name + ".gz"), "gzip"
        if method not in ("GET", "HEAD") or not path.is_file() or self.root not in path.parents:
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", b""
        st = path.stat()
        # a strong ETag and the conditions on it, as object stores answer them
        etag = f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'
        if headers.get("if-match") not in (None, "*", etag):
            return b"HTTP/1.1 412 Precondition Failed\r\nContent-Length: 0\r\n\r\n", b""
        if headers.get("if-none-match") == etag:
            return f"HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nContent-Length: 0\r\n\r\n".encode(), b""
        whole = self.files.body(path, etag)
        data: memoryview | bytes = memoryview(whole)
        status, extra = "200 OK", f"ETag: {etag}\r\n"
        rng = headers.get("range", "")
        if rng.startswith("bytes="):
            n = len(whole)
            a, _, b = rng[6:].partition("-")
            start, end = (n - int(b), n - 1) if not a else (int(a), min(int(b) if b else n - 1, n - 1))
            if start >= n or start > end:
                return (f"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{n}\r\n"
                        "Content-Length: 0\r\n\r\n").encode(), b""
            status, extra = "206 Partial Content", f"Content-Range: bytes {start}-{end}/{n}\r\n"
            data = data[max(0, start): end + 1]
        if enc:
            extra += f"Content-Encoding: {enc}\r\n"
        head_out = f"HTTP/1.1 {status}\r\nContent-Length: {len(data)}\r\nAccept-Ranges: bytes\r\n{extra}\r\n".encode()
        return head_out, (data if method == "GET" else b"")


async def serve(root: Path, latency: float) -> None:
    loop = asyncio.get_running_loop()
    files = Files()
    server = await loop.create_server(lambda: _Protocol(root, latency, files), "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1]).resolve(), float(sys.argv[2])))
