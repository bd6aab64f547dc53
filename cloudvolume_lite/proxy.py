"""Serve open Volumes over HTTP as Neuroglancer reads them: ``cvl serve`` and ``cvl view``.

Every volume appears under ``/<name>/`` as an unsharded Precomputed volume: its ``info`` with
the ``sharding`` of each scale taken out, and each chunk under ``<scale key>/<chunk name>``
read through the Volume's own chunk store (its LRU and disk cache; on a sharded scale its
ShardedStore), so Neuroglancer never needs the shard layout and a remote volume is fetched
once however often the browser asks. Other keys (meshes, skeletons, segment properties) pass
through from the volume's root store.

What Neuroglancer (and browsers) expect of a data server: CORS on every answer (with the
preflight ``OPTIONS``), ``Range`` (206 with ``Content-Range``; a range past the end is 416),
and gzip on the wire when the browser accepts it and the bytes are not an image codec's.
A missing chunk is a 404, which Neuroglancer shows as empty.

An optional ``routes`` hook lets :mod:`cloudvolume_lite.viewer` add the Neuroglancer client's
own paths to the same server.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, NamedTuple

from .errors import RequestError, StoreError, VolumeError
from .stores.base import check_key

if TYPE_CHECKING:
    from .volume import Volume

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
#: chunk encodings whose bytes gzip cannot shrink: sent as they are
_INCOMPRESSIBLE = ("jpeg", "png", "jxl", "kempressed", "fpzip", "zfpc")
#: bodies smaller than this are not worth gzip's header and a browser's inflate
GZIP_MIN_BYTES = 512
#: the most bytes a POST from the client may send (its state and action notices are small)
POST_MAX_BYTES = 16 << 20


class Reply(NamedTuple):
    """What a route answers: status, body, content type, and whether gzip may shrink it."""

    status: int
    body: bytes
    content_type: str = "application/octet-stream"
    compressible: bool = True
    headers: tuple[tuple[str, str], ...] = ()


#: the status of a Reply whose route has answered the request itself (an event stream)
ANSWERED = 0
#: a route: (method, path, handler) -> a Reply, or None to fall through to the volumes
Route = Callable[[str, str, "ProxyHandler"], "Reply | None"]


def served_info(vol: "Volume") -> dict:
    """``vol``'s info as served: each scale's ``sharding`` removed, since its chunks are
    served by name (read through the ShardedStore)."""
    info = vol.info.to_json()
    for scale in info.get("scales", []):
        scale.pop("sharding", None)
    return info


def slug(text: str) -> str:
    """A path segment made of ``text``'s letters, digits, ``-``, ``_`` and ``.``."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "volume"
    return out[:64]


def volume_names(urls: list[str]) -> list[str]:
    """One distinct path name per volume URL: its last path segment, numbered when repeated."""
    names: list[str] = []
    for url in urls:
        base = slug(url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0])
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


class VolumeServer(ThreadingHTTPServer):
    """An HTTP server over ``volumes`` (name -> open Volume); use as a context manager.

    ``host`` defaults to loopback; ``port=0`` picks a free one. The volumes stay open while
    it serves and are not closed by it.
    """

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, volumes: Mapping[str, "Volume"], *, host: str = "127.0.0.1", port: int = 0,
                 routes: Route | None = None):
        for name in volumes:
            if slug(name) != name:
                raise RequestError(f"volume name {name!r} is not a plain path segment; use letters, digits, -_.")
        super().__init__((host, port), ProxyHandler)
        self.volumes = dict(volumes)
        self.routes = routes
        self.stopping = threading.Event()
        self._infos = {name: json.dumps(served_info(v)).encode() for name, v in self.volumes.items()}
        self._scale_keys = {name: {s.key: m for m, s in enumerate(v.scales)} for name, v in self.volumes.items()}
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server's base URL (``http://host:port``)."""
        host, port = self.server_address[:2]
        return f"http://{'127.0.0.1' if host in ('', '0.0.0.0') else host}:{port}"

    def volume_url(self, name: str) -> str:
        """The URL Neuroglancer reads volume ``name`` from (``precomputed://`` + this)."""
        return f"{self.url}/{name}"

    def start(self) -> "VolumeServer":
        """Serve on a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.serve_forever, name="cvl-serve", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (held-open event streams end too)."""
        self.stopping.set()
        if self._thread is not None:
            self.shutdown()
            self._thread.join(10)
            self._thread = None
        self.server_close()

    def __enter__(self) -> "VolumeServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- answering a path ------------------------------------------------------------------------
    def answer(self, path: str) -> Reply:
        """The reply for GET ``path`` (without query) from the volumes."""
        name, _, rest = path.lstrip("/").partition("/")
        vol = self.volumes.get(name)
        if vol is None:
            listing = "".join(f"{n}\n" for n in self.volumes).encode()
            if not name:
                return Reply(200, listing, "text/plain; charset=utf-8")
            return Reply(404, f"no volume {name!r} here; volumes: {', '.join(self.volumes)}\n".encode(),
                         "text/plain; charset=utf-8")
        if rest == "info":
            return Reply(200, self._infos[name], "application/json")
        key = check_key(rest)
        scale_key, _, chunk = key.rpartition("/")
        m = self._scale_keys[name].get(scale_key)
        if m is not None and chunk and "." not in chunk:  # a chunk name, not "x.shard" or a sidecar
            data = vol.chunk_store(m).get(chunk)
            encoding = vol.scales[m].encoding
        else:
            data = vol.store.get(key)
            encoding = ""
        if data is None:
            return Reply(404, b"", "text/plain", False)
        return Reply(200, bytes(data), "application/octet-stream", encoding not in _INCOMPRESSIBLE)


