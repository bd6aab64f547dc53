"""A lean static file server for the HTTP benchmark: asyncio, keep-alive, Range, a fixed delay
before every answer (a cloud store's first-byte time), strong ETags with If-Match (412) and
If-None-Match (304) as object stores answer them, and little CPU of its own.

The test suite's server spends ~0.4 ms of CPU per request on a thread per connection; on a
2-core machine that CPU is taken from the clients being measured, which a cloud server never
does. This one spends about a quarter of that, so the clients, not the server, set the pace.

    python benchmarks/latency_server.py ROOT LATENCY_SECONDS   # prints its URL, serves forever
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Protocol(asyncio.Protocol):
    def __init__(self, root: Path, latency: float):
        self.root, self.latency = root, latency
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes | None] = []  # answers in request order (None: not yet due)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            slot = len(self.pending)
            self.pending.append(None)
            answer = self.answer(head.decode("latin-1"))
            asyncio.get_running_loop().call_later(self.latency, self.due, slot, answer)

    def due(self, slot: int, answer: bytes) -> None:
        self.pending[slot] = answer
        while self.pending and self.pending[0] is not None:  # keep the order of pipelined requests
            out = self.pending.pop(0)
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(out)  # type: ignore[arg-type]

    def answer(self, head: str) -> bytes:
        lines = head.split("\r\n")
        method, target = lines[0].split(" ")[:2]
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        rel = os.path.normpath("/" + unquote(urlsplit(target).path)).lstrip("/")
        path, enc = self.root / rel, None
        if not path.is_file() and path.with_name(path.name + ".gz").is_file():
            path, enc = path.with_name(path.name + ".gz"), "gzip"
        if method not in ("GET", "HEAD") or not path.is_file() or self.root not in path.parents:
            return b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
        st = path.stat()
        # a strong ETag and the conditions on it, as object stores answer them
        etag = f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'
        if headers.get("if-match") not in (None, "*", etag):
            return b"HTTP/1.1 412 Precondition Failed\r\nContent-Length: 0\r\n\r\n"
        if headers.get("if-none-match") == etag:
            return f"HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nContent-Length: 0\r\n\r\n".encode()
        data = path.read_bytes()
        status, extra = "200 OK", f"ETag: {etag}\r\n"
        rng = headers.get("range", "")
        if rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start, end = (len(data) - int(b), len(data) - 1) if not a else (int(a), min(int(b) if b else len(data) - 1, len(data) - 1))
            if start >= len(data) or start > end:
                return f"HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len(data)}\r\nContent-Length: 0\r\n\r\n".encode()
            status, extra = "206 Partial Content", f"Content-Range: bytes {start}-{end}/{len(data)}\r\n"
            data = data[max(0, start): end + 1]
        if enc:
            extra += f"Content-Encoding: {enc}\r\n"
        head_out = f"HTTP/1.1 {status}\r\nContent-Length: {len(data)}\r\nAccept-Ranges: bytes\r\n{extra}\r\n".encode()
        return head_out + (data if method == "GET" else b"")


async def serve(root: Path, latency: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Protocol(root, latency), "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1]).resolve(), float(sys.argv[2])))
