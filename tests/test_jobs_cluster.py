"""Whole-volume jobs on a real dask.distributed LocalCluster (worker processes on 127.0.0.1):
the same bytes as on local threads, with one worker killed mid-job, and after the client is
killed mid-job and the same command run again (finished blocks are not redone)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.transfer import copy_volume
from fixtures_cluster import client, cluster  # noqa: F401 - fixtures
from fixtures_servers import Faults, RangeHTTPServer

pytest.importorskip("distributed")
from scipy import ndimage  # a test dependency: the oracle


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but info (its bytes may differ in key order only), by path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name != "info" and not p.name.startswith(".")}


def _chunks(root: Path) -> int:
    """Chunk files written so far under ``root``."""
    return sum(1 for p in root.rglob("*-*_*-*_*-*") if p.is_file() and not p.name.startswith("."))


def _source(tmp_path: Path, shape=(64, 64, 64)) -> tuple[np.ndarray, str]:
    data = np.random.default_rng(8).integers(0, 200, (*shape, 1), dtype=np.uint8)
    url = f"file://{tmp_path}/src"
    cvl.Volume.from_numpy(data, url, chunk_size=(16, 16, 16))
    return data, url


def test_copy_on_the_cluster_writes_the_same_bytes(tmp_path, client) -> None:
    data, src = _source(tmp_path)
    local = copy_volume(src, f"file://{tmp_path}/local", block_bytes=16 ** 3 * 4)
    on_cluster = copy_volume(src, f"file://{tmp_path}/cluster", block_bytes=16 ** 3 * 4, client=client)
    assert local == on_cluster == 64
    assert _files(tmp_path / "cluster") == _files(tmp_path / "local")
    np.testing.assert_array_equal(cvl.Volume(f"file://{tmp_path}/cluster")[...], data)


def test_a_killed_worker_changes_nothing(tmp_path, client) -> None:
    """One worker process is SIGKILLed once the copy has written its first chunk; the cluster
    reruns its tasks elsewhere and the copy ends with the same bytes."""
    data, src = _source(tmp_path)
    server = RangeHTTPServer(tmp_path, Faults(latency=0.05)).start()  # slow source: the job lasts
    try:
        copy_volume(src, f"file://{tmp_path}/local", block_bytes=16 ** 3 * 2)
        pids = client.run(os.getpid)
        result: dict = {}

        def job() -> None:
            try:
                result["n"] = copy_volume(f"{server.url}/src", f"file://{tmp_path}/cluster", block_bytes=16 ** 3 * 2,
                                          client=client)
            except BaseException as e:  # noqa: BLE001 - reported below
                result["error"] = e

        t = threading.Thread(target=job)
        t.start()
        dst = tmp_path / "cluster"
        deadline = time.time() + 60
        while time.time() < deadline and not _chunks(dst):
            time.sleep(0.005)
        written_at_kill = _chunks(dst)
        os.kill(next(iter(pids.values())), signal.SIGKILL)
        t.join(120)
        assert not t.is_alive() and "error" not in result, result
        assert 0 < written_at_kill < 64  # the kill came mid-job
        assert _files(dst) == _files(tmp_path / "local")
    finally:
        server.stop()


def test_a_killed_client_resumes_where_it_stopped(tmp_path, cluster) -> None:
    """``cvl cp --scheduler`` killed mid-job; the same command again writes only what is left."""
    data, src = _source(tmp_path)
    copy_volume(src, f"file://{tmp_path}/local", block_bytes=16 ** 3 * 2)
    server = RangeHTTPServer(tmp_path, Faults(latency=0.05)).start()
    try:
        cmd = [sys.executable, "-m", "cloudvolume_lite.cli", "cp", f"{server.url}/src", f"file://{tmp_path}/cluster",
               "--scheduler", cluster.scheduler_address, "--block-mb", str(16 ** 3 * 2 / 2**20)]
        first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        dst = tmp_path / "cluster"
        deadline = time.time() + 60
        while time.time() < deadline and _chunks(dst) < 4:
            time.sleep(0.005)
        first.kill()
        first.wait(30)
        time.sleep(1.0)  # tasks already on the workers finish; none are sent after the client went
        done_before = _chunks(dst)
        assert 0 < done_before < 64
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
        assert "dashboard" in second.stderr or "dask cluster" in second.stderr
        # "N chunk(s) written, M already there": the finished ones were not redone
        written = int(second.stdout.split(": ")[1].split()[0])
        assert written <= 64 - done_before + 2  # (+ units a dying task had half written)
        assert _files(dst) == _files(tmp_path / "local")
    finally:
        server.stop()


def test_map_overlap_on_the_cluster_equals_local(tmp_path, client) -> None:
    rng = np.random.default_rng(1)
    data = rng.random((48, 40, 32), dtype=np.float32)
    src = cvl.Volume.from_numpy(data[..., None], f"file://{tmp_path}/img", chunk_size=(16, 16, 16))

    def make_out(name: str) -> cvl.Volume:
        return cvl.Volume.create(f"file://{tmp_path}/{name}", data_type="float32", layer_type="image",
                                 size=data.shape, chunk_size=(16, 16, 16), resolution=(1, 1, 1))

    def fn(a):
        return ndimage.gaussian_filter(a[..., 0], sigma=1.0, truncate=3.0)

    n_local = src.map_overlap(fn, depth=3, out=make_out("a"), chunks=(16, 16, 16))
    n_cluster = src.map_overlap(fn, depth=3, out=make_out("b"), chunks=(16, 16, 16), client=client)
    assert n_local == n_cluster == 3 * 3 * 2
    want = ndimage.gaussian_filter(data, sigma=1.0, truncate=3.0)
    np.testing.assert_array_equal(cvl.Volume(f"file://{tmp_path}/b")[...][..., 0], want)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_pyramid_on_the_cluster_equals_local(tmp_path, cluster) -> None:
    """``cvl pyramid --levels 2`` on the cluster and on local threads: the same bytes at every
    new mip (mode for segmentation), and a rerun writes nothing new."""
    labels = np.random.default_rng(3).integers(0, 5, (64, 48, 32, 1), dtype=np.uint32)
    for name in ("local", "cluster"):
        cvl.Volume.from_numpy(labels, f"file://{tmp_path}/{name}", chunk_size=(16, 16, 16), layer_type="segmentation")
    base = [sys.executable, "-m", "cloudvolume_lite.cli", "pyramid"]
    local = subprocess.run([*base, f"file://{tmp_path}/local", "--levels", "2"], capture_output=True, text=True)
    assert local.returncode == 0, local.stderr
    on = subprocess.run([*base, f"file://{tmp_path}/cluster", "--levels", "2", "--scheduler", cluster.scheduler_address],
                        capture_output=True, text=True, timeout=120)
    assert on.returncode == 0, on.stderr
    assert "mip 2" in on.stdout
    assert _files(tmp_path / "cluster") == _files(tmp_path / "local")
    vol = cvl.Volume(f"file://{tmp_path}/cluster")
    assert vol.num_mips == 3 and vol.scales[2].size == (16, 12, 8)
    before = _files(tmp_path / "cluster")
    again = subprocess.run([*base, f"file://{tmp_path}/cluster", "--levels", "2"], capture_output=True, text=True)
    assert again.returncode == 0 and cvl.Volume(f"file://{tmp_path}/cluster").num_mips == 3
    assert _files(tmp_path / "cluster") == before


def test_one_worker_writes_the_same_bytes(tmp_path) -> None:
    """A cluster of a single worker process: the copy is the same, bit for bit."""
    from dask.distributed import Client, LocalCluster

    _, src = _source(tmp_path)
    copy_volume(src, f"file://{tmp_path}/local", block_bytes=16 ** 3 * 4)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      silence_logs=50) as one, Client(one) as client:
        assert copy_volume(src, f"file://{tmp_path}/one", block_bytes=16 ** 3 * 4, client=client) == 64
    assert _files(tmp_path / "one") == _files(tmp_path / "local")
