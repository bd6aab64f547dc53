"""HTTPStore generations and conditional reads, against servers on 127.0.0.1: the suite's
Range-capable server (strong ETags, or Last-Modified alone; honouring the conditions or ignoring
them) and python's own ``http.server`` (Last-Modified, no ETag, ignores Range and If-Match,
honours only If-Modified-Since), plus variants of it with a weak ETag or no validator at all."""

from __future__ import annotations

import functools
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from cloudvolume_lite.errors import ConflictError, UnsupportedEncodingError
from cloudvolume_lite.stores import parse_url
from cloudvolume_lite.stores.base import Versioned
from cloudvolume_lite.stores.http import HTTPStore, condition_headers, generation, same_generation
from cloudvolume_lite.stores.network import Cond
from cloudvolume_lite.stores.retry import RetryPolicy
from fixtures_servers import LOOPBACK, Faults, RangeHTTPServer

FAST = RetryPolicy(attempts=3, base_delay=0.005, max_delay=0.02, connect_timeout=2, read_timeout=5)
#: file dates well in the past, ten seconds apart per rewrite (Last-Modified counts seconds)
T0 = int(time.time()) - 3600


def blob(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


# -- python's http.server ------------------------------------------------------------------------
class _Quiet(SimpleHTTPRequestHandler):
    """The standard handler, logging (method, path, status) instead of printing."""

    seen: list[tuple[str, str, int]]

    def log_request(self, code: object = "-", size: object = "-") -> None:
        self.seen.append((self.command, self.path, int(code)))  # type: ignore[call-overload]

    def log_message(self, format: str, *args: object) -> None:
        pass


class _WeakETag(_Quiet):
    """Adds a weak ETag of size and mtime, as Express's static files do."""

    def end_headers(self) -> None:
        path = Path(self.translate_path(self.path))
        if path.is_file():
            st = path.stat()
            self.send_header("ETag", f'W/"{st.st_size:x}-{st.st_mtime_ns:x}"')
        super().end_headers()


class _NoValidators(_Quiet):
    """Sends neither ETag nor Last-Modified."""

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() != "last-modified":
            super().send_header(keyword, value)


@dataclass
class Served:
    """A server on 127.0.0.1 over ``root``: its ``url``, whether it sends an ETag, and the
    stores opened on it (closed with it)."""

    kind: str
    url: str
    root: Path
    etag: bool
    seen: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status): stdlib only
    stores: list[HTTPStore] = field(default_factory=list)

    def write(self, key: str, data: bytes, version: int) -> None:
        """Put ``data`` at ``key``, dated ``version`` ten-second steps after T0."""
        path = self.root / "vol" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (T0 + 10 * version, T0 + 10 * version))

    def store(self) -> HTTPStore:
        self.stores.append(HTTPStore(parse_url(f"{self.url}/vol"), parallel=4, retry=FAST))
        return self.stores[-1]

    def close(self) -> None:
        for store in self.stores:
            store.close()


def _stdlib(root: Path, handler: type[_Quiet]) -> tuple[ThreadingHTTPServer, list]:
    seen: list[tuple[str, str, int]] = []
    cls = type("H", (handler,), {"seen": seen})
    srv = ThreadingHTTPServer((LOOPBACK, 0), functools.partial(cls, directory=str(root)))
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return srv, seen


_OURS = {
    "etag": Faults(),
    "etag-ignoring": Faults(ignore_conditions=True),
    "lm": Faults(etag=False),
    "lm-ignoring": Faults(etag=False, ignore_conditions=True),
}


def _serve(kind: str, root: Path) -> Iterator[Served]:
    if kind in _OURS:
        srv = RangeHTTPServer(root, _OURS[kind]).start()
        served = Served(kind, srv.url, root, _OURS[kind].etag)
        yield served
        served.close()
        srv.stop()
        return
    handler = {"stdlib": _Quiet, "stdlib-weak": _WeakETag, "stdlib-none": _NoValidators}[kind]
    std, seen = _stdlib(root, handler)
    served = Served(kind, f"http://{LOOPBACK}:{std.server_address[1]}", root, kind == "stdlib-weak", seen=seen)
    yield served
    served.close()
    std.shutdown()
    std.server_close()


