"""Requests in flight adapt to the server, and every request has an end.

Servers here are real and on 127.0.0.1: the standard library's ``python -m http.server`` in
its own process (a listen backlog of 5, a new connection per request), a server that throttles
with 503s, and one that trickles its answer two bytes at a time.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.stores.http import HTTPStore
from cloudvolume_lite.stores.http_fetch import Failure, Fetcher
from cloudvolume_lite.stores.url import parse_url
from cloudvolume_lite.stores.window import STUCK_FLOOR, Window
from fixtures_servers import LOOPBACK, Faults, RangeHTTPServer


# -- the window on its own ------------------------------------------------------------------
def test_window_grows_while_healthy_and_halves_on_overload() -> None:
    w = Window(limit=100, initial=4)
    assert w.size == 4
    for _ in range(20):
        w.healthy(0.01)
    assert w.size == 24  # slow start: one more per healthy answer
    sent = time.monotonic()
    w.congested(sent)
    assert w.size == 12 and w.cuts == 1
    w.congested(sent - 1)  # sent before the cut: the same overload, reported late
    assert w.size == 12 and w.cuts == 1
    for _ in range(14):
        w.healthy(0.01)
    assert w.size == 13  # past the first overload: about one more per window of answers
    for _ in range(10_000):
        w.healthy(0.01)
    assert w.size == 100  # never past the limit
    for _ in range(20):
        w.congested(time.monotonic())
    assert w.size == 1  # never below one


def test_window_is_a_semaphore_whose_size_moves() -> None:
    w = Window(limit=8, initial=2)
    assert w.acquire(blocking=False) and w.acquire(blocking=False)
    assert not w.acquire(blocking=False)
    w.healthy(0.01)  # room for one more
    assert w.acquire(blocking=False)
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(w.acquire(timeout=5)))
    t.start()
    time.sleep(0.05)
    assert not got  # waits for a place
    w.release()
    t.join(5)
    assert got == [True] and w.in_flight == 3


def test_stuck_needs_history_and_two_stuck_requests_are_overload() -> None:
    w = Window(limit=64, initial=32)
    assert w.stuck_after() is None  # no answers seen: only timeouts judge
    for _ in range(10):
        w.healthy(0.002)
    assert w.stuck_after() == STUCK_FLOOR
    for _ in range(64):
        w.healthy(0.5)
    assert w.stuck_after() == pytest.approx(4.0)  # eight times the usual first-byte time
    size = w.size
    w.stuck(time.monotonic())
    assert w.size == size  # one slow answer is forgiven
    w.stuck(time.monotonic())
    assert w.size == size // 2


# -- Python's own http.server -----------------------------------------------------------------
@pytest.fixture
def stdlib_server(tmp_path: Path) -> Iterator[str]:
    """``python -m http.server`` on loopback, serving ``tmp_path``, in its own process."""
    proc = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", LOOPBACK,
                             "--directory", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        port = int(re.search(r"port (\d+)", line).group(1))  # type: ignore[union-attr]
        yield f"http://{LOOPBACK}:{port}"
    finally:
        proc.kill()
        proc.wait()


def test_python_http_server_is_read_exactly_without_a_storm(stdlib_server: str, tmp_path: Path) -> None:
    """At the default (128 requests in flight) this server drops the connections it has no
    room to accept, and a read took 62 s instead of 5; now the window shrinks to what it takes."""
    truth = np.random.default_rng(3).integers(0, 255, (256, 256, 256, 1), dtype=np.uint8)
    w = cvl.Volume.create(f"file://{tmp_path}/v", data_type="uint8", layer_type="image", size=truth.shape[:3],
                          chunk_size=(32, 32, 32), resolution=(1, 1, 1))
    w[...] = truth
    vol = cvl.Volume(f"{stdlib_server}/v")
    assert vol.parallel == 128
    np.testing.assert_array_equal(vol[...], truth)
    window = vol.chunk_store()._client.get().fast.fetcher.window
    assert window.cuts >= 1 and window.size < 128  # it noticed, and holds back
    np.testing.assert_array_equal(vol[...], truth)  # and a second read with what it learnt


def test_throttling_shrinks_the_window(faulty_http_server: RangeHTTPServer) -> None:
    for i in range(40):
        (faulty_http_server.root / f"o{i}").write_bytes(bytes([i]) * 1000)
    f = Fetcher("http", LOOPBACK, faulty_http_server.server_address[1], {}, (2, 5), limit=64)
    assert f.window.size == 64  # it starts open: the server has not said anything yet
    faulty_http_server.set_faults(Faults(always="503"))
    got = dict(f.fetch((f"/o{i}", f"/o{i}", {}) for i in range(40)))
    assert all(r.status == 503 for r in got.values())  # type: ignore[union-attr]
    assert f.window.size < 64 and f.window.cuts >= 1
    faulty_http_server.set_faults(Faults())
    before = f.window.size
    bodies = {tag: bytes(r.body) for tag, r in f.fetch((f"/o{i}", f"/o{i}", {}) for i in range(40))}  # type: ignore[union-attr]
    assert bodies == {f"/o{i}": bytes([i]) * 1000 for i in range(40)}
    assert f.window.size > before  # healthy answers: it grows again


# -- every request has an end -------------------------------------------------------------------
class Trickle:
    """Answers every request with a 200 whose body comes two bytes per second (forever)."""

    def __init__(self) -> None:
        self.sock = socket.create_server((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                while not self.stop.is_set():
                    conn.sendall(b"..")
                    time.sleep(0.5)
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def trickle() -> Iterator[Trickle]:
    t = Trickle()
    yield t
    t.close()


def test_a_trickling_server_ends_with_a_named_error(trickle: Trickle) -> None:
    url = f"http://{LOOPBACK}:{trickle.port}/vol"
    t = time.monotonic()
    with pytest.raises(cvl.StoreError, match=rf"GET {re.escape(url)}/info failed.*time limit.*timeout="):
        cvl.Volume(url, timeout=1.5)
    assert time.monotonic() - t < 10
    # the streamed path (many chunks at once) has the same end
    store = HTTPStore(parse_url(url), retry=cvl.RetryPolicy(deadline=1.5))
    t = time.monotonic()
    with pytest.raises(cvl.StoreError, match=rf"GET {re.escape(url)}/c\d failed.*too slowly.*timeout="):
        dict(store.iter_get([f"c{i}" for i in range(6)]))
    assert time.monotonic() - t < 10


def test_fetcher_failure_after_its_deadline_is_final(trickle: Trickle) -> None:
    f = Fetcher("http", LOOPBACK, trickle.port, {}, (2, 5), limit=4, deadline=1.0)
    got = dict(f.fetch((p, p, {}) for p in ("/a", "/b")))
    assert all(isinstance(r, Failure) and r.final and "within 1 s" in r.reason for r in got.values())


def test_the_default_deadline_is_about_two_minutes() -> None:
    policy = cvl.RetryPolicy()
    # a silent server costs one read timeout on the fast path and one on the careful path
    assert policy.deadline == 120 and policy.read_timeout == 60
    assert cvl.Volume.__init__.__kwdefaults__["timeout"] is None  # None: the policy's deadline


def test_retry_errors_name_an_argument_that_exists(faulty_http_server: RangeHTTPServer) -> None:
    (faulty_http_server.root / "v").mkdir()
    (faulty_http_server.root / "v" / "info").write_text("{}")
    faulty_http_server.set_faults(Faults(always="503"))
    policy = cvl.RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.002)
    with pytest.raises(cvl.StoreError, match=r"after 2 attempts.*Volume\(\.\.\., retry=cvl\.RetryPolicy\(attempts=N\)\)"):
        cvl.Volume(f"{faulty_http_server.url}/v", retry=policy)
    faulty_http_server.set_faults(Faults())
    with pytest.raises(cvl.InfoError):  # the argument is taken, and the store uses that policy
        cvl.Volume(f"{faulty_http_server.url}/v", retry=policy)
    with pytest.raises(cvl.RequestError, match="retry must be a cvl.RetryPolicy"):
        cvl.Volume(f"{faulty_http_server.url}/v", retry=3)  # type: ignore[arg-type]
    with pytest.raises(cvl.RequestError, match="timeout must be"):
        cvl.Volume(f"{faulty_http_server.url}/v", timeout=-1)


@pytest.mark.parametrize("bad", ["8", 2.5, 0, -3, [4]])
def test_parallel_true_is_the_default_and_nonsense_is_an_error(tmp_path: Path, bad: object) -> None:
    cvl.Volume.create(f"file://{tmp_path}/v", data_type="uint8", layer_type="image", size=(8, 8, 8),
                      chunk_size=(8, 8, 8), resolution=(1, 1, 1))
    assert cvl.Volume(f"file://{tmp_path}/v", parallel=True).parallel == cvl.Volume(f"file://{tmp_path}/v").parallel
    with pytest.raises(cvl.RequestError, match="parallel must be"):
        cvl.Volume(f"file://{tmp_path}/v", parallel=bad)  # type: ignore[arg-type]
