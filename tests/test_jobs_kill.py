"""The pyramid (``cvl pyramid --scheduler``) and ``Volume.map_overlap(out=, client=)`` on a real
dask.distributed LocalCluster (worker processes on 127.0.0.1), killed mid-job:

- one worker SIGKILLed: the job completes with the bytes of the same job on local threads,
  and the tasks that worker had finished are not run again;
- the client killed: the same command run again finishes, rewrites no file that was there
  when the first one died, and ends with the same bytes (and, for the pyramid, no duplicate
  scale: a scale the dead run added but did not fill is filled).

Each kill waits on observable progress (files written, or the job's own progress callback),
never on a fixed sleep."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import cloudvolume_lite as cvl
from fixtures_cluster import DEADLINE, client, cluster  # noqa: F401 - fixtures
from fixtures_servers import Faults, RangeHTTPServer

pytest.importorskip("distributed")
from scipy import ndimage  # a test dependency: the oracle

PYRAMID = [sys.executable, "-m", "cloudvolume_lite.cli", "pyramid"]
SHAPE, CHUNK = (128, 128, 128), 8  # mip 1: 512 chunks, mip 2: 64, a few seconds on 2 workers
MIP_DIRS = {1: "2_2_2", 2: "4_4_4"}
CHUNKS_AT = {1: 512, 2: 64}


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but info and hidden ones (temp files of a killed writer), by path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name != "info" and not p.name.startswith(".")}


def _stamps(root: Path, pattern: str = "*-*_*-*_*-*") -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every chunk (or shard) file: a write replaces it by a rename, a new inode."""
    out = {}
    for p in root.rglob(pattern):
        if not p.name.startswith(".") and p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_ino, st.st_mtime_ns)
    return out


def _chunks(root: Path) -> int:
    """Chunk files in the scale directory ``root`` so far."""
    return sum(1 for p in root.glob("*-*_*-*_*-*") if not p.name.startswith(".")) if root.exists() else 0