@pytest.fixture(params=[*_OURS, "stdlib"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """Every server that sends a validator fit for ranges (a strong ETag or Last-Modified)."""
    yield from _serve(request.param, tmp_path)


@pytest.fixture
def weak(tmp_path: Path) -> Iterator[Served]:
    yield from _serve("stdlib-weak", tmp_path)


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[Served]:
    yield from _serve("stdlib-none", tmp_path)


# -- what a generation is ------------------------------------------------------------------------
def test_generation_from_headers() -> None:
    assert generation({"etag": ' "abc" ', "last-modified": "x"}) == '"abc"'
    assert generation({"etag": 'W/"abc"'}) == 'W/"abc"'
    lm = "Tue, 01 Dec 2026 09:15:19 GMT"
    assert generation({"last-modified": lm, "content-length": "600"}) == f"lm:{lm};n:600"
    # a ranged answer states the full length in its Content-Range
    assert generation({"last-modified": lm, "content-length": "10", "content-range": "bytes 0-9/600"}) == f"lm:{lm};n:600"
    assert generation({"last-modified": lm, "transfer-encoding": "chunked"}) == f"lm:{lm}"
    assert generation({"content-length": "600"}) is None


def test_generations_compare() -> None:
    lm = "Tue, 01 Dec 2026 09:15:19 GMT"
    assert same_generation('W/"a"', '"a"') and not same_generation('W/"a"', '"a"', strong=True)
    assert same_generation('"a"', '"a"', strong=True) and not same_generation('"a"', '"b"')
    assert same_generation(f"lm:{lm};n:5", f"lm:{lm}") and not same_generation(f"lm:{lm};n:5", f"lm:{lm};n:6")
    assert not same_generation(None, '"a"') and not same_generation(f"lm:{lm}", '"a"')
    assert condition_headers(Cond('"a"', '"b"')) == {"If-Match": '"a"', "If-None-Match": '"b"'}
    assert condition_headers(Cond(f"lm:{lm};n:5", f"lm:{lm};n:5")) == {"If-Unmodified-Since": lm,
                                                                        "If-Modified-Since": lm}
    assert condition_headers(Cond('W/"a"', None)) == {}  # If-Match compares strongly: checked on the answer
    assert condition_headers(Cond(None, '"b"'), ranged=True) == {}


# -- every server with a usable validator --------------------------------------------------------
def test_read_reports_a_generation_that_changes_with_the_object(served: Served) -> None:
    store = served.store()
    served.write("a", blob(1000, 1), 0)
    first = store.read("a")
    assert first is not None and first.data == blob(1000, 1) and first.generation
    if served.etag:
        assert first.generation.startswith('"')
    else:
        assert first.generation.startswith("lm:") and first.generation.endswith(";n:1000")
    assert store.stat("a") == first.generation == store.read("a").generation  # type: ignore[union-attr]
    assert store.read("a", (10, 20)) == Versioned(blob(1000, 1)[10:20], first.generation)
    served.write("a", blob(1000, 2), 1)  # same length, other bytes, a later date
    second = store.read("a")
    assert second == Versioned(blob(1000, 2), second.generation) and second.generation != first.generation  # type: ignore[union-attr]
    assert store.stat("a") == second.generation  # type: ignore[union-attr]
    assert store.read("nope") is None and store.stat("nope") is None


def test_if_match_refuses_the_old_generation(served: Served) -> None:
    store = served.store()
    served.write("m", blob(3000, 3), 0)
    old = store.stat("m")
    assert store.read("m", if_match=old) == Versioned(blob(3000, 3), old)
    assert store.read("m", (100, 200), if_match=old) == Versioned(blob(3000, 3)[100:200], old)
    served.write("m", blob(3000, 4), 1)
    with pytest.raises(ConflictError):
        store.read("m", if_match=old)
    with pytest.raises(ConflictError):
        store.read("m", (100, 200), if_match=old)
    with pytest.raises(ConflictError):
        store.read("m", (5000, 5010), if_match=old)  # past the end too
    new = store.stat("m")
    assert store.read("m", (0, 50), if_match=new) == Versioned(blob(3000, 4)[:50], new)
    (served.root / "vol" / "m").unlink()
    with pytest.raises(ConflictError):
        store.read("m", if_match=new)
    with pytest.raises(ConflictError):
        store.read("m", (0, 10), if_match=new)


def test_if_none_match_revalidates(served: Served) -> None:
    store = served.store()
    served.write("n", blob(2000, 5), 0)
    gen = store.read("n").generation  # type: ignore[union-attr]
    assert store.read("n", if_none_match=gen) == Versioned(None, gen)
    served.write("n", blob(2000, 6), 1)
    fresh = store.read("n", if_none_match=gen)
    assert fresh is not None and fresh.data == blob(2000, 6) and fresh.generation not in (None, gen)
    assert store.read("n", if_none_match=fresh.generation) == Versioned(None, fresh.generation)
    # both conditions: unchanged and still the generation asked for
    assert store.read("n", if_match=fresh.generation, if_none_match=fresh.generation) == Versioned(None, fresh.generation)
    with pytest.raises(ConflictError):
        store.read("n", if_match=gen, if_none_match=fresh.generation)


def test_iter_read_streams_the_same_generations(served: Served) -> None:
    store = served.store()
    keys = [f"k{i}" for i in range(12)]
    for i, k in enumerate(keys):
        served.write(k, blob(500 + 37 * i, 10 + i), i)
    fast = store._streaming()
    assert fast.usable
    before = dict(fast.stats)
    got = dict(store.iter_read([*keys, "absent"]))
    assert fast.stats["streamed"] - before["streamed"] >= len(keys)  # the one-thread fetcher, not get()s
    assert got.pop("absent") is None
    assert got == {k: store.read(k) for k in keys}
    assert all(v.generation for v in got.values())  # type: ignore[union-attr]
    assert {k: v.generation for k, v in got.items()} == {k: store.stat(k) for k in keys}  # type: ignore[union-attr]
    assert dict(store.iter_get(keys)) == {k: blob(500 + 37 * i, 10 + i) for i, k in enumerate(keys)}


def test_a_gzip_object_has_one_generation(tmp_path: Path) -> None:
    import gzip

    srv = RangeHTTPServer(tmp_path).start()
    try:
        store = HTTPStore(parse_url(f"{srv.url}/vol"), parallel=4, retry=FAST)
        (tmp_path / "vol").mkdir()
        for i in range(3):
            (tmp_path / "vol" / f"z{i}.gz").write_bytes(gzip.compress(blob(4000, i)))
        gens = {f"z{i}": store.read(f"z{i}").generation for i in range(3)}  # type: ignore[union-attr]
        assert {k: v.generation for k, v in store.iter_read(gens)} == gens == {k: store.stat(k) for k in gens}  # type: ignore[union-attr]
        assert store.read("z0", if_match=gens["z0"]).data == blob(4000, 0)  # type: ignore[union-attr]
        assert store.read("z0", (0, 2), if_match=gens["z0"]).data == b"\x1f\x8b"  # type: ignore[union-attr]
    finally:
        store.close()
        srv.stop()


# -- servers that ignore the conditions ----------------------------------------------------------
class _Flipping(_Quiet):
    """Before each answer, puts version ``NAME.<0|1>`` of the file in place (alternating, each
    with its own date), and ignores If-Match and Range: an object rewritten between requests."""

    served = [0]

    def send_head(self):  # type: ignore[no-untyped-def]
        version, self.served[0] = self.served[0] % 2, self.served[0] + 1
        path = Path(self.translate_path(self.path))
        source = path.with_name(f"{path.name}.{version}")
        if source.is_file():
            path.write_bytes(source.read_bytes())
            os.utime(path, (T0 + 10 * version, T0 + 10 * version))
        return super().send_head()


def test_a_server_that_ignores_if_match_never_gives_other_bytes(tmp_path: Path) -> None:
    """Whatever a server that ignores If-Match (and Range) sends, read(if_match=g) returns the
    bytes of generation g or raises ConflictError; and a conflict costs one request, not retries."""
    vol = tmp_path / "vol"
    vol.mkdir()
    a, b = blob(5000, 20), blob(5000, 21)
    (vol / "f.0").write_bytes(a)
    (vol / "f.1").write_bytes(b)
    std, seen = _stdlib(tmp_path, _Flipping)
    try:
        store = HTTPStore(parse_url(f"http://{LOOPBACK}:{std.server_address[1]}/vol"), parallel=4, retry=FAST)
        versions = {}
        for _ in range(4):
            got = store.read("f")
            versions[got.generation] = got.data  # type: ignore[union-attr]
        assert sorted(versions.values()) == sorted([a, b]) and len(versions) == 2
        for gen, data in versions.items():
            outcomes = {"ok": 0, "conflict": 0}
            for rng in [None, (0, 100), (4000, 5000), None, (10, 20), None]:
                seen.clear()
                try:
                    got = store.read("f", rng, if_match=gen)
                except ConflictError:
                    outcomes["conflict"] += 1
                    assert [s for _, _, s in seen] == [200]  # one request: a conflict is not retried
                    continue
                outcomes["ok"] += 1
                assert got == Versioned(data if rng is None else data[rng[0]:rng[1]], gen)
            assert outcomes["ok"] and outcomes["conflict"]  # both versions came by
    finally:
        store.close()
        std.shutdown()
        std.server_close()


def test_a_refused_precondition_is_not_retried(tmp_path: Path) -> None:
    srv = RangeHTTPServer(tmp_path).start()
    try:
        store = HTTPStore(parse_url(f"{srv.url}/vol"), parallel=4, retry=FAST)
        (tmp_path / "vol").mkdir()
        (tmp_path / "vol" / "p").write_bytes(b"one")
        old = store.stat("p")
        (tmp_path / "vol" / "p").write_bytes(b"two")
        srv.reset_log()
        with pytest.raises(ConflictError):
            store.read("p", if_match=old)
        with pytest.raises(ConflictError):
            store.read("p", (0, 2), if_match=old)
        assert srv.log.count("GET") == 2
    finally:
        store.close()
        srv.stop()


@pytest.fixture
def stdlib(tmp_path: Path) -> Iterator[Served]:
    yield from _serve("stdlib", tmp_path)


def test_stdlib_revalidation_is_a_304(stdlib: Served) -> None:
    served = stdlib
    served.write("r", blob(800, 30), 0)
    store = served.store()
    gen = store.read("r").generation  # type: ignore[union-attr]
    served.seen.clear()
    assert store.read("r", if_none_match=gen) == Versioned(None, gen)
    assert [s for _, _, s in served.seen] == [304]  # If-Modified-Since: nothing sent again


# -- weak ETags, and servers without validators --------------------------------------------------
def test_a_weak_etag_serves_whole_reads_not_ranges(weak: Served) -> None:
    store = weak.store()
    weak.write("w", blob(900, 40), 0)
    got = store.read("w")
    assert got is not None and got.generation.startswith('W/"')  # type: ignore[union-attr]
    assert store.stat("w") == got.generation
    assert store.read("w", if_match=got.generation) == got
    assert store.read("w", if_none_match=got.generation) == Versioned(None, got.generation)
    with pytest.raises(UnsupportedEncodingError, match="strong ETag"):
        store.read("w", (0, 10), if_match=got.generation)
    assert store.read("w", (0, 10)) == Versioned(blob(900, 40)[:10], got.generation)  # unconditional: fine
    weak.write("w", blob(900, 41), 1)
    with pytest.raises(ConflictError):
        store.read("w", if_match=got.generation)
    assert store.read("w", if_none_match=got.generation).data == blob(900, 41)  # type: ignore[union-attr]


def test_a_server_without_validators_has_no_generations(bare: Served) -> None:
    store = bare.store()
    bare.write("x", blob(700, 50), 0)
    assert store.read("x") == Versioned(blob(700, 50), None)
    assert store.read("x", (1, 3)) == Versioned(blob(700, 50)[1:3], None)
    with pytest.raises(UnsupportedEncodingError, match="neither an ETag nor a Last-Modified"):
        store.stat("x")
    assert store.stat("absent") is None
    # nothing to compare with: "changed" (the bytes come back), and if_match cannot be confirmed
    assert store.read("x", if_none_match='"whatever"') == Versioned(blob(700, 50), None)
    with pytest.raises(ConflictError):
        store.read("x", if_match='"whatever"')
    with pytest.raises(ConflictError):
        store.read("x", (0, 5), if_match='"whatever"')
