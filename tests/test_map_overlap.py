"""Volume.map_overlap against scipy.ndimage on the whole array: exact at every block seam and
at the volume's edges, for each boundary mode, as a dask array and written into a Volume, on
the Volume's threads and on a cluster; one task per block, about one task per core at once for
a local job, and a compute that assembles the blocks in their own memory order."""

from __future__ import annotations

import numpy as np
import pytest

import cloudvolume_lite as cvl
from cloudvolume_lite.stores.local import LocalStore

from scipy import ndimage  # a test dependency: the oracle
pytest.importorskip("dask")
from fixtures_cluster import client, cluster  # noqa: F401 - fixtures


@pytest.fixture
def image(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.random((70, 61, 45), dtype=np.float32)
    vol = cvl.Volume.from_numpy(data[..., None], f"file://{tmp_path}/src", chunk_size=(16, 16, 16),
                                voxel_offset=(5, -3, 7), compression=None)
    return data, vol


def _gauss(mode: str):
    return lambda a: ndimage.gaussian_filter(a[..., 0], sigma=1.5, mode=mode, truncate=3.0)  # reach 5 (radius)


@pytest.mark.parametrize("chunks", [(16, 16, 16), (32, 16, 48), (23, 31, 9)])
def test_no_boundary_equals_the_whole_array(image, chunks) -> None:
    data, vol = image
    want = ndimage.gaussian_filter(data, sigma=1.5, mode="reflect", truncate=3.0)
    arr = vol.map_overlap(_gauss("reflect"), depth=5, chunks=chunks)
    got = arr.compute(scheduler="threads")
    assert got.shape == (*data.shape, 1)
    np.testing.assert_array_equal(got[..., 0], want)
    n_blocks = np.prod([len(c) for c in arr.chunks])
    assert len(arr.__dask_graph__()) == n_blocks + 1  # one task per block, plus the shared Volume


@pytest.mark.parametrize("boundary,np_mode,extra", [("reflect", "symmetric", {}), ("mirror", "reflect", {}),
                                                    ("nearest", "edge", {}), (2.5, "constant", {"constant_values": 2.5})])
def test_padding_modes_equal_the_padded_whole_array(image, boundary, np_mode, extra) -> None:
    data, vol = image
    d = 5
    padded = np.pad(data, d, mode=np_mode, **extra)
    # 'wrap' mode inside: the padding decides what the filter sees past the edge, not its mode
    want = ndimage.gaussian_filter(padded, sigma=1.5, mode="wrap", truncate=3.0)[d:-d, d:-d, d:-d]
    got = vol.map_overlap(_gauss("wrap"), depth=d, chunks=(32, 32, 16), boundary=boundary).compute()
    np.testing.assert_allclose(got[..., 0], want, rtol=0, atol=1e-6)


def test_written_into_a_volume(image, tmp_path) -> None:
    data, vol = image
    out = cvl.Volume.create(f"file://{tmp_path}/out", data_type="float32", layer_type="image", size=data.shape,
                            chunk_size=(16, 16, 16), resolution=(1, 1, 1), voxel_offset=(5, -3, 7), compression=None)
    seen = []
    n = vol.map_overlap(_gauss("reflect"), depth=(5, 5, 5), out=out, chunks=(32, 32, 16),
                        progress=lambda done, total: seen.append((done, total)))
    want = ndimage.gaussian_filter(data, sigma=1.5, mode="reflect", truncate=3.0)
    np.testing.assert_array_equal(cvl.Volume(f"file://{tmp_path}/out")[...][..., 0], want)
    assert n == len(seen) == seen[-1][1] and sorted(d for d, _ in seen) == list(range(1, n + 1))
    # a second run with resume finds every block written
    assert vol.map_overlap(_gauss("reflect"), depth=5, out=out, chunks=(32, 32, 16), resume=True) == 0


def test_misaligned_blocks_and_bad_arguments_are_refused(image, tmp_path) -> None:
    data, vol = image
    out = cvl.Volume.create(f"file://{tmp_path}/out", data_type="float32", layer_type="image", size=data.shape,
                            chunk_size=(16, 16, 16), resolution=(1, 1, 1), voxel_offset=(5, -3, 7))
    with pytest.raises(cvl.RequestError, match="two tasks"):
        vol.map_overlap(_gauss("reflect"), depth=5, out=out, chunks=(20, 16, 16))
    with pytest.raises(cvl.RequestError, match="boundary"):
        vol.map_overlap(_gauss("reflect"), depth=5, boundary="wrap")
    with pytest.raises(cvl.RequestError, match="depth"):
        vol.map_overlap(_gauss("reflect"), depth=-1)
    with pytest.raises(cvl.RequestError, match="same"):
        vol.map_overlap(lambda a: a[:-1], depth=1, chunks=(32, 32, 16)).compute()


class _Counting(LocalStore):
    """A real local store that adds up the chunk bytes it hands out, and says it waits on a
    network (so it is read as remote stores are)."""

    fetched = 0
    latency_bound = True

    def get(self, key, byte_range=None):
        data = super().get(key, byte_range)
        if data is not None and key != "info":
            type(self).fetched += len(data)
        return data

    def _with_url(self, url):
        return _Counting(url)


def test_planes_fetch_each_storage_chunk_once(tmp_path) -> None:
    """to_dask(chunks=(X, Y, 1)) over 16^3 chunks: 1.0x the stored bytes fetched, not 16x."""
    from cloudvolume_lite.stores import StoreRegistry

    data = np.random.default_rng(2).integers(0, 255, (40, 36, 48, 1), dtype=np.uint8)
    cvl.Volume.from_numpy(data, f"file://{tmp_path}/v", chunk_size=(16, 16, 16))  # gzip'd chunks
    reg = StoreRegistry().with_scheme("count", lambda url, **_: _Counting(
        cvl.stores.StoreURL("file", "", str(tmp_path / "v"))))
    vol = cvl.Volume("count://x/v", stores=reg)
    arr = vol.to_dask(chunks=(40, 36, 1))
    assert arr.chunks[2] == (1,) * 48
    _Counting.fetched = 0
    np.testing.assert_array_equal(arr.compute(scheduler="threads"), data)
    ratio = _Counting.fetched / data.nbytes
    assert ratio == 1.0, f"fetched {ratio:.2f}x the stored bytes"
    # one read per group of whole chunks, and a cheap slice per plane
    assert len(arr.__dask_graph__()) == 1 + 48 + 3


def test_halo_chunks_are_fetched_once(tmp_path) -> None:
    """Blocks of one chunk with a halo reaching into every neighbour: through the job's chunk
    cache each storage chunk is fetched once, not once per block that needs it (up to 27x)."""
    from cloudvolume_lite.stores import StoreRegistry

    data = np.random.default_rng(3).random((64, 64, 48, 1), dtype=np.float32)
    cvl.Volume.from_numpy(data, f"file://{tmp_path}/v", chunk_size=(16, 16, 16))  # gzip'd chunks
    reg = StoreRegistry().with_scheme("count", lambda url, **_: _Counting(
        cvl.stores.StoreURL("file", "", str(tmp_path / "v"))))
    vol = cvl.Volume("count://x/v", stores=reg)
    out = cvl.Volume.create(f"file://{tmp_path}/out", data_type="float32", layer_type="image", size=(64, 64, 48),
                            chunk_size=(16, 16, 16), resolution=(1, 1, 1))
    _Counting.fetched = 0
    vol.map_overlap(_gauss("reflect"), depth=5, out=out, chunks=(16, 16, 16))
    ratio = _Counting.fetched / data.nbytes
    assert ratio <= 1.05, f"fetched {ratio:.2f}x the stored bytes"
    want = ndimage.gaussian_filter(data[..., 0], sigma=1.5, mode="reflect", truncate=3.0)
    np.testing.assert_array_equal(cvl.Volume(f"file://{tmp_path}/out")[...][..., 0], want)


def test_compute_keeps_the_blocks_memory_order(image) -> None:
    """compute() assembles the blocks in their own memory order (dask's concatenate3 copied
    everything into a C-order array: a copy across orders, ~3x one along): blocks of a read
    come back in Fortran order as vol[...] does, a scipy filter's in C order."""
    data, vol = image
    same = vol.map_overlap(lambda a: a, depth=2, chunks=(16, 32, 16)).compute()
    np.testing.assert_array_equal(same, vol[...])
    assert same.flags.f_contiguous
    blurred = vol.map_overlap(_gauss("reflect"), depth=5, chunks=(32, 16, 48)).compute(scheduler="threads")
    assert blurred.flags.c_contiguous
    np.testing.assert_array_equal(blurred[..., 0], ndimage.gaussian_filter(data, sigma=1.5, mode="reflect", truncate=3.0))


def test_arrays_derived_from_it_are_plain_dask_arrays(image) -> None:
    """Only the map_overlap array itself assembles its own way; what dask derives from it
    computes as usual."""
    import dask.array as da

    data, vol = image
    arr = vol.map_overlap(lambda a: a * 2, depth=1, chunks=(32, 32, 16))
    want = data[..., None] * 2
    np.testing.assert_array_equal(arr[10:50, 3:40, 5:].compute(), want[10:50, 3:40, 5:])
    assert float(arr.sum().compute()) == pytest.approx(float(want.sum(dtype=np.float64)), rel=1e-5)
    kept = arr.persist()
    assert type(kept) is da.Array
    np.testing.assert_array_equal(kept.compute(), want)
    np.testing.assert_array_equal(np.asarray(arr), want)


def test_written_job_runs_one_task_per_core_on_local_stores(tmp_path) -> None:
    """map_overlap(out=) on local files runs as many tasks at once as there are decode threads
    (it ran the Volume's parallel, 8 here: 8 blocks and their results in memory on 2 cores),
    and they do run at once."""
    import threading
    import time

    data = np.random.default_rng(5).random((64, 64, 32, 1), dtype=np.float32)
    src = cvl.Volume.from_numpy(data, f"file://{tmp_path}/src", chunk_size=(16, 16, 16), compression=None)
    vol = cvl.Volume(src.url, decode_threads=2)
    assert vol.runtime.parallel == 8
    out = cvl.Volume.create(f"file://{tmp_path}/out", data_type="float32", layer_type="image", size=(64, 64, 32),
                            chunk_size=(16, 16, 16), resolution=(1, 1, 1), compression=None)
    lock, calls, now, most = threading.Lock(), [0], [0], [0]
    pair = threading.Barrier(2, timeout=60)

    def fn(a):
        with lock:
            calls[0] += 1
            n = calls[0]
            now[0] += 1
            most[0] = max(most[0], now[0])
        if n <= 2:
            pair.wait()  # the first two tasks meet: they run at once (else this breaks the job)
        time.sleep(0.02)  # a task that takes a while, as a filter does: others start meanwhile, if allowed
        with lock:
            now[0] -= 1
        return a * 3

    assert vol.map_overlap(fn, depth=2, out=out, chunks=(16, 16, 16)) == 32
    np.testing.assert_array_equal(cvl.Volume(out.url)[...], data * 3)
    assert most[0] == 2


def test_job_lanes_follow_the_stores(tmp_path) -> None:
    """A local job's lanes: one task per decode thread for local stores, two per decode thread
    when the source waits on a network (one computes while the other reads), at most parallel."""
    from cloudvolume_lite.halo import job_runtime
    from cloudvolume_lite.stores import StoreRegistry

    data = np.zeros((32, 32, 16, 1), dtype=np.float32)
    cvl.Volume.from_numpy(data, f"file://{tmp_path}/v", chunk_size=(16, 16, 16))
    local = cvl.Volume(f"file://{tmp_path}/v", decode_threads=3)
    assert job_runtime(local, 0, local, 0).parallel == 3
    reg = StoreRegistry().with_scheme("count", lambda url, **_: _Counting(
        cvl.stores.StoreURL("file", "", str(tmp_path / "v"))))
    remote = cvl.Volume("count://x/v", stores=reg, decode_threads=3)
    assert job_runtime(remote, 0, local, 0).parallel == 6
    assert job_runtime(cvl.Volume("count://x/v", stores=reg, decode_threads=3, parallel=4), 0, local, 0).parallel == 4


def test_compute_on_a_cluster_assembles_on_a_worker(image, request) -> None:
    """With a dask.distributed Client, compute() runs the blocks and the assembly on the
    workers (the assembly's Runtime is pickled to a worker and makes its threads there)."""
    pytest.importorskip("distributed")
    on = request.getfixturevalue("client")
    data, vol = image
    arr = vol.map_overlap(_gauss("reflect"), depth=5, chunks=(32, 16, 48))
    got = on.compute(arr).result()
    np.testing.assert_array_equal(got[..., 0], ndimage.gaussian_filter(data, sigma=1.5, mode="reflect", truncate=3.0))
    np.testing.assert_array_equal(arr.compute(), got)  # the Client is the default scheduler now