def _wait_for(ready: Callable[[], bool], running: Callable[[], bool]) -> None:
    """Poll until ``ready()``, or the job stops ``running()``, or the deadline passes."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline and running() and not ready():
        time.sleep(0.005)


# -- the pyramid ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pyramid_ref(tmp_path_factory) -> tuple[Path, Path]:
    """(a segmentation volume of mip 0 only, the same volume with ``cvl pyramid --levels 2`` run
    on local threads): each test copies the first and compares with the second."""
    root = tmp_path_factory.mktemp("pyramid")
    labels = np.random.default_rng(5).integers(0, 6, (*SHAPE, 1), dtype=np.uint32)
    cvl.Volume.from_numpy(labels, f"file://{root}/src", chunk_size=(CHUNK,) * 3, layer_type="segmentation")
    shutil.copytree(root / "src", root / "local")
    local = subprocess.run([*PYRAMID, f"file://{root}/local", "--levels", "2"], capture_output=True, text=True,
                           timeout=120)
    assert local.returncode == 0, local.stderr
    assert cvl.Volume(f"file://{root}/local").num_mips == 3
    return root / "src", root / "local"


def _check_pyramid(dst: Path, local: Path) -> None:
    """``dst`` holds the local pyramid, byte for byte, with one scale per resolution."""
    assert _files(dst) == _files(local)
    vol = cvl.Volume(f"file://{dst}")
    assert [s.key for s in vol.scales] == ["1_1_1", "2_2_2", "4_4_4"]  # none added twice
    assert vol.scales[2].size == (32, 32, 32)


def test_pyramid_survives_a_killed_worker(tmp_path, cluster, client, pyramid_ref) -> None:
    """One worker process is SIGKILLed once mip 1 has its first chunks; the cluster reruns its
    tasks elsewhere and the pyramid ends with the local bytes."""
    src, local = pyramid_ref
    dst = tmp_path / "vol"
    shutil.copytree(src, dst)
    pids = client.run(os.getpid)
    job = subprocess.Popen([*PYRAMID, f"file://{dst}", "--levels", "2", "--scheduler", cluster.scheduler_address],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _chunks(dst / MIP_DIRS[1]) >= 8, lambda: job.poll() is None)
        written_at_kill = _chunks(dst / MIP_DIRS[1])
        os.kill(next(iter(pids.values())), signal.SIGKILL)
        out, err = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, err
    assert 0 < written_at_kill < CHUNKS_AT[1]  # the kill came mid-job
    assert "mip 2" in out
    _check_pyramid(dst, local)


class KillAt:
    """A ``progress(done, total)`` that SIGKILLs worker ``pid`` when ``done`` reaches ``at``,
    noting first the (inode, mtime) of the files under ``root``: the ``at`` tasks the client
    had taken as finished, plus any it had not taken yet."""

    def __init__(self, pid: int, at: int, root: Path) -> None:
        self.pid, self.at, self.root = pid, at, root
        self.before: dict[str, tuple[int, int]] | None = None

    def __call__(self, done: int, total: int) -> None:
        if done == self.at and self.before is None:
            self.before = _stamps(self.root, "*")
            os.kill(self.pid, signal.SIGKILL)

    def redone(self) -> list[str]:
        """The files noted at the kill that were written again since."""
        after = _stamps(self.root, "*")
        return sorted(k for k, v in (self.before or {}).items() if after.get(k) != v)


def _run(job: Callable[[], object]) -> object:
    """``job()`` on a thread of its own, joined; its error raised here."""
    result: dict = {}

    def run() -> None:
        try:
            result["value"] = job()
        except BaseException as e:  # noqa: BLE001 - raised below
            result["error"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join(120)
    assert not t.is_alive(), "the job did not finish"
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_sharded_pyramid_survives_a_killed_worker(tmp_path, client) -> None:
    """A sharded scale filled on the cluster (one task per shard, each writing the shard once,
    so a worker SIGKILLed mid-job leaves some shards whole and others not started): the
    task run again elsewhere ends with the bytes of the job on local threads, and the shards
    finished before the kill are not redone (the cluster had forgotten those tasks)."""
    labels = np.random.default_rng(6).integers(0, 6, (128, 128, 64, 1), dtype=np.uint32)
    cvl.Volume.from_numpy(labels, f"file://{tmp_path}/local", chunk_size=(8, 8, 8), layer_type="segmentation")
    shutil.copytree(tmp_path / "local", tmp_path / "cluster")
    spec = {"preshift_bits": 4, "hash": "identity", "minishard_bits": 0, "shard_bits": 4,
            "minishard_index_encoding": "gzip", "data_encoding": "gzip"}  # mip 1: 16 shards of 16 chunks
    cvl.Volume(f"file://{tmp_path}/local").add_scale((2, 2, 2), sharding=spec, downsample=True)
    vol = cvl.Volume(f"file://{tmp_path}/cluster")
    assert vol.add_scale((2, 2, 2), sharding=spec) == 1
    kill = KillAt(next(iter(client.run(os.getpid).values())), 4, tmp_path / "cluster" / MIP_DIRS[1])
    _run(lambda: vol.downsample(1, 0, client=client, progress=kill))
    assert kill.before is not None and len(kill.before) < 16  # the kill came mid-job
    redone = kill.redone()
    assert len(redone) <= len(kill.before) - kill.at, f"finished shards redone: {redone}"
    assert _files(tmp_path / "cluster") == _files(tmp_path / "local")
    assert len(list((tmp_path / "cluster" / MIP_DIRS[1]).glob("*.shard"))) == 16


@pytest.mark.parametrize("kill_in", [1, 2])
def test_pyramid_resumes_after_a_killed_client(tmp_path, cluster, client, pyramid_ref, kill_in: int) -> None:
    """``cvl pyramid --scheduler`` killed while filling mip ``kill_in`` (added to info, partly
    filled); the same command again fills the rest, rewriting none of the chunks already there."""
    src, local = pyramid_ref
    dst = tmp_path / "vol"
    shutil.copytree(src, dst)
    cmd = [*PYRAMID, f"file://{dst}", "--levels", "2", "--scheduler", cluster.scheduler_address]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watch = dst / MIP_DIRS[kill_in]
    try:
        _wait_for(lambda: _chunks(watch) >= 4, lambda: first.poll() is None)
    finally:
        first.kill()
        first.wait(30)
    before = _stamps(dst)
    in_watched = _chunks(watch)
    assert 0 < in_watched < CHUNKS_AT[kill_in], f"the kill came after the job ({in_watched} chunks)"
    info = cvl.Volume(f"file://{dst}")
    assert MIP_DIRS[kill_in] in [s.key for s in info.scales]  # added, not filled
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    after = _stamps(dst)
    rewritten = sorted(k for k, v in before.items() if after.get(k) != v)
    assert not rewritten, f"{len(rewritten)} chunk(s) there before the rerun were written again: {rewritten[:5]}"
    assert len(after) == (SHAPE[0] // CHUNK) ** 3 + sum(CHUNKS_AT.values())
    _check_pyramid(dst, local)


# -- map_overlap ----------------------------------------------------------------------------------
OVERLAP_SHAPE = (64, 64, 64)  # 64 blocks of one 16^3 chunk each
SIGMA, TRUNCATE, DEPTH = 1.0, 3.0, 3

#: run as a script: the same map_overlap job from a client process of its own (the job a test kills)
OVERLAP_SCRIPT = textwrap.dedent(f"""
    import functools, sys
    from dask.distributed import Client
    from scipy import ndimage
    import cloudvolume_lite as cvl

    src, dst, address = sys.argv[1:4]
    fn = functools.partial(ndimage.gaussian_filter, sigma=({SIGMA}, {SIGMA}, {SIGMA}, 0.0), truncate={TRUNCATE})
    with Client(address, timeout=30) as client:
        n = cvl.Volume(src).map_overlap(fn, {DEPTH}, out=cvl.Volume(dst), chunks=(16, 16, 16), client=client,
                                        resume=True)
    print(f"{{n}} block(s) written")
