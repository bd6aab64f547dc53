"""A fault-injecting proxy in front of the S3 server: flipped bytes, short bodies, bad
Content-Length, 503s and resets. Reads give exact data or a named error, never wrong voxels."""

from __future__ import annotations

import random
import re
import socket
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import requests

import cloudvolume_lite as cvl
from cloudvolume_lite.stores import StoreRegistry
from cloudvolume_lite.stores.retry import RetryPolicy
from cloudvolume_lite.stores.s3 import S3Store
from oracles import random_volume, fixture_write


class FaultProxy(ThreadingHTTPServer):
    """Forwards to ``upstream``; a share of whole-object GETs come back damaged."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, upstream: str, rate: float, kinds: tuple[str, ...], seed: int = 0):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream, self.rate, self.kinds = upstream, rate, kinds
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.injected: dict[str, int] = {}
        self.requests = 0
        self.seen: list[tuple[str, str, str | None]] = []  # (method, path, Authorization)
        self.session = requests.Session()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def pick(self, method: str) -> str | None:
        with self.lock:
            self.requests += 1
            if method != "GET" or self.rng.random() >= self.rate:
                return None
            kind = self.rng.choice(self.kinds)
            self.injected[kind] = self.injected.get(kind, 0) + 1
            return kind


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def log_message(self, *a: object) -> None:
        pass

    def _forward(self) -> None:
        with self.server.lock:
            self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        up = self.server.session.request(self.command, self.server.upstream + self.path, data=body, headers=headers,
                                         allow_redirects=False, stream=True)
        data = up.raw.read(decode_content=False)
        fault = self.server.pick(self.command) if up.status_code in (200, 206) and len(data) > 8 else None
        if fault == "503":
            return self._plain(503, b"slow down")
        if fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return self._hang_up()
        sent = data
        if fault == "flip":
            i = self.server.rng.randrange(len(data))
            sent = data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1 :]
        self.send_response(up.status_code)
        for k, v in up.headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(k, v)
        if fault == "short":  # a body cut short, announced at full length
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(sent[: len(sent) // 2])
            return self._hang_up()
        if fault == "badlength":  # a Content-Length that undercounts: the tail is dropped
            self.send_header("Content-Length", str(len(data) - 3))
            self.end_headers()
            self.wfile.write(sent[: len(data) - 3])
            return
        self.send_header("Content-Length", str(len(sent)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(sent)

    def _hang_up(self) -> None:
        """Really close: the handler's file objects would otherwise keep the socket open."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _forward


SHARDING = dict(preshift_bits=1, hash="murmurhash3_x86_128", minishard_bits=2, shard_bits=2,
                minishard_index_encoding="gzip", data_encoding="gzip")


@pytest.fixture(params=["unsharded", "sharded"])
def s3_volume(request, tmp_path, s3_client, s3_bucket, rng):
    request.node.sharded = request.param == "sharded"
    truth = random_volume((64, 48, 24, 1), "uint16", rng)
    fixture_write(tmp_path / "v", truth, chunk=(16, 16, 8), sharding=SHARDING if request.param == "sharded" else None)
    for path in (tmp_path / "v").rglob("*"):
        if path.is_file():
            s3_client.put_object(Bucket=s3_bucket, Key=f"v/{path.relative_to(tmp_path / 'v')}", Body=path.read_bytes())
    return truth


def _volume(proxy: FaultProxy, bucket: str, secrets: dict, attempts: int = 10) -> cvl.Volume:
    policy = RetryPolicy(attempts=attempts, base_delay=0.002, max_delay=0.02, connect_timeout=2, read_timeout=5)
    reg = StoreRegistry().with_scheme("s3", partial(S3Store, retry=policy))
    return cvl.Volume(f"s3://{bucket}/v", secrets={**secrets, "endpoint_url": proxy.url}, stores=reg)


def test_damaged_transfers_never_become_wrong_voxels(request, s3_volume, s3_endpoint, s3_bucket, s3_secrets, rng):
    truth = s3_volume
    # ranged reads (shards) carry no checksum, so flipped bytes there are the next test's business
    kinds = ("short", "badlength", "503", "reset") if request.node.sharded else ("flip", "short", "badlength", "503", "reset")
    proxy = FaultProxy(s3_endpoint, rate=0.3, kinds=kinds, seed=1)
    try:
        vol = _volume(proxy, s3_bucket, s3_secrets)
        reads = 0
        # sharded reads batch chunks by shard (few requests each), so they take more rounds to
        # meet enough faults
        for _ in range(10 if request.node.sharded else 3):
            np.testing.assert_array_equal(vol[...], truth)
            reads += 1
            lo = [int(rng.integers(0, s - 8)) for s in truth.shape[:3]]
            hi = [int(rng.integers(l + 1, s + 1)) for l, s in zip(lo, truth.shape[:3])]
            np.testing.assert_array_equal(vol[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]],
                                          truth[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]])
            reads += 1
        pts = np.stack([rng.integers(0, s, 500) for s in truth.shape[:3]], 1)
        np.testing.assert_array_equal(vol.scattered_points(pts), truth[pts[:, 0], pts[:, 1], pts[:, 2], 0])
        print(f"faults injected {proxy.injected} over {proxy.requests} requests; {reads} reads + 500 points exact")
        assert sum(proxy.injected.values()) > 20
        assert request.node.sharded or proxy.injected.get("flip", 0) > 0
    finally:
        proxy.shutdown()


def test_always_damaged_is_a_named_error(s3_volume, s3_endpoint, s3_bucket, s3_secrets):
    proxy = FaultProxy(s3_endpoint, rate=1.0, kinds=("flip",), seed=2)
    try:
        with pytest.raises(cvl.StoreError, match="attempt") as e:
            _volume(proxy, s3_bucket, s3_secrets, attempts=3)[0:16, 0:16, 0:8]
        assert re.search("MD5|checksum", str(e.value)) and "testing-secret-key" not in str(e.value)
    finally:
        proxy.shutdown()


def test_flipped_bytes_in_ranged_reads_are_caught_or_harmless(s3_endpoint, s3_client, s3_bucket, s3_secrets, tmp_path, rng):
    """S3 sends no checksum with a byte range. With gzip inside the shards (data and indices),
    a flipped byte is caught (CRC) and re-read; the answer is exact or a DecodeError naming the shard."""
    truth = random_volume((64, 48, 24, 1), "uint16", rng)
    fixture_write(tmp_path / "v", truth, chunk=(16, 16, 8), sharding=SHARDING)
    for path in (tmp_path / "v").rglob("*"):
        if path.is_file():
            s3_client.put_object(Bucket=s3_bucket, Key=f"v/{path.relative_to(tmp_path / 'v')}", Body=path.read_bytes())
    proxy = FaultProxy(s3_endpoint, rate=0.1, kinds=("flip",), seed=3)
    outcomes = {"exact": 0, "DecodeError": 0}
    try:
        for _ in range(6):
            try:
                got = _volume(proxy, s3_bucket, s3_secrets)[...]
            except cvl.DecodeError as e:
                assert ".shard" in str(e) or "info" in str(e)
                outcomes["DecodeError"] += 1
                continue
            np.testing.assert_array_equal(got, truth)  # never wrong voxels
            outcomes["exact"] += 1
        assert proxy.injected.get("flip", 0) > 0 and outcomes["exact"] > 0
    finally:
        proxy.shutdown()
