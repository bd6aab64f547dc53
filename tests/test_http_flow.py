"""How much the HTTP fetcher keeps in flight and how much it receives at once
(stores/http_fetch.py, stores/window.py): requests follow the server's latency, bodies follow
the network's round trip, and an answer that waits for room waits without a time limit."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.stores import parse_url
from cloudvolume_lite.stores.http import HTTPStore
from cloudvolume_lite.stores.http_fetch import LINK_BYTES_PER_S, MIN_IN_FLIGHT, RECEIVE_FLOOR, Fetcher, Reply
from cloudvolume_lite.stores.window import Bodies, Window
from fixtures_servers import LOOPBACK, Faults, RangeHTTPServer
from served_files import random_files


def _objects(root: Path, n: int, size: int) -> dict[str, bytes]:
    """{"/name": bytes} of ``n`` files of ``size`` random bytes, as the server's paths."""
    files = random_files(root, [f"f{size}_{i}" for i in range(n)], size, seed=size)
    return {"/" + name: data for name, data in files.items()}


def _fetch_all(f: Fetcher, objs: dict[str, bytes], expected: int | None = None) -> dict[str, bytes]:
    got = {}
    for tag, ans in f.fetch(((p, p, {}) for p in objs), expected):
        assert isinstance(ans, Reply) and ans.status == 200, ans
        got[tag] = bytes(ans.body)
    return got


def test_requests_in_flight_follow_the_servers_latency(faulty_http_server: RangeHTTPServer) -> None:
    objs = _objects(faulty_http_server.root, 96, 100_000)
    port = faulty_http_server.server_address[1]
    faulty_http_server.set_faults(Faults(latency=0.05))
    far = Fetcher("http", LOOPBACK, port, {}, (2, 5), limit=256)
    far.window.sample(0.05)  # as a careful read (the info's) reports it
    assert far.wanted(100_000) == pytest.approx(2 * 0.05 * LINK_BYTES_PER_S / 100_000, rel=0.01)
    faulty_http_server.reset_log()
    assert _fetch_all(far, objs, 100_000) == objs
    # connections are reused before new ones open: 96 of them means all 96 were in flight at
    # once (one round trip); a request resent after getting stuck on a loaded machine adds one
    assert len(faulty_http_server.log.peers) >= 96
    near = Fetcher("http", LOOPBACK, port, {}, (2, 5), limit=256)
    near.window.sample(1e-5)  # a server that answers at once needs few in flight
    assert near.wanted(100_000) == MIN_IN_FLIGHT
    faulty_http_server.set_faults(Faults())
    faulty_http_server.reset_log()
    assert _fetch_all(near, objs, 100_000) == objs
    # far fewer than the 96 above: the window starts at MIN_IN_FLIGHT and grows only as the
    # first bytes it measures take longer (on a loaded machine they do: 27 connections seen)
    assert len(faulty_http_server.log.peers) <= 48
    assert Fetcher("http", LOOPBACK, port, {}, (2, 5), limit=256, initial=40).wanted(1) == 40  # nothing known yet


def test_a_decoded_size_guess_does_not_shrink_the_first_wave(faulty_http_server: RangeHTTPServer) -> None:
    """The read guesses a chunk's decoded size (2 MiB); the compressed bodies are 5 kB. At 10 ms
    the guess alone would ask for 19 requests in flight; all 64 go out in the first round trip.

    The server answers after 50 ms while the window believes 10 ms: the first wave is sized
    from the 10 ms, and no answer frees a connection for reuse while the wave goes out, even
    when a loaded machine stalls the sender for tens of milliseconds (at 10 ms a CI run saw
    only 39 connections: the later bursts reused freed ones)."""
    objs = _objects(faulty_http_server.root, 64, 5_000)
    faulty_http_server.set_faults(Faults(latency=0.05))
    f = Fetcher("http", LOOPBACK, faulty_http_server.server_address[1], {}, (2, 5), limit=256)
    f.window.sample(0.01)
    assert f.wanted(2 << 20) < 64 <= f.wanted((2 << 20) / 4)
    faulty_http_server.reset_log()
    assert _fetch_all(f, objs, 2 << 20) == objs
    # all in flight at once, far above the 19 the guess alone allows
    assert len(faulty_http_server.log.peers) >= 60


def test_bodies_received_at_once_follow_the_round_trip() -> None:
    f = Fetcher("http", LOOPBACK, 1, {}, (2, 5), max_bytes=64 << 20)
    assert f.receiving() == 64 << 20  # no connection opened yet: all the budget
    f.window.connected(20e-6)  # loopback
    assert f.receiving() == RECEIVE_FLOOR
    f2 = Fetcher("http", LOOPBACK, 1, {}, (2, 5), max_bytes=64 << 20)
    f2.window.connected(0.005)  # 5 ms away: enough to keep 2 GB/s busy for two round trips
    assert f2.receiving() == int(2 * 0.005 * LINK_BYTES_PER_S)
    f2.window.connected(0.001)  # the quickest connection counts
    assert f2.receiving() == RECEIVE_FLOOR
    f3 = Fetcher("http", LOOPBACK, 1, {}, (2, 5), max_bytes=1 << 20)
    f3.window.connected(0.05)
    assert f3.receiving() == 1 << 20  # never more than max_bytes