""")


def _overlap_fn(a: np.ndarray) -> np.ndarray:
    return ndimage.gaussian_filter(a, sigma=(SIGMA, SIGMA, SIGMA, 0.0), truncate=TRUNCATE)


@pytest.fixture
def overlap_case(tmp_path) -> tuple[np.ndarray, Callable[[str], str]]:
    """(the image, make_out): a float32 volume at tmp_path/src, its map_overlap done locally into
    tmp_path/local, and ``make_out(name)`` creating an empty output like it (its URL)."""
    data = np.random.default_rng(2).random(OVERLAP_SHAPE, dtype=np.float32)
    src = cvl.Volume.from_numpy(data[..., None], f"file://{tmp_path}/src", chunk_size=(16, 16, 16))

    def make_out(name: str) -> str:
        url = f"file://{tmp_path}/{name}"
        cvl.Volume.create(url, data_type="float32", layer_type="image", size=OVERLAP_SHAPE, chunk_size=(16, 16, 16),
                          resolution=(1, 1, 1))
        return url

    assert src.map_overlap(_overlap_fn, DEPTH, out=cvl.Volume(make_out("local")), chunks=(16, 16, 16)) == 64
    return data, make_out


def _check_overlap(tmp_path: Path, data: np.ndarray, name: str) -> None:
    """Output ``name`` is bit-equal to the local job's and to scipy on the whole array."""
    assert _files(tmp_path / name) == _files(tmp_path / "local")
    want = ndimage.gaussian_filter(data, sigma=SIGMA, truncate=TRUNCATE)
    np.testing.assert_array_equal(cvl.Volume(f"file://{tmp_path}/{name}")[...][..., 0], want)