class ProxyHandler(BaseHTTPRequestHandler):
    """One connection's requests to a :class:`VolumeServer`."""

    server: VolumeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet by design
        pass

    def do_OPTIONS(self) -> None:  # noqa: N802 - a CORS preflight
        self.send_response(204)
        self._cors()
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", self.headers.get("Access-Control-Request-Headers") or "Range")
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self._get(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._get(body=False)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length > POST_MAX_BYTES:
            self._send(Reply(413, b"too large\n", "text/plain"), body=True)
            return
        self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        reply = self.server.routes("POST", path, self) if self.server.routes else None
        self._send(reply or Reply(404, b"", "text/plain", False), body=True)

    def _cors(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Expose-Headers", "Content-Range, Content-Length, Content-Encoding, Accept-Ranges")

    def _get(self, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        try:
            reply = self.server.routes("GET", path, self) if self.server.routes else None
            if reply is None:
                reply = self.server.answer(path)
        except RequestError as e:
            reply = Reply(400, f"{e}\n".encode(), "text/plain; charset=utf-8", False)
        except StoreError as e:
            reply = Reply(502, f"{e}\n".encode(), "text/plain; charset=utf-8", False)
        except VolumeError as e:
            reply = Reply(500, f"{e}\n".encode(), "text/plain; charset=utf-8", False)
        if reply.status == ANSWERED:
            return
        if reply.status == 200:
            reply = self._ranged(reply)
        self._send(reply, body)

    def _ranged(self, reply: Reply) -> Reply:
        """A 206 slice of ``reply`` when the request asks for one byte range (several: the
        whole body, as RFC 9110 allows); 416 when it starts past the end."""
        m = _RANGE.match((self.headers.get("Range") or "").strip())
        if m is None or (not m.group(1) and not m.group(2)):
            return reply
        size = len(reply.body)
        if m.group(1):
            start = int(m.group(1))
            end = min(size, int(m.group(2)) + 1) if m.group(2) else size
        else:  # "bytes=-n": the last n bytes
            start, end = max(0, size - int(m.group(2))), size
        if start >= size or end <= start:
            return Reply(416, b"", "text/plain", False, (("Content-Range", f"bytes */{size}"),))
        return Reply(206, reply.body[start:end], reply.content_type, False,
                     (*reply.headers, ("Content-Range", f"bytes {start}-{end - 1}/{size}")))

    def _send(self, reply: Reply, body: bool) -> None:
        data = reply.body
        gzipped = (reply.compressible and len(data) >= GZIP_MIN_BYTES
                   and "gzip" in (self.headers.get("Accept-Encoding") or ""))
        if gzipped:
            data = gzip.compress(data, compresslevel=1)
        self.send_response(reply.status)
        self._cors()
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Accept-Ranges", "bytes")
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Vary", "Accept-Encoding")
        for k, v in reply.headers:
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def stream_events(self) -> None:
        """Hold a ``text/event-stream`` open (the Neuroglancer client's state channel) with a
        comment every 15 s, until the client leaves or the server stops."""
        self.send_response(200)
        self._cors()
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.close_connection = True
        try:
            self.wfile.write(b": cvl\n\n")
            self.wfile.flush()
            while not self.server.stopping.wait(15):
                self.wfile.write(b": keepalive\n\n")
                self.wfile.flush()
        except OSError:
            pass

    def answered(self) -> Reply:
        """What a route returns after it wrote the response itself."""
        return Reply(ANSWERED, b"")


__all__ = ["ANSWERED", "GZIP_MIN_BYTES", "ProxyHandler", "Reply", "Route", "VolumeServer", "served_info", "slug", "volume_names"]
