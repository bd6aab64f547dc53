"""The one-thread HTTP fetcher (stores/http_fetch.py) and HTTPStore.iter_get on top of it, against
servers on 127.0.0.1: the Range-capable test server (plain and TLS) and a scripted server that
answers the unusual ways real servers do (chunked framing, HTTP/1.0, Connection: close,
redirects, silence)."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.errors import StoreError
from cloudvolume_lite.runtime import Runtime
from cloudvolume_lite.stores import StoreRegistry, parse_url
from cloudvolume_lite.stores.http import HTTPStore
from cloudvolume_lite.stores.http_fetch import Failure, Fetcher, Reply
from cloudvolume_lite.stores.retry import RetryPolicy
from fixtures_servers import LOOPBACK, Faults, RangeHTTPServer

FAST = RetryPolicy(attempts=3, base_delay=0.005, max_delay=0.02, connect_timeout=2, read_timeout=5)


def blob(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def fetch_all(fetcher: Fetcher, paths: list[str]) -> dict[str, Reply | Failure]:
    """Every answer, bodies copied (a body buffer is reused once the next answer is asked for)."""
    out: dict[str, Reply | Failure] = {}
    for tag, ans in fetcher.fetch((p, p, {}) for p in paths):
        assert tag not in out
        if isinstance(ans, Reply):
            ans = Reply(ans.status, ans.reason, dict(ans.headers), bytes(ans.body))
        out[tag] = ans  # type: ignore[index]
    return out


@pytest.fixture
def files(tmp_path: Path) -> dict[str, bytes]:
    """Objects of awkward sizes: empty, one byte, around buffer sizes, a few hundred KiB."""
    sizes = [0, 1, 100, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 65_536, 262_144, 300_001]
    out = {}
    for i, n in enumerate(sizes * 3):
        data = blob(n, i)
        (tmp_path / f"o{i}").write_bytes(data)
        out[f"/o{i}"] = data
    return out


def test_fetcher_reads_every_size_exactly(faulty_http_server: RangeHTTPServer, files: dict[str, bytes]) -> None:
    for width in (1, 4, 64):
        f = Fetcher("http", LOOPBACK, faulty_http_server.server_address[1], {}, (2, 5), limit=width)
        got = fetch_all(f, [*files, "/absent"])
        assert {p: r.body for p, r in got.items() if p != "/absent"} == files  # type: ignore[union-attr]
        assert all(r.status == 200 for p, r in got.items() if p != "/absent")  # type: ignore[union-attr]
        assert got["/absent"].status == 404  # type: ignore[union-attr]
    # connections were kept and reused: at most `width` were ever open at once
    assert len(faulty_http_server.log.peers) <= 64


def test_fetcher_never_opens_more_than_width(faulty_http_server: RangeHTTPServer, files: dict[str, bytes]) -> None:
    store = HTTPStore(parse_url(faulty_http_server.url), parallel=3, retry=FAST)
    keys = [p[1:] for p in files] * 2
    faulty_http_server.reset_log()
    got = dict(store.iter_get(keys))
    assert got == {p[1:]: d for p, d in files.items()}
    assert 1 <= len(faulty_http_server.log.peers) <= 3
    assert faulty_http_server.log.count("GET") == len(keys)
    # four threads reading at once share the same three requests in flight
    faulty_http_server.reset_log()
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda _: dict(store.iter_get(keys)), range(4)))
    assert all(r == got for r in results)
    assert len(faulty_http_server.log.peers) <= 3


def test_connections_the_server_closed_are_replaced(faulty_http_server: RangeHTTPServer, files: dict[str, bytes]) -> None:
    store = HTTPStore(parse_url(faulty_http_server.url), parallel=8, retry=FAST)
    keys = [p[1:] for p in files]
    assert dict(store.iter_get(keys)) == {k: files["/" + k] for k in keys}
    faulty_http_server.drop_connections()  # every kept-alive connection is now dead
    time.sleep(0.1)
    faulty_http_server.reset_log()
    assert dict(store.iter_get(keys)) == {k: files["/" + k] for k in keys}
    assert faulty_http_server.log.count("GET") == len(keys)  # resent on new connections, no retries


def test_closing_early_leaves_the_store_usable(faulty_http_server: RangeHTTPServer, files: dict[str, bytes]) -> None:
    store = HTTPStore(parse_url(faulty_http_server.url), parallel=4, retry=FAST)
    keys = [p[1:] for p in files]
    it = store.iter_get(keys)
    first = next(it)
    assert first[1] == files["/" + first[0]]
    it.close()  # the busy connections are closed mid-answer
    assert dict(store.iter_get(keys)) == {k: files["/" + k] for k in keys}


def test_flaky_server_through_iter_get(faulty_http_server: RangeHTTPServer, files: dict[str, bytes]) -> None:
    """Resets, truncated bodies and 5xx answers: each such key is done again by ``get``."""
    faulty_http_server.set_faults(Faults(rate=0.4, kinds=("503", "429", "reset", "truncate", "500"), seed=5))
    store = HTTPStore(parse_url(faulty_http_server.url), parallel=6, retry=RetryPolicy(attempts=6, base_delay=0.005, max_delay=0.02))
    keys = [p[1:] for p in files]
    assert dict(store.iter_get(keys)) == {k: files["/" + k] for k in keys}
    assert faulty_http_server.log.faults > 5


def test_silent_server_times_out_with_a_named_error(faulty_http_server: RangeHTTPServer, files: dict[str, bytes]) -> None:
    faulty_http_server.set_faults(Faults(always="slow", stall=3.0))
    policy = RetryPolicy(attempts=2, base_delay=0.005, max_delay=0.01, connect_timeout=1, read_timeout=0.3)
    store = HTTPStore(parse_url(faulty_http_server.url), parallel=4, retry=policy)
    t = time.monotonic()
    with pytest.raises(StoreError, match=r"GET http://127\.0\.0\.1:\d+/o\d+ failed.*after 2 attempts"):
        dict(store.iter_get(["o1", "o2", "o3"]))
    assert time.monotonic() - t < 3


def test_refused_connections_give_a_named_error() -> None:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port = s.getsockname()[1]  # nobody listens here once closed
    f = Fetcher("http", LOOPBACK, port, {}, (1, 1), limit=2)
    got = fetch_all(f, ["/a", "/b"])
    assert all(isinstance(r, Failure) and "refused" in r.reason.lower() for r in got.values())
    store = HTTPStore(parse_url(f"http://{LOOPBACK}:{port}/v"), retry=FAST)
    with pytest.raises(StoreError, match=rf"GET http://127\.0\.0\.1:{port}/v/[ab] failed.*after 3 attempts"):
        dict(store.iter_get(["a", "b"]))


def test_a_proxy_setting_turns_the_fetcher_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through a proxy, requests go by the urllib3 pool, which speaks to proxies."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    store = HTTPStore(parse_url("http://data.invalid/v"))
    assert store._client.get().fast.fetcher is None  # no request is made here
    monkeypatch.setenv("NO_PROXY", "data.invalid")
    assert HTTPStore(parse_url("http://data.invalid/v"))._client.get().fast.fetcher is not None


def test_iterator_errors_reach_the_caller() -> None:
    def items() -> Iterator[int]:
        yield 1
        raise StoreError("the store failed while fetching")

    seen: list[int] = []
    with pytest.raises(StoreError, match="while fetching"):
        Runtime(2).run(seen.append, items(), 2)


# -- a server that answers the unusual ways --------------------------------------------------------
class ScriptedServer:
    """``/plain/N``: Content-Length; ``/chunked/N``: chunked framing; ``/http10/N``: HTTP/1.0,
    body ends at close; ``/close/N``: Connection: close; ``/redirect/N``: 302 to /plain/N;
    ``/stall/N``: never answers. The body of N is ``blob(5000 + N, N)``."""

    def __init__(self) -> None:
        self.sock = socket.create_server((LOOPBACK, 0))
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._answer(conn)
        except (ConnectionResetError, BrokenPipeError):
            pass  # the client hung up on an answer it had no use for (chunked framing, say)

    def _answer(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                self.requests += 1
                kind, n = head.split(b" ")[1].decode().strip("/").split("/")
                body = blob(5000 + int(n), int(n))
                if kind == "plain":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                elif kind == "chunked":
                    parts = [body[i: i + 1000] for i in range(0, len(body), 1000)]
                    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
                    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + out)
                elif kind == "http10":
                    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + body)
                    return
                elif kind == "close":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                    return
                elif kind == "redirect":
                    conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /plain/%s\r\nContent-Length: 0\r\n\r\n" % n.encode())
                else:
                    time.sleep(30)
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    yield srv
    srv.close()


def test_unusual_answers_still_read_exactly(scripted: ScriptedServer) -> None:
    store = HTTPStore(parse_url(f"http://{LOOPBACK}:{scripted.port}"), parallel=4, retry=FAST)
    keys = [f"{kind}/{n}" for kind in ("plain", "chunked", "http10", "close", "redirect") for n in range(4)]
    got = dict(store.iter_get(keys))
    assert got == {k: blob(5000 + int(k.split("/")[1]), int(k.split("/")[1])) for k in keys}


def test_fetcher_hands_back_what_it_does_not_frame(scripted: ScriptedServer) -> None:
    f = Fetcher("http", LOOPBACK, scripted.port, {}, (1, 0.3), limit=6)
    got = fetch_all(f, ["/plain/1", "/chunked/1", "/http10/1", "/close/1", "/redirect/1", "/stall/1"])
    assert got["/plain/1"].body == got["/close/1"].body == blob(5001, 1)  # type: ignore[union-attr]
    assert got["/redirect/1"].status == 302  # type: ignore[union-attr]
    assert "Content-Length" in got["/chunked/1"].reason and "Content-Length" in got["/http10/1"].reason  # type: ignore[union-attr]
    assert "no answer within 0.3 s" in got["/stall/1"].reason  # type: ignore[union-attr]


# -- TLS -----------------------------------------------------------------------------------------------
def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cvl test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[RangeHTTPServer, Path]]:
    cert, key = _self_signed(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    srv = RangeHTTPServer(root)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.start()
    yield srv, cert
    srv.stop()


def test_https_volume_reads_exactly(https_server: tuple[RangeHTTPServer, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    srv, cert = https_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    truth = np.random.default_rng(1).integers(0, 2**16, (40, 36, 20, 1), dtype=np.uint16)
    with cvl.Volume.create(f"file://{srv.root}/v", data_type="uint16", layer_type="image", size=truth.shape[:3],
                           chunk_size=(16, 16, 8), resolution=(1, 1, 1)) as w:
        w[...] = truth
    url = f"https://{LOOPBACK}:{srv.server_address[1]}/v"
    with cvl.Volume(url, parallel=5) as vol:
        assert np.array_equal(vol[...], truth)
        assert np.array_equal(vol[3:30, 5:20, 1:19], truth[3:30, 5:20, 1:19])
    srv.reset_log()
    with cvl.Volume(url, parallel=5, lru_bytes=0) as vol:
        vol[...]
    assert len(srv.log.peers) <= 5 + 1  # the fetcher's 5, and the pool connection that read the info


def test_https_with_an_untrusted_certificate_fails_clearly(https_server: tuple[RangeHTTPServer, Path]) -> None:
    srv, _ = https_server
    for i in range(3):
        (srv.root / f"k{i}").write_bytes(b"x")
    store = HTTPStore(parse_url(f"https://{LOOPBACK}:{srv.server_address[1]}"), retry=FAST)
    with pytest.raises(StoreError, match=r"GET https://127\.0\.0\.1:\d+/k\d failed.*(CERTIFICATE_VERIFY_FAILED|certificate)"):
        dict(store.iter_get(["k0", "k1", "k2"]))


def test_https_store_registry_passes_the_retry_policy(https_server: tuple[RangeHTTPServer, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from functools import partial

    srv, cert = https_server
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    (srv.root / "a").write_bytes(b"abc")
    reg = StoreRegistry().with_scheme("https", partial(HTTPStore, retry=FAST))
    store = reg.open(f"https://{LOOPBACK}:{srv.server_address[1]}")
    assert dict(store.iter_get(["a", "b"])) == {"a": b"abc", "b": None}


def test_forked_children_open_their_own_connections(faulty_http_server: RangeHTTPServer) -> None:
    """A Volume made before a fork (a DataLoader worker, say) reads exactly in the children
    while the parent reads too: nobody shares a kept-alive socket or a dead thread pool."""
    import multiprocessing

    truth = np.random.default_rng(4).integers(0, 2**16, (48, 40, 24, 1), dtype=np.uint16)
    with cvl.Volume.create(f"file://{faulty_http_server.root}/fork", data_type="uint16", layer_type="image",
                           size=truth.shape[:3], chunk_size=(16, 16, 8), resolution=(1, 1, 1)) as w:
        w[...] = truth
    vol = cvl.Volume(f"{faulty_http_server.url}/fork", parallel=4)
    assert np.array_equal(vol[...], truth)  # the parent now holds idle connections and threads
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()

    def child() -> None:
        results.put(all(np.array_equal(vol[...], truth) for _ in range(4)))

    procs = [ctx.Process(target=child) for _ in range(2)]
    for p in procs:
        p.start()
    try:
        for _ in range(4):
            assert np.array_equal(vol[...], truth)
        assert [results.get(timeout=30) for _ in procs] == [True, True]  # a child that hangs fails here
        for p in procs:
            p.join(timeout=10)
            assert p.exitcode == 0
    finally:
        for p in procs:
            p.kill()
        vol.close()


def test_bodies_in_flight_stay_within_the_byte_budget(faulty_http_server: RangeHTTPServer, tmp_path: Path) -> None:
    """At most ``max_bytes`` of bodies are held at once; requests go out while the bodies they
    will bring stay within PROMISE_FACTOR times that (the rest wait in the kernel)."""
    big = {f"/b{i}": blob(300_000, i) for i in range(24)}
    for p, d in big.items():
        (tmp_path / p[1:]).write_bytes(d)
    port = faulty_http_server.server_address[1]
    faulty_http_server.set_faults(Faults(latency=0.02))  # so that requests overlap
    for budget, expected, most in ((700_000, 300_000, 4), (700_000, None, 4), (64 * 2**20, 300_000, 16)):
        faulty_http_server.reset_log()
        f = Fetcher("http", LOOPBACK, port, {}, (2, 5), limit=16, max_bytes=budget)
        got = {}
        for tag, ans in f.fetch(((p, p, {}) for p in big), expected):
            got[tag] = bytes(ans.body)  # type: ignore[union-attr]
        assert got == big
        f.close()
        peers = len(faulty_http_server.log.peers)  # connections are reused: peers = most in flight
        assert peers <= most and (most == 4 or peers > 8), (budget, expected, peers)
        assert 300_000 <= f.peak_bytes <= budget, (budget, f.peak_bytes)


def test_a_guess_too_big_costs_no_round_trip(faulty_http_server: RangeHTTPServer, tmp_path: Path) -> None:
    """A compressed chunk's body is far smaller than the decoded size the read guesses: the
    first requests go out as if the guess were twice the budget, so all of them fit."""
    small = {f"/s{i}": blob(5_000, i) for i in range(32)}
    for p, d in small.items():
        (tmp_path / p[1:]).write_bytes(d)
    faulty_http_server.set_faults(Faults(latency=0.05))
    faulty_http_server.reset_log()
    f = Fetcher("http", LOOPBACK, faulty_http_server.server_address[1], {}, (2, 5), limit=64, max_bytes=1 << 20,
                initial=64)
    t0 = time.monotonic()
    got = {tag: bytes(ans.body) for tag, ans in f.fetch(((p, p, {}) for p in small), 64 << 10)}  # type: ignore[union-attr]
    assert got == small
    assert len(faulty_http_server.log.peers) == 32  # all in flight at once: one round trip
    assert time.monotonic() - t0 < 10  # (a sanity bound only; speed is not what is tested)
    f.close()


def test_points_over_http_stream_whole_chunks(faulty_http_server: RangeHTTPServer) -> None:
    rng = np.random.default_rng(8)
    truth = (rng.integers(0, 40, (64, 48, 32, 1)) * 2**40).astype(np.uint64)
    root = faulty_http_server.root
    with cvl.Volume.create(f"file://{root}/pts", data_type="uint64", layer_type="segmentation", size=truth.shape[:3],
                           chunk_size=(16, 16, 8), resolution=(1, 1, 1), encoding="compressed_segmentation") as w:
        w[...] = truth
    pts = rng.integers(0, (64, 48, 32), (3000, 3))
    url = f"{faulty_http_server.url}/pts"
    faulty_http_server.reset_log()
    with cvl.Volume(url, parallel=6) as vol:
        np.testing.assert_array_equal(vol.scattered_points(pts), truth[pts[:, 0], pts[:, 1], pts[:, 2], 0])
    assert len(faulty_http_server.log.peers) <= 6 + 1  # the fetcher's six, and the info read's
    (root / "pts" / "1_1_1" / "16-32_0-16_0-8").unlink()
    with pytest.raises(cvl.ChunkNotFoundError, match=r"http://127\.0\.0\.1:\d+/pts/1_1_1/16-32_0-16_0-8 is missing"):
        cvl.Volume(url).scattered_points(pts)
    got = cvl.Volume(url, fill_missing=True).scattered_points(pts)
    lost = (pts[:, 0] // 16 == 1) & (pts[:, 1] // 16 == 0) & (pts[:, 2] // 8 == 0)
    assert lost.any() and not got[lost].any()
    np.testing.assert_array_equal(got[~lost], truth[pts[~lost, 0], pts[~lost, 1], pts[~lost, 2], 0])


def test_lru_and_disk_cache_sit_in_front_of_the_stream(faulty_http_server: RangeHTTPServer, tmp_path: Path) -> None:
    truth = np.random.default_rng(9).integers(0, 255, (48, 48, 16, 1), dtype=np.uint8)
    with cvl.Volume.create(f"file://{faulty_http_server.root}/c", data_type="uint8", layer_type="image",
                           size=truth.shape[:3], chunk_size=(16, 16, 8), resolution=(1, 1, 1)) as w:
        w[...] = truth
    url = f"{faulty_http_server.url}/c"
    with cvl.Volume(url, lru_bytes=2**20, cache=str(tmp_path / "cache")) as vol:
        faulty_http_server.reset_log()
        np.testing.assert_array_equal(vol[...], truth)
        assert faulty_http_server.log.count("GET") == 18
        np.testing.assert_array_equal(vol[5:40, 3:30, 2:15], truth[5:40, 3:30, 2:15])  # from the LRU
        assert faulty_http_server.log.count("GET") == 18
    with cvl.Volume(url, cache=str(tmp_path / "cache"), recheck=False) as vol:  # a new handle: from disk
        faulty_http_server.reset_log()
        np.testing.assert_array_equal(vol[...], truth)
        assert faulty_http_server.log.count("GET") == 0
    with cvl.Volume(url, cache=str(tmp_path / "cache")) as vol:  # recheck="open": each copy checked once
        faulty_http_server.reset_log()
        np.testing.assert_array_equal(vol[...], truth)
        assert faulty_http_server.log.count("GET") == 18  # conditional: unchanged, so no bodies
        np.testing.assert_array_equal(vol[...], truth)
        assert faulty_http_server.log.count("GET") == 18  # checked once, then trusted


def test_useless_answers_pause_streaming(faulty_http_server: RangeHTTPServer, files: dict[str, bytes]) -> None:
    """A server that answers every streamed request uselessly: after GIVE_UP of them the rest go
    the careful way at once, and the store stops streaming for a while (then tries again)."""
    from cloudvolume_lite.stores.streaming import GIVE_UP

    width = GIVE_UP + 2  # the first window's answers alone are enough to give up (503s shrink it)
    store = HTTPStore(parse_url(faulty_http_server.url), parallel=width,
                      retry=RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.002))
    keys = [p[1:] for p in files]
    assert len(keys) > width
    # slow 503s: the streamed ones pile up before the first careful retry has failed twice
    faulty_http_server.set_faults(Faults(always="503", latency=0.1))
    with pytest.raises(StoreError, match="HTTP 503"):
        dict(store.iter_get(keys))
    fast = store._client.get().fast
    assert not fast.usable and fast.stats == {"streamed": 0, "redone": len(keys)}
    assert faulty_http_server.log.count("GET") < width + 2 * len(keys)  # not every key streamed first
    faulty_http_server.set_faults(Faults())
    assert dict(store.iter_get(keys)) == {k: files["/" + k] for k in keys}  # the careful way
    assert fast.stats["streamed"] == 0
    fast.off_until = 0.0  # the pause is over
    assert dict(store.iter_get(keys)) == {k: files["/" + k] for k in keys}
    assert fast.stats["streamed"] == len(keys)


def test_answer_heads_the_fetcher_takes_and_the_ones_it_hands_back() -> None:
    """parse_head (stores/http_answer.py): the common answer parsed, repeated headers joined,
    HTTP/1.0 and ``Connection: close`` seen; every other framing is Unusual (done again the
    careful way), never guessed at."""
    from cloudvolume_lite.stores.http_answer import Unusual, parse_head

    head = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\nETag: \"e\"", 2)
    assert (head.reply.status, head.reply.reason, head.length, head.closing) == (200, "OK", 5, False)
    assert head.reply.headers == {"content-length": "5", "x-a": "1, 2", "etag": '"e"'}
    assert parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 0", 0).closing
    assert not parse_head(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0", 0).closing
    assert parse_head(b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 3", 0).closing
    assert parse_head(b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"", 0).length == 0
    for bad, rest in [(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", 0), (b"HTTP/1.1 200 OK", 0),
                      (b"HTTP/1.1 200 OK\r\nContent-Length: x", 0), (b"HTTP/1.1 200 OK\r\nContent-Length: 2", 3),
                      (b"HTTP/1.1 304 Not Modified", 1), (b"HTTP/1.1 100 Continue", 0), (b"SPDY/3 200 OK", 0),
                      (b"HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 1", 0)]:
        with pytest.raises(Unusual):
            parse_head(bad, rest)
