"""One Runtime per Volume: its lanes are the only threads, and run() starts no more than it needs."""

from __future__ import annotations

import gzip
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.runtime import Runtime
from fixtures_servers import RangeHTTPServer


def test_a_one_chunk_read_starts_no_thread(faulty_http_server: RangeHTTPServer) -> None:
    """A one-chunk read over HTTP with parallel=128 used to start helper threads by the dozen."""
    with cvl.Volume.create(f"file://{faulty_http_server.root}/one", data_type="uint8", layer_type="image",
                           size=(64, 64, 64), chunk_size=(64, 64, 64), resolution=(1, 1, 1)) as w:
        w[...] = np.ones((64, 64, 64), np.uint8)
    vol = cvl.Volume(f"{faulty_http_server.url}/one", parallel=128)
    before = threading.active_count()
    assert int(vol[...].sum()) == 64**3
    assert int(vol[0:10, 0:10, 0:10].sum()) == 1000
    assert threading.active_count() == before
    items: list[int] = []
    rt = Runtime(128)
    rt.run(items.append, [1, 2, 3], 128)
    assert sorted(items) == [1, 2, 3]
    assert len(rt.lane("io")._threads) <= 2  # never more loops than items (the caller is one)


def test_run_on_a_full_lane_cannot_deadlock() -> None:
    """Nested runs on a one-thread lane: helpers that never get a thread are cancelled, and the
    callers (always loops themselves) finish the work."""
    rt = Runtime(1)
    rt._sizes = lambda: {"io": 1, "fetch": 1, "cpu": 1, "tasks": 1}  # type: ignore[method-assign]
    done: list[int] = []
    lock = threading.Lock()

    def outer(i: int) -> None:
        def inner(j: int) -> None:
            with lock:
                done.append(i * 10 + j)

        rt.run(inner, range(5), 8)

    t = threading.Thread(target=lambda: rt.run(outer, range(6), 8))
    t.start()
    t.join(20)
    assert not t.is_alive(), "nested run deadlocked"
    assert sorted(done) == sorted(i * 10 + j for i in range(6) for j in range(5))


def test_errors_stop_every_loop_and_reach_the_caller() -> None:
    rt = Runtime(4)
    seen: list[int] = []

    def fn(i: int) -> None:
        if i == 3:
            raise cvl.DecodeError("chunk 3 is corrupt")
        time.sleep(0.01)
        seen.append(i)

    with pytest.raises(cvl.DecodeError, match="chunk 3"):
        rt.run(fn, range(1000), 4)
    assert len(seen) < 50  # nothing new started after the error


def test_streamed_reads_borrow_the_runtime_lanes(faulty_http_server: RangeHTTPServer, tmp_path: Path) -> None:
    truth = np.random.default_rng(5).integers(0, 255, (64, 64, 32, 1), dtype=np.uint8)
    with cvl.Volume.create(f"file://{faulty_http_server.root}/g", data_type="uint8", layer_type="image",
                           size=truth.shape[:3], chunk_size=(16, 16, 16), resolution=(1, 1, 1)) as w:
        w[...] = truth
    for f in (faulty_http_server.root / "g").rglob("*-*_*"):  # served gzip'd: decompressed on a lane
        f.with_name(f.name + ".gz").write_bytes(gzip.compress(f.read_bytes()))
        f.unlink()
    vol = cvl.Volume(f"{faulty_http_server.url}/g")
    before = {t.ident for t in threading.enumerate()}

    def new_threads() -> set[str]:  # other tests' stores may have left threads of their own
        return {t.name.rsplit("_", 1)[0] for t in threading.enumerate()
                if t.ident not in before and t.name.startswith("cvl")}

    np.testing.assert_array_equal(vol[...], truth)
    names = new_threads()
    assert "cvl-cpu" in names  # the fetcher's finishing work ran on the Volume's cpu lane
    assert names <= {"cvl-io", "cvl-fetch", "cvl-cpu", "cvl-tasks"}  # no pools but the runtime's
    batches = list(vol.read_regions([(0, 0, 0), (16, 16, 0), (32, 32, 16)], (16, 16, 16), batch_size=1))
    assert len(batches) == 3 and "cvl-tasks" in new_threads()  # the loader borrows the tasks lane
    assert new_threads() <= {"cvl-io", "cvl-fetch", "cvl-cpu", "cvl-tasks"}
    vol.close()
    assert not vol.runtime._lanes  # closed with the Volume (made again if it is used again)