def test_map_overlap_survives_a_killed_worker(tmp_path, client, overlap_case) -> None:
    """map_overlap from a slow HTTP source; one worker is SIGKILLed once 16 blocks are done
    (the Volume scattered to it goes with it; the other worker holds a copy). The job ends with
    the local bytes, and the blocks finished before the kill are not computed again."""
    data, make_out = overlap_case
    out = cvl.Volume(make_out("cluster"))
    server = RangeHTTPServer(tmp_path, Faults(latency=0.05)).start()  # slow source: the job lasts
    try:
        kill = KillAt(next(iter(client.run(os.getpid).values())), 16, tmp_path / "cluster" / "1_1_1")
        n = _run(lambda: cvl.Volume(f"{server.url}/src").map_overlap(
            _overlap_fn, DEPTH, out=out, chunks=(16, 16, 16), client=client, progress=kill))
    finally:
        server.stop()
    assert n == 64
    assert kill.before is not None and len(kill.before) < 64  # the kill came mid-job
    # only blocks whose end the client had not yet seen may be run again
    redone = kill.redone()
    assert len(redone) <= len(kill.before) - kill.at, f"finished blocks redone: {redone}"
    _check_overlap(tmp_path, data, "cluster")


def test_map_overlap_resumes_after_a_killed_client(tmp_path, cluster, client, overlap_case) -> None:
    """The map_overlap job, run from its own client process, killed mid-job; run again it
    computes only the blocks that are missing and ends with the same bytes."""
    data, make_out = overlap_case
    out_url = make_out("cluster")
    script = tmp_path / "overlap_job.py"
    script.write_text(OVERLAP_SCRIPT)
    server = RangeHTTPServer(tmp_path, Faults(latency=0.05)).start()
    try:
        cmd = [sys.executable, str(script), f"{server.url}/src", out_url, cluster.scheduler_address]
        first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dst = tmp_path / "cluster"
        try:
            _wait_for(lambda: _chunks(dst / "1_1_1") >= 4, lambda: first.poll() is None)
        finally:
            first.kill()
            first.wait(30)
        before = _stamps(dst)
        assert 0 < len(before) < 64, f"the kill came after the job ({len(before)} blocks)"
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
        written = int(second.stdout.split()[0])
        assert 0 < written <= 64 - len(before)  # only what was missing (fewer if stragglers finished it)
        after = _stamps(dst)
        assert len(after) == 64
        rewritten = sorted(k for k, v in before.items() if after.get(k) != v)
        assert not rewritten, f"{len(rewritten)} block(s) there before the rerun were written again"
        _check_overlap(tmp_path, data, "cluster")
    finally:
        server.stop()


def test_add_scale_resumes_a_half_filled_scale(tmp_path) -> None:
    """``add_scale(..., downsample=True, resume=True)`` after a run that died: the scale is
    reused, the missing chunks are filled and the written ones are left as they are."""
    labels = np.random.default_rng(4).integers(0, 6, (64, 64, 32, 1), dtype=np.uint32)
    vol = cvl.Volume.from_numpy(labels, f"file://{tmp_path}/seg", chunk_size=(16, 16, 16), layer_type="segmentation")
    mip = vol.add_scale((2, 2, 2), downsample=True)
    want = vol.download(vol.scales[mip].bounds, mip=mip)
    root = tmp_path / "seg" / vol.scales[mip].key
    chunks = sorted(root.iterdir())
    for p in chunks[::2]:  # half of them lost with the run that died
        p.unlink()
    kept = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in chunks[1::2]}
    again = cvl.Volume(f"file://{tmp_path}/seg")
    assert again.add_scale((2, 2, 2), downsample=True, resume=True) == mip and again.num_mips == 2
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.iterdir() if p.name in kept} == kept
    assert len(list(root.iterdir())) == len(chunks)
    np.testing.assert_array_equal(again.download(again.scales[mip].bounds, mip=mip), want)