def test_bodies_budget_admits_one_body_always_and_reuses_buffers() -> None:
    b = Bodies(lambda: 100, guess=7)
    assert b.likely() == 7
    assert b.admit(500)  # nothing held: one body bigger than the budget still comes
    assert not b.admit(1)
    buf = b.buffer(500)
    b.release(500, buf)
    assert b.held == 0 and b.buffer(500) is buf
    assert b.least() == 7 / 4  # requests in flight are sized for bodies smaller than the guess
    b.seen(10)
    b.seen(30)
    assert b.likely() == b.least() == 20 and b.peak == 500


def test_answers_waiting_for_room_never_time_out(faulty_http_server: RangeHTTPServer) -> None:
    """Bodies past the receive budget wait in the kernel while the caller is slow: longer than
    the read timeout, which is for a silent server, not for a busy caller."""
    objs = _objects(faulty_http_server.root, 10, 200_000)
    f = Fetcher("http", LOOPBACK, faulty_http_server.server_address[1], {}, (2, 0.3), limit=10, max_bytes=250_000)
    got = {}
    for tag, ans in f.fetch(((p, p, {}) for p in objs), 200_000):
        assert isinstance(ans, Reply) and ans.status == 200, ans
        got[tag] = bytes(ans.body)
        time.sleep(0.4)  # a slow caller: every other answer waits
    assert got == objs
    assert f.peak_bytes == 200_000  # one body at a time


def test_a_careful_read_tells_the_fetcher_the_servers_latency(faulty_http_server: RangeHTTPServer) -> None:
    (faulty_http_server.root / "obj").write_bytes(b"x" * 100)
    faulty_http_server.set_faults(Faults(latency=0.05))
    store = HTTPStore(parse_url(faulty_http_server.url))
    assert store.get("obj") == b"x" * 100
    fetcher = store._client.get().fast.fetcher
    assert fetcher is not None and fetcher.window.least_first_byte() >= 0.05


def test_default_requests_in_flight_and_parallel(faulty_http_server: RangeHTTPServer, tmp_path: Path) -> None:
    url = parse_url(faulty_http_server.url)
    assert HTTPStore(url)._client.get().fast.fetcher.window.limit == HTTPStore.default_in_flight == 512
    assert HTTPStore(url, parallel=32)._client.get().fast.fetcher.window.limit == 32  # parallel caps it
    truth = np.arange(64 * 64 * 64, dtype=np.uint8).reshape(64, 64, 64, 1)
    with cvl.Volume.create(f"file://{faulty_http_server.root}/v", data_type="uint8", layer_type="image",
                           size=(64, 64, 64), chunk_size=(16, 16, 16), resolution=(1, 1, 1)) as w:
        w[...] = truth
    with cvl.Volume(f"{faulty_http_server.url}/v") as vol:
        assert vol.parallel == 128  # the Volume's threads are not the fetcher's requests
        np.testing.assert_array_equal(vol[...], truth)


def test_window_samples_do_not_grow_it() -> None:
    w = Window(limit=64, initial=8)
    assert w.least_first_byte() is None
    w.sample(0.2)
    w.sample(0.1)
    assert w.size == 8 and w.least_first_byte() == 0.1
    w.healthy(0.3)
    assert w.size == 9 and w.least_first_byte() == 0.1


def test_queueing_at_the_server_does_not_pass_for_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that answers one request at a time: once every request waits behind others,
    each first byte is mostly queue. The latency stays the quickest first byte of the last
    LATENCY_SPAN seconds (before: of the last 64 answers, so 2 ms became 30 ms, which asked for
    sixteen times the requests in flight, which made the queue longer still)."""
    from cloudvolume_lite.stores import window as window_module

    clock = [100.0]
    monkeypatch.setattr(window_module.time, "monotonic", lambda: clock[0])
    w = Window(limit=512, initial=16)
    w.sample(0.002)  # the info's careful read, nothing queued yet
    for _ in range(200):
        clock[0] += 0.001
        w.healthy(0.03)
    assert w.least_first_byte() == 0.002
    f = Fetcher("http", LOOPBACK, 1, {}, (2, 5), limit=512)
    f.window = w
    assert f.wanted(262_144) == MIN_IN_FLIGHT * 2 - 1  # 31 for 2 ms, not 458 for 30 ms
    clock[0] += window_module.LATENCY_SPAN + 1  # a server that really got slower is followed, later
    w.healthy(0.05)
    assert w.least_first_byte() == 0.05


def test_the_first_wave_takes_the_guess_itself_where_round_trips_are_short() -> None:
    """Before any body is seen, requests in flight are sized for a quarter of the guessed body
    (a compressed chunk is smaller than its decoded size): but under SHORT_LATENCY a round trip
    to learn the real sizes costs little, and four times the connections do not."""
    from cloudvolume_lite.stores.window import SHORT_LATENCY

    b = Bodies(lambda: 100, guess=1 << 20)
    assert b.least(None) == b.least(0.1) == (1 << 20) / 4
    assert b.least(SHORT_LATENCY / 2) == 1 << 20
    b.seen(1000)
    assert b.least(SHORT_LATENCY / 2) == b.least(0.1) == 1000
